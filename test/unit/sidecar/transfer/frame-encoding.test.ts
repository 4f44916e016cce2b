import { ChunkCodec, ChunkFrame } from '../../../../proto/gen/chain/v1/transfer';
import { encodeChunkFrame } from '../../../../sidecar/src/transfer/frame-encoding';
import { pseudoRandom } from '../../../contract/transfer/fixtures';

describe('encodeChunkFrame', () => {
  const frames: [string, ChunkFrame][] = [
    [
      'a raw 128 KiB chunk',
      {
        digest: pseudoRandom('d', 32),
        codec: ChunkCodec.CHUNK_CODEC_NONE,
        rawSize: 131072,
        data: pseudoRandom('x', 131072),
      },
    ],
    [
      'a compressed chunk',
      {
        digest: pseudoRandom('e', 32),
        codec: ChunkCodec.CHUNK_CODEC_BROTLI,
        rawSize: 300,
        data: pseudoRandom('y', 17),
      },
    ],
    [
      'a chunk inside a larger buffer',
      {
        digest: pseudoRandom('f', 64).subarray(16, 48),
        codec: ChunkCodec.CHUNK_CODEC_DEFLATE,
        rawSize: 1,
        data: pseudoRandom('z', 4096).subarray(100, 227),
      },
    ],
    [
      'an empty frame',
      { digest: Buffer.alloc(0), codec: ChunkCodec.CHUNK_CODEC_NONE, rawSize: 0, data: Buffer.alloc(0) },
    ],
  ];

  it.each(frames)('writes %s byte for byte as the generated encoder does', (_name, frame) => {
    const fast = encodeChunkFrame(frame);
    expect(fast.equals(Buffer.from(ChunkFrame.encode(frame).finish()))).toBe(true);
    const back = ChunkFrame.decode(fast);
    expect(Buffer.from(back.digest).equals(Buffer.from(frame.digest))).toBe(true);
    expect(Buffer.from(back.data).equals(Buffer.from(frame.data))).toBe(true);
    expect([back.codec, back.rawSize]).toEqual([frame.codec, frame.rawSize]);
  });
});
