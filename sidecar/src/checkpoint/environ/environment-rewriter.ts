import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { MmEntry, PstreeEntry } from '../../../../proto/gen/criu/images';
import type { EnvChange, KeptReason } from './env-block';
import { diffEnv, planBlockRewrite } from './env-block';
import { EnvironmentError } from './errors';
import { MM_MAGIC, PSTREE_MAGIC, decodeEntry, readImage } from './image-file';
import type { ImageSegment, NotInImage } from './page-map';
import { PageMap } from './page-map';

export interface KeptEnvVariable {
  readonly name: string;
  readonly reason: KeptReason | NotInImage;
}

/** What a rewrite did, by variable name only: values may be secrets and are never reported. */
export interface EnvironmentReport {
  /** Processes of the tree whose environment block was read. */
  readonly processes: number;
  /** Variables that hold the new allocation's value in every process. */
  readonly rewritten: readonly string[];
  /** Variables that keep the checkpoint's value in at least one process, with the first reason found. */
  readonly kept: readonly KeptEnvVariable[];
}

export interface EnvironmentRewrite {
  readonly report: EnvironmentReport;
  /** Puts back every byte the rewrite changed: the checkpoint matches its digests again. */
  undo(): Promise<void>;
}

interface Undo {
  readonly path: string;
  readonly fileOffset: number;
  readonly original: Buffer;
}

/**
 * Gives a checkpoint's processes the new allocation's environment before CRIU restores them, by patching the
 * environment block (mm_env_start..mm_env_end of each mm-<pid>.img) inside the pages image, where the new value
 * has the old one's length (UUID-based values such as NOMAD_ALLOC_ID do). Pages a lazy dump left on the source
 * are not in the images: their variables are reported kept ('pages-on-source'), as are values of another length
 * and blocks the process itself changed. Programs that copy the environment at start (Python's os.environ, a
 * shell's variables) keep their copy; /proc/<pid>/environ, getenv() and Node's process.env read the block.
 */
export class EnvironmentRewriter {
  async rewrite(
    imagesDir: string,
    from: Readonly<Record<string, string>>,
    to: Readonly<Record<string, string>>,
  ): Promise<EnvironmentRewrite> {
    const diff = diffEnv(from, to);
    const kept = new Map<string, KeptReason | NotInImage>(diff.kept.map((k) => [k.name, k.reason]));
    const rewritten = new Set<string>();
    const undos: Undo[] = [];
    let processes = 0;
    const undo = async (): Promise<void> => {
      for (const u of undos.reverse()) await writeAt(u.path, [{ fileOffset: u.fileOffset, bytes: u.original }]);
      undos.length = 0;
    };
    try {
      if (diff.changes.length > 0) {
        for (const pid of await processIds(imagesDir)) {
          const outcome = await this.rewriteProcess(imagesDir, pid, diff.changes);
          if (outcome === undefined) continue;
          processes++;
          for (const name of outcome.rewritten) rewritten.add(name);
          for (const k of outcome.kept) if (!kept.has(k.name)) kept.set(k.name, k.reason);
          undos.push(...outcome.undos);
        }
      }
    } catch (err) {
      await undo();
      throw err;
    }
    return {
      report: {
        processes,
        rewritten: [...rewritten].filter((name) => !kept.has(name)).sort(),
        kept: [...kept].map(([name, reason]) => ({ name, reason })).sort((x, y) => x.name.localeCompare(y.name)),
      },
      undo,
    };
  }

