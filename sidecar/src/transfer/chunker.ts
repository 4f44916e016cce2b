import { createHash } from 'node:crypto';
import { lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TransferError } from './errors';

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

  constructor(readonly params: ChunkingParams = DEFAULT_CHUNKING) {
    const bits = Math.log2(params.avgBytes);
    if (
      !Number.isInteger(bits) ||
      params.minBytes <= 0 ||
      params.minBytes > params.avgBytes ||
      params.avgBytes >= params.maxBytes
    ) {
      throw new RangeError('chunking needs 0 < minBytes <= avgBytes (a power of two) < maxBytes');
    }
    this.maskSmall = (2 ** (bits + 2) - 1) | 0;
    this.maskLarge = (2 ** (bits - 2) - 1) | 0;
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
   * Walks `dir` in path order and yields each entry and then its chunks, reading 4 MiB at a time: memory
   * stays bounded whatever the checkpoint's size. Only regular files and directories are allowed.
   */
  async *chunkDirectory(dir: string): AsyncGenerator<ChunkerEvent> {
    for (const entry of await walk(dir, '')) {
      if (entry.directory) {
        yield { kind: 'directory', path: entry.path, mode: entry.mode };
        continue;
      }
      yield { kind: 'file', path: entry.path, mode: entry.mode, sizeBytes: entry.sizeBytes };
      let read = 0;
      for await (const data of this.chunkFile(join(dir, entry.path))) {
        read += data.length;
        yield { kind: 'chunk', digest: sha256(data), data };
      }
      if (read !== entry.sizeBytes) {
        throw new TransferError('NC_TRANSFER_SOURCE_INVALID', 'checkpoint file changed while it was read', {
          context: { path: entry.path, expectedBytes: entry.sizeBytes, readBytes: read },
        });
      }
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
        const { bytesRead } = await handle.read(block, carry.length, READ_BLOCK_BYTES, null);
        const final = bytesRead === 0;
        const buf = block.subarray(0, carry.length + bytesRead);
        let pos = 0;
        while (pos < buf.length) {
          const cut = this.nextCut(buf, pos, buf.length, final, base);
          if (cut < 0) break;
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

async function walk(root: string, prefix: string): Promise<WalkEntry[]> {
  const names = (await readdir(join(root, prefix))).sort();
  const entries: WalkEntry[] = [];
  for (const name of names) {
    const path = prefix === '' ? name : `${prefix}/${name}`;
    const stat = await lstat(join(root, path));
    if (stat.isDirectory()) {
      entries.push({ path, mode: stat.mode & 0o7777, sizeBytes: 0, directory: true });
      entries.push(...(await walk(root, path)));
    } else if (stat.isFile()) {
      entries.push({ path, mode: stat.mode & 0o7777, sizeBytes: stat.size, directory: false });
    } else {
      throw new TransferError(
        'NC_TRANSFER_SOURCE_INVALID',
        'checkpoint directory holds something other than files and directories',
        {
          context: { path },
        },
      );
    }
  }
  return entries;
}
