import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { ChunkCodec } from '../../../proto/gen/chain/v1/transfer';
import { TransferError } from './errors';

/** A compressor setting the sender may pick; the level is the sender's business, the wire carries the codec. */
export interface CodecOption {
  readonly codec: ChunkCodec;
  readonly level: number;
  readonly name: string;
}

export const NONE: CodecOption = Object.freeze({ codec: ChunkCodec.CHUNK_CODEC_NONE, level: 0, name: 'none' });

/**
 * Node 20 has no zstd; these are the zlib settings fast enough to compete with a network. Brotli at
 * quality 1 measured faster than deflate at level 1 on text and far faster on random bytes here.
 */
export const CODEC_OPTIONS: readonly CodecOption[] = Object.freeze([
  NONE,
  { codec: ChunkCodec.CHUNK_CODEC_DEFLATE, level: 1, name: 'deflate-1' },
  { codec: ChunkCodec.CHUNK_CODEC_BROTLI, level: 1, name: 'brotli-1' },
  { codec: ChunkCodec.CHUNK_CODEC_BROTLI, level: 4, name: 'brotli-4' },
]);

export const SUPPORTED_CODECS: readonly ChunkCodec[] = Object.freeze([
  ChunkCodec.CHUNK_CODEC_NONE,
  ChunkCodec.CHUNK_CODEC_DEFLATE,
  ChunkCodec.CHUNK_CODEC_BROTLI,
]);

const deflateRaw = promisify(zlib.deflateRaw);
const inflateRaw = promisify(zlib.inflateRaw);
const brotliCompress = promisify(zlib.brotliCompress);
const brotliDecompress = promisify(zlib.brotliDecompress);

function brotliParams(level: number, sizeHint: number): zlib.BrotliOptions {
  return {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: level,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: sizeHint,
      [zlib.constants.BROTLI_PARAM_LGWIN]: 18,
    },
  };
}

/** Compresses on libuv's thread pool, so the event loop keeps the connection busy meanwhile. */
export async function compress(option: CodecOption, data: Buffer): Promise<Buffer> {
  switch (option.codec) {
    case ChunkCodec.CHUNK_CODEC_DEFLATE:
      return deflateRaw(data, { level: option.level });
    case ChunkCodec.CHUNK_CODEC_BROTLI:
      return brotliCompress(data, brotliParams(option.level, data.length));
    default:
      return data;
  }
}

function compressSync(option: CodecOption, data: Buffer): Buffer {
  switch (option.codec) {
    case ChunkCodec.CHUNK_CODEC_DEFLATE:
      return zlib.deflateRawSync(data, { level: option.level });
    case ChunkCodec.CHUNK_CODEC_BROTLI:
      return zlib.brotliCompressSync(data, brotliParams(option.level, data.length));
    default:
      return data;
  }
}

/** Inflates at most `rawSize` bytes: a frame that claims a small chunk cannot make the receiver fill memory. */
export async function decompress(codec: ChunkCodec, data: Buffer, rawSize: number): Promise<Buffer> {
  try {
    switch (codec) {
      case ChunkCodec.CHUNK_CODEC_NONE:
        return data;
      case ChunkCodec.CHUNK_CODEC_DEFLATE:
        return await inflateRaw(data, { maxOutputLength: Math.max(rawSize, 1) });
      case ChunkCodec.CHUNK_CODEC_BROTLI:
        return await brotliDecompress(data, { maxOutputLength: Math.max(rawSize, 1) });
      default:
        throw new TransferError('NC_TRANSFER_FRAME_INVALID', 'unknown chunk codec', { context: { codec } });
    }
  } catch (cause) {
    if (cause instanceof TransferError) throw cause;
    throw new TransferError('NC_TRANSFER_CHUNK_CORRUPT', 'chunk does not decompress', { cause, context: { codec } });
  }
}

export interface CodecMeasurement {
  readonly option: CodecOption;
  /** Plain bytes compressed per second on this machine, now. */
  readonly inputBytesPerSec: number;
  /** Compressed size over plain size. */
  readonly ratio: number;
}

/** Above this ratio on the first codec tried, the sample is taken as incompressible (random memory). */
export const INCOMPRESSIBLE_RATIO = 0.97;

/** The most bytes of a chunk a probe compresses: enough to judge, cheap next to sending the chunk. */
export const PROBE_SAMPLE_BYTES = 32 * 1024;