  /** One process: `undefined` for a process without memory images (a zombie). */
  private async rewriteProcess(
    imagesDir: string,
    pid: number,
    changes: readonly EnvChange[],
  ): Promise<{ rewritten: readonly string[]; kept: readonly KeptEnvVariable[]; undos: Undo[] } | undefined> {
    const mmPath = join(imagesDir, `mm-${pid}.img`);
    const [mmRaw] = (await readImage(mmPath, MM_MAGIC)) ?? [];
    const pages = await PageMap.read(imagesDir, pid);
    if (mmRaw === undefined || pages === undefined) return undefined;
    const mm = decodeEntry(MmEntry, mmRaw, mmPath);
    if (mm.mmEnvEnd <= mm.mmEnvStart) return { rewritten: [], kept: [], undos: [] };
    const located = pages.locate(mm.mmEnvStart, mm.mmEnvEnd);
    if (!located.inImage) {
      return { rewritten: [], kept: changes.map((c) => ({ name: c.name, reason: located.reason })), undos: [] };
    }
    const block = await readAt(pages.pagesPath, located.segments);
    const plan = planBlockRewrite(block, changes);
    const writes = plan.patches.flatMap((p) => toFileWrites(located.segments, p.offset, p.bytes));
    const undos = writes.map((w) => ({
      path: pages.pagesPath,
      fileOffset: w.fileOffset,
      original: Buffer.from(block.subarray(w.blockOffset, w.blockOffset + w.bytes.length)),
    }));
    await writeAt(pages.pagesPath, writes);
    return { rewritten: plan.rewritten, kept: plan.kept, undos };
  }
}

async function processIds(imagesDir: string): Promise<number[]> {
  const path = join(imagesDir, 'pstree.img');
  const entries = await readImage(path, PSTREE_MAGIC);
  if (entries === undefined || entries.length === 0) {
    throw new EnvironmentError('NC_ENV_IMAGE_UNREADABLE', 'checkpoint has no process tree', { context: { path } });
  }
  return entries.map((e) => decodeEntry(PstreeEntry, e, path).pid);
}

interface FileWrite {
  readonly fileOffset: number;
  readonly blockOffset: number;
  readonly bytes: Buffer;
}

/** Splits a write at a block offset over the image segments the block spans (it may cross a page run). */
function toFileWrites(segments: readonly ImageSegment[], offset: number, bytes: Buffer): FileWrite[] {
  const writes: FileWrite[] = [];
  let segmentStart = 0;
  for (const segment of segments) {
    const from = Math.max(offset, segmentStart);
    const to = Math.min(offset + bytes.length, segmentStart + segment.length);
    if (from < to) {
      writes.push({
        fileOffset: segment.fileOffset + (from - segmentStart),
        blockOffset: from,
        bytes: bytes.subarray(from - offset, to - offset),
      });
    }
    segmentStart += segment.length;
  }
  return writes;
}

async function withFile<T>(path: string, flags: string, use: (file: FileHandle) => Promise<T>): Promise<T> {
  let file: FileHandle | undefined;
  try {
    file = await open(path, flags);
    return await use(file);
  } catch (cause) {
    if (cause instanceof EnvironmentError) throw cause;
    throw new EnvironmentError(
      flags === 'r' ? 'NC_ENV_IMAGE_UNREADABLE' : 'NC_ENV_REWRITE_FAILED',
      flags === 'r' ? 'pages image could not be read' : 'pages image could not be written',
      { cause, context: { path } },
    );
  } finally {
    await file?.close();
  }
}

async function readAt(path: string, segments: readonly ImageSegment[]): Promise<Buffer> {
  return withFile(path, 'r', async (file) => {
    const parts: Buffer[] = [];
    for (const segment of segments) {
      const part = Buffer.alloc(segment.length);
      const { bytesRead } = await file.read(part, 0, segment.length, segment.fileOffset);
      if (bytesRead !== segment.length) {
        throw new EnvironmentError('NC_ENV_IMAGE_UNREADABLE', 'pages image is shorter than its pagemap', {
          context: { path },
        });
      }
      parts.push(part);
    }
    return Buffer.concat(parts);
  });
}

async function writeAt(path: string, writes: readonly { fileOffset: number; bytes: Buffer }[]): Promise<void> {
  if (writes.length === 0) return;
  await withFile(path, 'r+', async (file) => {
    for (const w of writes) await file.write(w.bytes, 0, w.bytes.length, w.fileOffset);
  });
}
