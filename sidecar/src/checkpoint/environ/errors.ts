import { NomadChainError } from '../../../../common/errors';
import type { ErrorContext } from '../../../../common/errors';

/**
 * A checkpoint's images could not be read or patched to give the restored task its new environment. The
 * restorer handles it: the task is restored with the environment it had, and every differing variable is
 * reported as kept.
 */
export class EnvironmentError extends NomadChainError {
  constructor(code: EnvironmentErrorCode, message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(code, message, options);
  }
}

export type EnvironmentErrorCode = 'NC_ENV_IMAGE_UNREADABLE' | 'NC_ENV_REWRITE_FAILED';
