import { createHash } from 'node:crypto';
import { lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TransferError } from './errors';
import type { StageTimes } from './stage-times';
import { timed, timedAsync } from './stage-times';

/** Content-defined chunk sizes (FastCDC with normalised chunking); maxBytes - minBytes is the fallback grid. */
export interface ChunkingParams {
  readonly minBytes: number;
  /** A power of two. */
  readonly avgBytes: number;
  readonly maxBytes: number;
}

/**
 * Boundaries follow content, not offsets, so bytes inserted early in a file (a memory area that grew)
 * shift only the chunks around the insertion and the rest still deduplicate. 32 KiB on average: a change
 * costs its own bytes plus about one chunk on each side, so 5 % of memory changed in 256 KiB runs sends
 * about 7 %; the manifest stays small (32 Ki chunks per GiB, about 36 bytes each).
 */
export const DEFAULT_CHUNKING: ChunkingParams = Object.freeze({
  minBytes: 8 * 1024,
  avgBytes: 32 * 1024,
  maxBytes: 136 * 1024,
});

/**
 * CRIU's page images (`pages-*.img`) hold whole pages in pagemap order: a page changes in place, pages
 * never shift inside a file, so fixed-size chunks find every unchanged stretch that content-defined ones
 * would, without scanning each byte for a cut point. 128 KiB: a 256 KiB run of changed pages costs about
 * 384 KiB on the wire, and a 512 MiB image is 4 Ki chunks (messages, store files) instead of 16 Ki.
 */
export const PAGE_CHUNK_BYTES = 128 * 1024;

/** Files cut into fixed-size chunks: CRIU page images. */
export function isPageImage(path: string): boolean {
  return /(?:^|\/)pages-\d+\.img$/.test(path);
}

const READ_BLOCK_BYTES = 4 * 1024 * 1024;

// A fixed gear table: sender builds must agree on it, or an upgrade would defeat deduplication.
const GEAR = new Int32Array(256);
for (let i = 0; i < 256; i += 1) GEAR[i] = createHash('sha256').update(`nomad-chain gear ${i}`).digest().readInt32LE(0);

export type ChunkerEvent =
  | { readonly kind: 'file'; readonly path: string; readonly mode: number; readonly sizeBytes: number }
  | { readonly kind: 'directory'; readonly path: string; readonly mode: number }
  | { readonly kind: 'chunk'; readonly digest: Buffer; readonly data: Buffer };

export class ContentDefinedChunker {
  private readonly maskSmall: number;
  private readonly maskLarge: number;

  constructor(
    readonly params: ChunkingParams = DEFAULT_CHUNKING,
    private readonly stages?: StageTimes,
    /** Chunk size for page images (isPageImage); 0 cuts them by content too. @default PAGE_CHUNK_BYTES */
    readonly pageChunkBytes = PAGE_CHUNK_BYTES,
  ) {
    const bits = Math.log2(params.avgBytes);
    if (
      !Number.isInteger(bits) ||
      params.minBytes <= 0 ||
      params.minBytes > params.avgBytes ||
      params.avgBytes >= params.maxBytes
    ) {
      throw new RangeError('chunking needs 0 < minBytes <= avgBytes (a power of two) < maxBytes');
    }
    if (!Number.isInteger(pageChunkBytes) || pageChunkBytes < 0 || pageChunkBytes % 4096 !== 0)
      throw new RangeError('pageChunkBytes must be a multiple of 4 KiB (or 0)');
    this.maskSmall = (2 ** (bits + 2) - 1) | 0;
    this.maskLarge = (2 ** (bits - 2) - 1) | 0;
  }

  /** The largest chunk this chunker cuts. */
  get maxChunkBytes(): number {
    return Math.max(this.params.maxBytes, this.pageChunkBytes);
  }

