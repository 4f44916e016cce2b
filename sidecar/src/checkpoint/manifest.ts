import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
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

/** A file's sha256 (hex), read in 1 MiB blocks. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path, { highWaterMark: 1 << 20 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
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
  const files: ImageFile[] = [];
  for (const path of (await walk(root)).sort()) {
    const info = await stat(path);
    files.push({ path: relative(root, path), sizeBytes: info.size, sha256: await sha256File(path) });
  }
  return files;
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
  for (const file of meta.files) {
    const path = join(root, file.path);
    const context = { checkpointId: meta.checkpointId, file: file.path };
    const info = await stat(path).catch(() => undefined);
    if (!info || info.size < file.sizeBytes) {
      throw new CheckpointError('NC_CHECKPOINT_TRUNCATED', `image file ${file.path} is missing or short`, { context });
    }
    if (info.size !== file.sizeBytes || (await sha256File(path)) !== file.sha256) {
      throw new CheckpointError('NC_CHECKPOINT_CORRUPT', `image file ${file.path} does not match its digest`, {
        context,
      });
    }
  }
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
