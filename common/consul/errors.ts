import { NomadChainError } from '../errors';
import type { ErrorContext } from '../errors';

/** Codes of the Consul boundary; each is listed in README's error table. */
export type ConsulApiErrorCode =
  | 'NC_CONSUL_STATUS'
  | 'NC_CONSUL_UNREACHABLE'
  | 'NC_CONSUL_TIMEOUT'
  | 'NC_CONSUL_BAD_REQUEST'
  | 'NC_CONSUL_BAD_RESPONSE';

export class ConsulApiError extends NomadChainError {
  readonly status: number | undefined;

  constructor(
    code: ConsulApiErrorCode,
    message: string,
    options: ErrorOptions & { status?: number; context?: ErrorContext } = {},
  ) {
    super(code, message, {
      cause: options.cause,
      context: { ...options.context, status: options.status },
      recoverable:
        code === 'NC_CONSUL_UNREACHABLE' ||
        code === 'NC_CONSUL_TIMEOUT' ||
        (options.status !== undefined && options.status >= 500),
    });
    this.status = options.status;
  }
}

interface PapiLikeError {
  isValidation?: boolean;
  isTimeout?: boolean;
  isResponse?: boolean;
  statusCode?: number;
  response?: { body?: unknown };
  message?: string;
}

/** The one mapping from the `consul` package's (papi) errors to ours. */
export function toConsulApiError(err: unknown, operation: string): ConsulApiError {
  if (err instanceof ConsulApiError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as PapiLikeError;
  const context = { operation, detail: typeof e.message === 'string' ? e.message.slice(0, 512) : undefined };
  if (e.isValidation === true) {
    return new ConsulApiError('NC_CONSUL_BAD_REQUEST', 'Consul request invalid', { cause: err, context });
  }
  if (e.isTimeout === true) {
    return new ConsulApiError('NC_CONSUL_TIMEOUT', 'Consul call timed out', { cause: err, context });
  }
  if (e.isResponse === true && typeof e.statusCode === 'number') {
    return new ConsulApiError('NC_CONSUL_STATUS', 'Consul refused the call', {
      cause: err,
      context,
      status: e.statusCode,
    });
  }
  return new ConsulApiError('NC_CONSUL_UNREACHABLE', 'Consul unreachable', { cause: err, context });
}