  /**
   * End (exclusive) of the chunk starting at `start`; `final` says no bytes follow `end`, `base` is the
   * file offset of `buf[0]`. Where content offers no cut point (zero pages, periodic data) the cut falls
   * on a fixed grid of file offsets instead of `start + maxBytes`: a change inside such a stretch then
   * disturbs only the chunks around it, and the ones after line up with the previous checkpoint's again.
   */
  nextCut(buf: Uint8Array, start: number, end: number, final: boolean, base = 0): number {
    const { minBytes, avgBytes, maxBytes } = this.params;
    if (end - start <= minBytes) return final ? end : -1;
    const limit = Math.min(start + maxBytes, end);
    const normal = Math.min(start + avgBytes, limit);
    let hash = 0;
    let i = start + minBytes;
    for (; i < normal; i += 1) {
      hash = ((hash << 1) + (GEAR[buf[i] as number] as number)) | 0;
      if ((hash & this.maskSmall) === 0) return i + 1;
    }
    for (; i < limit; i += 1) {
      hash = ((hash << 1) + (GEAR[buf[i] as number] as number)) | 0;
      if ((hash & this.maskLarge) === 0) return i + 1;
    }
    if (limit === start + maxBytes) {
      const grid = maxBytes - minBytes;
      return Math.ceil((base + start + minBytes) / grid) * grid - base;
    }
    return final ? end : -1;
  }

  /**
   * Walks `dir` in path order and yields each entry and then its chunks. A file of up to one read block (4 MiB)
   * is read whole, in one call, while the files before it are still being chunked (a few at a time); a larger
   * one is read 4 MiB at a time: memory stays bounded whatever the checkpoint's size. Only regular files and
   * directories are allowed.
   */
  async *chunkDirectory(dir: string): AsyncGenerator<ChunkerEvent> {
    const entries = await walk(dir, '');
    const reads = new WholeReads(dir, entries, this.stages);
    for (const [index, entry] of entries.entries()) {
      if (entry.directory) {
        yield { kind: 'directory', path: entry.path, mode: entry.mode };
        continue;
      }
      yield { kind: 'file', path: entry.path, mode: entry.mode, sizeBytes: entry.sizeBytes };
      let read = 0;
      const fixed = this.pageChunkBytes > 0 && isPageImage(entry.path);
      const whole = reads.take(index);
      const chunks =
        whole !== undefined
          ? this.wholeChunks(await whole, fixed)
          : fixed
            ? this.fixedChunks(join(dir, entry.path))
            : this.chunkFile(join(dir, entry.path));
      for await (const data of chunks) {
        read += data.length;
        yield { kind: 'chunk', digest: timed(this.stages, 'hash', data.length, () => sha256(data)), data };
      }
      if (read !== entry.sizeBytes) {
        throw new TransferError('NC_TRANSFER_SOURCE_INVALID', 'checkpoint file changed while it was read', {
          context: { path: entry.path, expectedBytes: entry.sizeBytes, readBytes: read },
        });
      }
    }
  }

  /** The chunks of a file read whole: the same cuts as reading it a block at a time. */
  private *wholeChunks(data: Buffer, fixed: boolean): Generator<Buffer> {
    if (fixed) {
      for (let pos = 0; pos < data.length; pos += this.pageChunkBytes)
        yield data.subarray(pos, Math.min(pos + this.pageChunkBytes, data.length));
      return;
    }
    const cuts: number[] = [];
    timed(this.stages, 'chunk', data.length, () => {
      for (let at = 0; at < data.length;) {
        const cut = this.nextCut(data, at, data.length, true);
        cuts.push(cut);
        at = cut;
      }
    });
    let pos = 0;
    for (const cut of cuts) {
      yield data.subarray(pos, cut);
      pos = cut;
    }
  }

  /** Fixed-size chunks, read a block at a time into a fresh buffer (chunks are handed on, not copied). */
  private async *fixedChunks(path: string): AsyncGenerator<Buffer> {
    const size = this.pageChunkBytes;
    const blockBytes = Math.max(size, Math.floor(READ_BLOCK_BYTES / size) * size);
    const handle = await open(path, 'r');
    try {
      for (;;) {
        const block = Buffer.allocUnsafe(blockBytes);
        const { bytesRead } = await timedAsync(this.stages, 'read', blockBytes, () =>
          handle.read(block, 0, blockBytes, null),
        );
        for (let pos = 0; pos < bytesRead; pos += size) yield block.subarray(pos, Math.min(pos + size, bytesRead));
        if (bytesRead < blockBytes) return;
      }
    } finally {
      await handle.close();
    }
  }

