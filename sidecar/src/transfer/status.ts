import { Metadata, status } from '@grpc/grpc-js';
import type { ServiceError, StatusObject } from '@grpc/grpc-js';
import { NomadChainError, errorCode, errorMessage } from '../../../common/errors';
import { TransferError } from './errors';

export const CODE_TRAILER = 'nc-error-code';
const RECOVERABLE_TRAILER = 'nc-recoverable';

const GRPC_CODE: Readonly<Record<string, status>> = {
  NC_TRANSFER_VERSION_MISMATCH: status.FAILED_PRECONDITION,
  NC_TRANSFER_FRAME_INVALID: status.INVALID_ARGUMENT,
  NC_TRANSFER_MANIFEST_INVALID: status.INVALID_ARGUMENT,
  NC_TRANSFER_CHUNK_CORRUPT: status.DATA_LOSS,
  NC_TRANSFER_MANIFEST_MISMATCH: status.DATA_LOSS,
  NC_TRANSFER_CHUNKS_MISSING: status.FAILED_PRECONDITION,
  NC_TRANSFER_PROTOCOL: status.INVALID_ARGUMENT,
  NC_STORE_FULL: status.RESOURCE_EXHAUSTED,
  NC_STORE_CONFLICT: status.ALREADY_EXISTS,
  NC_STORE_NOT_FOUND: status.NOT_FOUND,
};

/** The server's one mapping: an error becomes a gRPC status whose trailer carries the stable code. */
export function toStatus(err: unknown): Partial<StatusObject> {
  const code = errorCode(err);
  const known = code !== undefined && /^NC_[A-Z0-9_]+$/.test(code);
  const metadata = new Metadata();
  metadata.set(CODE_TRAILER, known ? code : 'NC_TRANSFER_REMOTE');
  if (err instanceof NomadChainError && err.recoverable) metadata.set(RECOVERABLE_TRAILER, 'true');
  return {
    code: known ? (GRPC_CODE[code] ?? status.INTERNAL) : status.INTERNAL,
    details: known ? errorMessage(err) : 'internal error',
    metadata,
  };
}

function looksLikeTls(details: string): boolean {
  return /certificate|handshake|ssl|tls|alert|verify|self[- ]signed/i.test(details);
}

/** The client's one mapping: a failed call becomes a coded error, the peer's own code when it sent one. */
export function fromServiceError(err: ServiceError, peer: string): NomadChainError {
  const remote = err.metadata?.get(CODE_TRAILER)[0];
  if (typeof remote === 'string' && /^NC_[A-Z0-9_]+$/.test(remote)) {
    const recoverable = err.metadata.get(RECOVERABLE_TRAILER)[0] === 'true';
    return new NomadChainError(remote, `peer refused: ${err.details}`, { cause: err, context: { peer }, recoverable });
  }
  const context = { peer, grpcCode: err.code };
  switch (err.code) {
    case status.UNAVAILABLE:
      if (looksLikeTls(err.details)) {
        return new TransferError('NC_TRANSFER_AUTH_FAILED', `TLS handshake with peer failed: ${err.details}`, {
          cause: err,
          context,
        });
      }
      return new TransferError('NC_TRANSFER_PEER_UNAVAILABLE', `peer unavailable: ${err.details}`, {
        cause: err,
        context,
        recoverable: true,
      });
    case status.DEADLINE_EXCEEDED:
      return new TransferError('NC_TRANSFER_TIMEOUT', 'peer did not answer in time', {
        cause: err,
        context,
        recoverable: true,
      });
    case status.UNIMPLEMENTED:
      return new TransferError('NC_TRANSFER_VERSION_MISMATCH', 'peer does not serve this protocol', {
        cause: err,
        context,
      });
    case status.CANCELLED:
    case status.INTERNAL:
      if (/stream|connection|closed|reset|goaway|RST/i.test(err.details)) {
        return new TransferError('NC_TRANSFER_PEER_UNAVAILABLE', `connection to peer lost: ${err.details}`, {
          cause: err,
          context,
          recoverable: true,
        });
      }
      return new TransferError('NC_TRANSFER_REMOTE', `peer failed: ${err.details}`, { cause: err, context });
    default:
      return new TransferError('NC_TRANSFER_REMOTE', `peer failed: ${err.details}`, { cause: err, context });
  }
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && 'details' in err;
}
