import { status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import type { NomadChainError } from '../../../common/errors';
import { decodeStatus } from '../../../common/grpc/status-codec';
import { TransferError } from './errors';

/** TLS refused a record whose authentication tag did not match: bytes were changed between the two ends. */
function looksAltered(details: string): boolean {
  return /bad record mac|decryption failed|decrypt error|bad_record_mac/i.test(details);
}

function looksLikeTls(details: string): boolean {
  return /certificate|handshake|ssl|tls|alert|verify|self[- ]signed/i.test(details);
}

/**
 * The transfer client's one mapping: a failed call becomes the peer's own error when it sent its code, else
 * a transfer error saying what the channel did (unreachable, TLS refused, timed out, another protocol).
 */
export function peerFailure(err: ServiceError, peer: string): NomadChainError {
  const refused = decodeStatus(err, { prefix: 'peer refused: ', context: { peer } });
  if (refused !== undefined) return refused;
  const context = { peer, grpcCode: err.code };
  // Before the TLS test below, which an alert of this kind would also match: the link, not the peer, is at
  // fault, and a push over a sound link can go on from the chunks already stored.
  if (looksAltered(err.details)) {
    return new TransferError('NC_TRANSFER_STREAM_CORRUPT', `the stream was altered in flight: ${err.details.trim()}`, {
      cause: err,
      context,
      recoverable: true,
    });
  }
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
