import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { TaskIdentity, TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { CheckpointError } from '../errors';
import { treePath } from './file-tree/file-tree';

/**
 * A checkpoint directory: `checkpoint.json` (this metadata) beside `images/` (CRIU's image files). The
 * metadata lists every image file with its size and sha256, so a truncated or altered copy is refused
 * before CRIU ever reads it.
 */
export const CHECKPOINT_FORMAT_VERSION = 1;
export const META_FILE = 'checkpoint.json';
export const IMAGES_DIR = 'images';

/** `files`: a task's files alone, sent ahead of a freeze so that the final round finds their chunks; never restored. */
export type DumpMode = 'stop-and-copy' | 'lazy' | 'files';

export interface ImageFile {
  readonly path: string;
  readonly sizeBytes: number;
  readonly sha256: string;
}

export interface CheckpointMeta {
  readonly version: number;
  readonly checkpointId: string;
  readonly handoverKey: string;
  readonly source: TaskIdentity;
  readonly spec: TaskSpec;
  readonly sourceNode: string;
  readonly createdAtMs: number;
  readonly mode: DumpMode;
  /** Lazy dumps: where the source serves the memory pages the images leave out. */
  readonly pageServer?: string;
  readonly files: readonly ImageFile[];
  /** The task's writable directories (`files/`), absent when only memory moved. */
  readonly fileTree?: FileTreeRef;
}

/** What the metadata pins of a checkpoint's file tree: its `tree.json` digests every file's content. */
export interface FileTreeRef {
  readonly sha256: string;
  /** Regular files' bytes (each inode once). */
  readonly totalBytes: number;
  /** Bytes read and hashed for this checkpoint; the rest kept the digests of an earlier round. */
  readonly hashedBytes: number;
  readonly entries: number;
}

export function imagesDir(checkpointDir: string): string {
  return join(checkpointDir, IMAGES_DIR);
}

/** Hex sha256 over the file list: names a checkpoint's exact content. */
export function manifestDigest(meta: CheckpointMeta): string {
  const hash = createHash('sha256');
  for (const file of meta.files) hash.update(`${file.path}\0${file.sizeBytes}\0${file.sha256}\n`);
  if (meta.fileTree !== undefined) hash.update(`files\0${meta.fileTree.sha256}\n`);
  return hash.digest('hex');
}

export function checkpointSizeBytes(meta: CheckpointMeta): number {
  return meta.files.reduce((sum, f) => sum + f.sizeBytes, 0) + (meta.fileTree?.totalBytes ?? 0);
}

/** Up to this size a file is read in one call: each read is a trip through libuv's pool, queued on a busy node. */
const WHOLE_READ_MAX_BYTES = 16 * 1024 * 1024;

/** Files hashed at once: as many as libuv's pool has threads by default. */
const HASH_CONCURRENCY = 4;

/** A file's sha256 (hex): read whole when small, in 1 MiB blocks otherwise. */
export async function sha256File(path: string): Promise<string> {
  return (await hashFile(path)).sha256;
}

/**
 * A file's size and sha256, both of the same bytes. A small file costs four trips through libuv's pool (open,
 * fstat, one read, close): the read asks for a byte more than the file's size, so its end needs no second read.
 */
async function hashFile(path: string): Promise<{ sizeBytes: number; sha256: string }> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    if (size <= WHOLE_READ_MAX_BYTES) {
      const buf = Buffer.allocUnsafe(size + 1);
      const { bytesRead } = await file.read(buf, 0, buf.length, 0);
      // Longer than it was a moment ago (still being written): hashed as a stream below instead.
      if (bytesRead <= size)
        return { sizeBytes: bytesRead, sha256: createHash('sha256').update(buf.subarray(0, bytesRead)).digest('hex') };
    }
  } finally {
    await file.close();
  }
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let sizeBytes = 0;
    createReadStream(path, { highWaterMark: 1 << 20 })
      .on('data', (chunk) => {
        sizeBytes += chunk.length;
        hash.update(chunk);
      })
      .on('error', reject)
      .on('end', () => resolve({ sizeBytes, sha256: hash.digest('hex') }));
  });
}

/** `work` over every item, `HASH_CONCURRENCY` at a time; results in the items' order. */
async function eachAtOnce<T, R>(items: readonly T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) results[i] = await work(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, items.length) }, worker));
  return results;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