  private async *chunkFile(path: string): AsyncGenerator<Buffer> {
    const handle = await open(path, 'r');
    try {
      let carry = Buffer.alloc(0);
      let base = 0;
      for (;;) {
        // The unfinished tail of the last block goes first, so a chunk never spans two buffers.
        const block = Buffer.allocUnsafe(carry.length + READ_BLOCK_BYTES);
        carry.copy(block);
        const { bytesRead } = await timedAsync(this.stages, 'read', READ_BLOCK_BYTES, () =>
          handle.read(block, carry.length, READ_BLOCK_BYTES, null),
        );
        const final = bytesRead === 0;
        const buf = block.subarray(0, carry.length + bytesRead);
        let pos = 0;
        const cuts: number[] = [];
        timed(this.stages, 'chunk', buf.length, () => {
          for (let at = pos; at < buf.length;) {
            const cut = this.nextCut(buf, at, buf.length, final, base);
            if (cut < 0) break;
            cuts.push(cut);
            at = cut;
          }
        });
        for (const cut of cuts) {
          yield buf.subarray(pos, cut);
          pos = cut;
        }
        carry = buf.subarray(pos);
        base += pos;
        if (final) return;
      }
    } finally {
      await handle.close();
    }
  }
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

interface WalkEntry {
  readonly path: string;
  readonly mode: number;
  readonly sizeBytes: number;
  readonly directory: boolean;
}

/** Whole-file reads in flight at once: as many as libuv's pool has threads by default. */
const WHOLE_READS_AHEAD = 4;

/**
 * Reads the walk's small files whole, up to WHOLE_READS_AHEAD ahead of the one being chunked. Each file system
 * call is a trip through libuv's pool, queued behind everything else on a busy node; one file's open, read and
 * close in a row cost three such waits, several files' overlap.
 */
class WholeReads {
  private readonly pending = new Map<number, Promise<Buffer>>();
  private readonly small: number[];
  private next = 0;

  constructor(
    private readonly dir: string,
    private readonly entries: readonly WalkEntry[],
    private readonly stages: StageTimes | undefined,
  ) {
    this.small = entries.flatMap((e, i) => (!e.directory && e.sizeBytes <= READ_BLOCK_BYTES ? [i] : []));
  }

  /** The whole content of entry `index` if it is read whole (undefined otherwise); starts the reads after it. */
  take(index: number): Promise<Buffer> | undefined {
    this.fill();
    const read = this.pending.get(index);
    this.pending.delete(index);
    this.fill();
    return read;
  }

  private fill(): void {
    while (this.pending.size < WHOLE_READS_AHEAD && this.next < this.small.length) {
      const index = this.small[this.next] as number;
      this.next += 1;
      const entry = this.entries[index] as WalkEntry;
      const read = timedAsync(this.stages, 'read', entry.sizeBytes, () =>
        readWhole(join(this.dir, entry.path), entry.sizeBytes),
      );
      // Reads ahead of a failing file are abandoned; they must not surface as unhandled.
      read.catch(() => undefined);
      this.pending.set(index, read);
    }
  }
}

/**
 * A file's bytes in one read call: one byte more than its size is asked for, so a file that grew since it was
 * listed reads long (and is refused) without a second call to find the end.
 */
async function readWhole(path: string, sizeBytes: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(sizeBytes + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** The tree under `root/prefix` in path order; each directory's entries are examined at once. */
async function walk(root: string, prefix: string): Promise<WalkEntry[]> {
  const names = (await readdir(join(root, prefix))).sort();
  const subtrees = await Promise.all(
    names.map(async (name): Promise<WalkEntry[]> => {
      const path = prefix === '' ? name : `${prefix}/${name}`;
      const stat = await lstat(join(root, path));
      if (stat.isDirectory())
        return [{ path, mode: stat.mode & 0o7777, sizeBytes: 0, directory: true }, ...(await walk(root, path))];
      if (stat.isFile()) return [{ path, mode: stat.mode & 0o7777, sizeBytes: stat.size, directory: false }];
      throw new TransferError(
        'NC_TRANSFER_SOURCE_INVALID',
        'checkpoint directory holds something other than files and directories',
        { context: { path } },
      );
    }),
  );
  return subtrees.flat();
}
