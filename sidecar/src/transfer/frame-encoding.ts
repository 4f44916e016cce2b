import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { StateTransferService } from '../../../proto/gen/chain/v1/transfer';
import type { ChunkFrame, StateTransferClient } from '../../../proto/gen/chain/v1/transfer';

function varintBytes(value: number): number {
  let bytes = 1;
  for (let v = value >>> 7; v !== 0; v >>>= 7) bytes += 1;
  return bytes;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  let v = value >>> 0;
  while (v > 0x7f) {
    out[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[at++] = v;
  return at;
}

/**
 * A ChunkFrame's protobuf encoding, byte for byte what the generated encoder writes (fields in order,
 * defaults left out), built in one buffer: the generated path copies the chunk into a protobuf writer, then
 * into a Buffer, and leaves both to the garbage collector; here the payload is copied once.
 */
export function encodeChunkFrame(frame: ChunkFrame): Buffer {
  const { digest, rawSize, data } = frame;
  const codec: number = frame.codec;
  if (codec < 0) throw new RangeError('negative codec');
  let size = 0;
  if (digest.length !== 0) size += 1 + varintBytes(digest.length) + digest.length;
  if (codec !== 0) size += 1 + varintBytes(codec);
  if (rawSize !== 0) size += 1 + varintBytes(rawSize);
  if (data.length !== 0) size += 1 + varintBytes(data.length) + data.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  if (digest.length !== 0) {
    out[at++] = 10;
    at = writeVarint(out, at, digest.length);
    at += Buffer.from(digest.buffer, digest.byteOffset, digest.length).copy(out, at);
  }
  if (codec !== 0) {
    out[at++] = 16;
    at = writeVarint(out, at, codec);
  }
  if (rawSize !== 0) {
    out[at++] = 24;
    at = writeVarint(out, at, rawSize);
  }
  if (data.length !== 0) {
    out[at++] = 34;
    at = writeVarint(out, at, data.length);
    at += Buffer.from(data.buffer, data.byteOffset, data.length).copy(out, at);
  }
  return out;
}

/** The StateTransfer client with the upload's frames encoded by encodeChunkFrame; the wire is unchanged. */
export const FastStateTransferClient = makeGenericClientConstructor(
  {
    ...StateTransferService,
    uploadChunks: { ...StateTransferService.uploadChunks, requestSerialize: encodeChunkFrame },
  },
  'chain.v1.StateTransfer',
) as unknown as typeof StateTransferClient;
