import { NomadChainError } from '../../../common/errors';
import type { NomadChainErrorOptions } from '../../../common/errors';

/** Codes of the State Transfer Protocol; each has a row in README's error table. */
export type TransferErrorCode =
  | 'NC_TRANSFER_VERSION_MISMATCH'
  | 'NC_TRANSFER_FRAME_INVALID'
  | 'NC_TRANSFER_CHUNK_CORRUPT'
  | 'NC_TRANSFER_MANIFEST_INVALID'
  | 'NC_TRANSFER_MANIFEST_MISMATCH'
  | 'NC_TRANSFER_CHUNKS_MISSING'
  | 'NC_TRANSFER_STREAM_TRUNCATED'
  | 'NC_TRANSFER_STREAM_CORRUPT'
  | 'NC_TRANSFER_PEER_UNAVAILABLE'
  | 'NC_TRANSFER_AUTH_FAILED'
  | 'NC_TRANSFER_TLS_CONFIG'
  | 'NC_TRANSFER_SOURCE_INVALID'
  | 'NC_TRANSFER_PROTOCOL'
  | 'NC_TRANSFER_TIMEOUT'
  | 'NC_TRANSFER_REMOTE';

export class TransferError extends NomadChainError {
  declare readonly code: TransferErrorCode;

  constructor(code: TransferErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}
