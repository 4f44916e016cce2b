import { NomadChainError } from '../errors';
import type { ErrorContext } from '../errors';

/** Codes of the Nomad HTTP boundary; each is listed in README's error table. */
export type NomadApiErrorCode =
  | 'NC_NOMAD_API_STATUS'
  | 'NC_NOMAD_API_NOT_FOUND'
  | 'NC_NOMAD_API_ACL_DENIED'
  | 'NC_NOMAD_API_UNREACHABLE'
  | 'NC_NOMAD_API_TIMEOUT'
  | 'NC_NOMAD_API_BAD_RESPONSE'
  | 'NC_NOMAD_API_ABORTED';

/** A failed call to Nomad's HTTP API; `status` is the HTTP status when Nomad answered at all. */
export class NomadApiError extends NomadChainError {
  readonly status: number | undefined;

  constructor(
    code: NomadApiErrorCode,
    message: string,
    options: ErrorOptions & { status?: number; context?: ErrorContext } = {},
  ) {
    super(code, message, {
      cause: options.cause,
      context: { ...options.context, status: options.status },
      // Nomad answers 5xx during leader elections and is unreachable while an agent restarts: both pass.
      recoverable:
        code === 'NC_NOMAD_API_UNREACHABLE' ||
        code === 'NC_NOMAD_API_TIMEOUT' ||
        (options.status !== undefined && options.status >= 500),
    });
    this.status = options.status;
  }
}
