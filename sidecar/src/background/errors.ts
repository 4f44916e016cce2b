import { NomadChainError } from '../../../common/errors';
import type { NomadChainErrorOptions } from '../../../common/errors';

/** Codes of background checkpoints; each has a row in README's error table. */
export type BackgroundErrorCode = 'NC_BACKGROUND_LIST_UNREADABLE';

export class BackgroundError extends NomadChainError {
  declare readonly code: BackgroundErrorCode;

  constructor(code: BackgroundErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}
