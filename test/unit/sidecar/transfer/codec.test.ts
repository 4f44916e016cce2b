import { ChunkCodec } from '../../../../proto/gen/chain/v1/transfer';
import {
  CODEC_OPTIONS,
  INCOMPRESSIBLE_RATIO,
  NONE,
  chooseCodec,
  compress,
  decompress,
  measureCodecs,
} from '../../../../sidecar/src/transfer/codec';
import { pseudoRandom } from '../../../contract/transfer/fixtures';

const text = Buffer.from('{"user":"alice","counter":42,"items":[1,2,3]}\n'.repeat(1500)).subarray(0, 64 * 1024);

describe('codec', () => {
  it.each(CODEC_OPTIONS.map((o) => [o.name, o] as const))('%s round-trips', async (_name, option) => {
    const packed = await compress(option, text);
    expect((await decompress(option.codec, packed, text.length)).equals(text)).toBe(true);
  });

  it('refuses to inflate past the declared plain size (no decompression bombs)', async () => {
    const packed = await compress(CODEC_OPTIONS[1] ?? NONE, Buffer.alloc(200_000));
    await expect(decompress(ChunkCodec.CHUNK_CODEC_DEFLATE, packed, 1000)).rejects.toMatchObject({
      code: 'NC_TRANSFER_CHUNK_CORRUPT',
    });
  });

  it('reports garbage as a corrupt chunk', async () => {
    await expect(decompress(ChunkCodec.CHUNK_CODEC_BROTLI, pseudoRandom('junk', 500), 4096)).rejects.toMatchObject({
      code: 'NC_TRANSFER_CHUNK_CORRUPT',
    });
  });

  it('measures on the data: text compresses, random bytes do not', () => {
    const onText = measureCodecs(text).filter((m) => m.option !== NONE);
    const onRandom = measureCodecs(pseudoRandom('r', 64 * 1024)).filter((m) => m.option !== NONE);
    for (const m of onText) expect(m.ratio).toBeLessThan(0.2);
    for (const m of onRandom) expect(m.ratio).toBeGreaterThan(0.95);
  });

  it('never picks compression that is slower than sending the bytes as they are', () => {
    const measured = [
      { option: NONE, inputBytesPerSec: Infinity, ratio: 1 },
      { option: CODEC_OPTIONS[1] ?? NONE, inputBytesPerSec: 100e6, ratio: 0.3 },
    ];
    // Over a 10 Gbit/s wire, compressing at 100 MB/s costs more than it saves.
    expect(chooseCodec(measured, 1.25e9).option).toBe(NONE);
    // Over a 100 Mbit/s wire it pays.
    expect(chooseCodec(measured, 12.5e6).option.name).toBe('deflate-1');
    // Incompressible data never pays.
    expect(
      chooseCodec([measured[0] as (typeof measured)[0], { ...(measured[1] as (typeof measured)[1]), ratio: 1 }], 1e6)
        .option,
    ).toBe(NONE);
  });
});

describe('codec probes on incompressible data', () => {
  it('tries one codec on random bytes and charges the rest no gain', () => {
    const measured = measureCodecs(pseudoRandom('probe', 32 * 1024));
    const tried = measured.filter((m) => m.option !== NONE);
    expect(tried.every((m) => m.ratio >= INCOMPRESSIBLE_RATIO)).toBe(true);
    // Every codec after the first carries the first one's speed: none of them ran.
    const speeds = new Set(tried.map((m) => m.inputBytesPerSec));
    expect(speeds.size).toBe(1);
    expect(chooseCodec(measured, 1e6).option).toBe(NONE);
  });

  it('still measures every codec on compressible data', () => {
    const tried = measureCodecs(text).filter((m) => m.option !== NONE);
    expect(tried.every((m) => m.ratio < 0.2)).toBe(true);
  });
});
