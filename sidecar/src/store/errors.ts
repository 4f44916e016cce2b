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

/** An I/O failure under the store: a full disk is NC_STORE_FULL (recoverable), anything else NC_STORE_IO. */
export function storeIoError(cause: unknown, message: string, context: Record<string, string>): StoreError {
  const code = (cause as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StoreError('NC_STORE_FULL', 'disk under the checkpoint store is full', {
      cause,
      recoverable: true,
      context: { ...context, reason: 'disk' },
    });
  }
  return new StoreError('NC_STORE_IO', message, { cause, context });
}