/** Lists and hashes every file under `images/`. */
export async function describeImages(checkpointDir: string): Promise<ImageFile[]> {
  const root = imagesDir(checkpointDir);
  return eachAtOnce((await walk(root)).sort(), async (path) => ({
    path: relative(root, path),
    ...(await hashFile(path)),
  }));
}

export async function writeMeta(checkpointDir: string, meta: CheckpointMeta): Promise<void> {
  await mkdir(checkpointDir, { recursive: true });
  const tmp = join(checkpointDir, `${META_FILE}.tmp`);
  await writeFile(tmp, JSON.stringify(meta, null, 2));
  await rename(tmp, join(checkpointDir, META_FILE));
}

export async function readMeta(checkpointDir: string): Promise<CheckpointMeta> {
  let meta: Partial<CheckpointMeta>;
  try {
    meta = JSON.parse(await readFile(join(checkpointDir, META_FILE), 'utf8')) as Partial<CheckpointMeta>;
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CheckpointError(
      missing ? 'NC_CHECKPOINT_NOT_FOUND' : 'NC_CHECKPOINT_CORRUPT',
      missing ? 'checkpoint has no metadata' : 'checkpoint metadata is not JSON',
      { cause, context: { path: checkpointDir } },
    );
  }
  if (meta.version !== CHECKPOINT_FORMAT_VERSION || !Array.isArray(meta.files) || meta.checkpointId === undefined) {
    throw new CheckpointError('NC_CHECKPOINT_CORRUPT', `checkpoint format ${String(meta.version)} is not supported`, {
      context: { path: checkpointDir, supported: CHECKPOINT_FORMAT_VERSION },
    });
  }
  return meta as CheckpointMeta;
}

/**
 * Checks every image file against the metadata: a missing or short file is NC_CHECKPOINT_TRUNCATED, other
 * differences NC_CHECKPOINT_CORRUPT. Nothing is restored unless this passes.
 */
export async function verifyCheckpoint(checkpointDir: string): Promise<CheckpointMeta> {
  const meta = await readMeta(checkpointDir);
  const root = imagesDir(checkpointDir);
  const listed = new Set(meta.files.map((f) => f.path));
  // Sizes first: a short copy is told apart from an altered one whatever order the digests finish in.
  const sizes = await Promise.all(meta.files.map((file) => stat(join(root, file.path)).catch(() => undefined)));
  meta.files.forEach((file, i) => {
    const info = sizes[i];
    if (!info || info.size < file.sizeBytes) {
      throw new CheckpointError('NC_CHECKPOINT_TRUNCATED', `image file ${file.path} is missing or short`, {
        context: { checkpointId: meta.checkpointId, file: file.path },
      });
    }
  });
  await eachAtOnce(
    meta.files.map((file, i) => ({ file, info: sizes[i] })),
    async ({ file, info }) => {
      if (info?.size !== file.sizeBytes || (await sha256File(join(root, file.path))) !== file.sha256) {
        throw new CheckpointError('NC_CHECKPOINT_CORRUPT', `image file ${file.path} does not match its digest`, {
          context: { checkpointId: meta.checkpointId, file: file.path },
        });
      }
    },
  );
  if (meta.fileTree !== undefined) await verifyTreeFile(checkpointDir, meta);
  const extra = (await walk(root).catch(() => [])).map((p) => relative(root, p)).filter((p) => !listed.has(p));
  if (extra.length > 0) {
    throw new CheckpointError('NC_CHECKPOINT_CORRUPT', `unlisted image file ${extra[0] ?? ''}`, {
      context: { checkpointId: meta.checkpointId },
    });
  }
  return meta;
}

/** The tree file pins every file's digest, and the restore checks each file against it as it places it. */
async function verifyTreeFile(checkpointDir: string, meta: CheckpointMeta): Promise<void> {
  const path = treePath(checkpointDir);
  const context = { checkpointId: meta.checkpointId, file: path };
  if ((await stat(path).catch(() => undefined)) === undefined) {
    throw new CheckpointError('NC_CHECKPOINT_TRUNCATED', 'the file tree of the checkpoint is missing', { context });
  }
  if ((await sha256File(path)) !== meta.fileTree?.sha256) {
    throw new CheckpointError('NC_CHECKPOINT_CORRUPT', 'the file tree does not match its digest', { context });
  }
}
