import { TransferError } from './errors';

/** Protocol versions this build speaks. Raise MAX when the wire changes; raise MIN when old peers must go. */
export const PROTOCOL_VERSIONS: VersionRange = Object.freeze({ min: 1, max: 1 });

/** Metadata header that carries the agreed version on every call after Hello. */
export const VERSION_HEADER = 'chain-transfer-version';

export interface VersionRange {
  readonly min: number;
  readonly max: number;
}

/** The highest version both ranges contain; a peer with no common version is refused, never guessed at. */
export function negotiateVersion(local: VersionRange, peer: VersionRange): number {
  const version = Math.min(local.max, peer.max);
  if (version < local.min || version < peer.min || peer.min > peer.max) {
    throw new TransferError(
      'NC_TRANSFER_VERSION_MISMATCH',
      'peer speaks no protocol version in common with this node',
      { context: { localMin: local.min, localMax: local.max, peerMin: peer.min, peerMax: peer.max } },
    );
  }
  return version;
}