/**
 * Times each option on a real sample of the data being sent (synchronously, for a clean measurement).
 * Once one codec finds the sample incompressible, the others are not tried: they are charged its time and
 * no gain, so random memory costs one small probe, not one per codec.
 */
export function measureCodecs(sample: Buffer, options: readonly CodecOption[] = CODEC_OPTIONS): CodecMeasurement[] {
  let incompressible: number | undefined;
  return options.map((option) => {
    if (option.codec === ChunkCodec.CHUNK_CODEC_NONE) return { option, inputBytesPerSec: Infinity, ratio: 1 };
    if (incompressible !== undefined) return { option, inputBytesPerSec: incompressible, ratio: 1 };
    const started = process.hrtime.bigint();
    const out = compressSync(option, sample);
    const seconds = Math.max(Number(process.hrtime.bigint() - started) / 1e9, 1e-7);
    const ratio = Math.min(out.length / sample.length, 1);
    if (ratio >= INCOMPRESSIBLE_RATIO) incompressible = sample.length / seconds;
    return { option, inputBytesPerSec: sample.length / seconds, ratio };
  });
}

/**
 * The option that moves a plain byte soonest: compressing costs 1/speed, sending costs ratio/wire. The
 * two costs add up, as if compression and sending never overlapped (they do, on a spare core), so an
 * option that wins here is never slower than sending the bytes as they are.
 */
export function chooseCodec(measurements: readonly CodecMeasurement[], wireBytesPerSec: number): CodecMeasurement {
  let best: CodecMeasurement | undefined;
  let bestCost = Infinity;
  for (const m of measurements) {
    const cost = 1 / m.inputBytesPerSec + m.ratio / wireBytesPerSec;
    if (cost < bestCost) {
      best = m;
      bestCost = cost;
    }
  }
  if (best === undefined) throw new RangeError('no codec measurements');
  return best;
}

export interface CodecSelectorOptions {
  /** Re-measure after this many plain bytes: a checkpoint mixes zero pages, heaps and random data. @default 4 MiB */
  readonly reprobeBytes?: number;
  /** Plain bytes sent uncompressed first, to measure the wire before choosing. @default 8 MiB */
  readonly warmupBytes?: number;
  readonly options?: readonly CodecOption[];
}

/** Picks the codec per stretch of data from fresh measurements of the data and of the wire. */
export class CodecSelector {
  private readonly reprobeBytes: number;
  private readonly warmupBytes: number;
  private readonly options: readonly CodecOption[];
  private wireBytesPerSec: number | undefined;
  private current: CodecMeasurement = { option: NONE, inputBytesPerSec: Infinity, ratio: 1 };
  private seenBytes = 0;
  private nextProbeAt = 0;
  private readonly uses = new Map<string, number>();

  constructor(options: CodecSelectorOptions = {}) {
    this.reprobeBytes = options.reprobeBytes ?? 4 * 1024 * 1024;
    this.warmupBytes = options.warmupBytes ?? 8 * 1024 * 1024;
    this.options = options.options ?? CODEC_OPTIONS;
  }

  /** A measured wire rate: bytes acknowledged while the sender was blocked on the window. */
  recordWireRate(bytesPerSec: number): void {
    if (!(bytesPerSec > 0) || !Number.isFinite(bytesPerSec)) return;
    this.wireBytesPerSec =
      this.wireBytesPerSec === undefined ? bytesPerSec : 0.7 * this.wireBytesPerSec + 0.3 * bytesPerSec;
  }

  get wireRate(): number | undefined {
    return this.wireBytesPerSec;
  }

  /** The option for the next chunk; `chunk` doubles as the sample when a probe is due. */
  optionFor(chunk: Buffer): CodecOption {
    this.seenBytes += chunk.length;
    if (this.wireBytesPerSec !== undefined && this.seenBytes > this.warmupBytes && this.seenBytes >= this.nextProbeAt) {
      const sample = chunk.subarray(0, PROBE_SAMPLE_BYTES);
      this.current = chooseCodec(measureCodecs(sample, this.options), this.wireBytesPerSec);
      this.nextProbeAt = this.seenBytes + this.reprobeBytes;
    }
    const name = this.current.option.name;
    this.uses.set(name, (this.uses.get(name) ?? 0) + chunk.length);
    return this.current.option;
  }

  /** Plain bytes given to each option so far. */
  usage(): Record<string, number> {
    return Object.fromEntries(this.uses);
  }
}
