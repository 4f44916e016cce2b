import { NomadChainError } from '../../../common/errors';
import type { NomadChainErrorOptions } from '../../../common/errors';

/** Codes of the checkpoint store; each has a row in README's error table. */
export type StoreErrorCode =
  | 'NC_STORE_FULL'
  | 'NC_STORE_CHUNK_CORRUPT'
  | 'NC_STORE_MANIFEST_CORRUPT'
  | 'NC_STORE_NOT_FOUND'
  | 'NC_STORE_TARGET_EXISTS'
  | 'NC_STORE_KEY_INVALID'
  | 'NC_STORE_CONFLICT'
  | 'NC_STORE_IO';

export class StoreError extends NomadChainError {
  declare readonly code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}
