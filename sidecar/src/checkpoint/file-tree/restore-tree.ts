import type { BigIntStats } from 'node:fs';
import { chmod, copyFile, lchown, link, lstat, lutimes, mkdir, open, readlink, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../../../common/errors';
import { FileTreeError } from '../../errors';
import { runCommand } from '../../runtime/run-command';
import type { FileTree, TreeEntry } from './file-tree';
import { sha256File } from '../manifest';
import { DATA_DIR, filesDir } from './file-tree';

const MKFIFO = '/usr/bin/mkfifo';
const BLOCK_BYTES = 64 * 1024;

export interface RestoredFiles {
  /** Bytes of file content placed (entries already in place are not counted). */
  readonly placedBytes: number;
  /** Entries found in place and left alone (same kind, size, mtime, mode and owner). */
  readonly unchanged: number;
}

/**
 * Makes each target directory hold the checkpoint's tree, before CRIU restores the processes that had
 * those files open. Entries already in place are left alone, and entries the tree does not list are never
 * removed: a directory Nomad (ephemeral_disk migrate) or an earlier attempt already filled is completed,
 * not wiped, and a restore onto the source's own directories (a rollback) changes nothing.
 */
export async function restoreFileTree(
  checkpointDir: string,
  tree: FileTree,
  targets: ReadonlyMap<string, string>,
): Promise<RestoredFiles> {
  const dataDir = join(filesDir(checkpointDir), DATA_DIR);
  let placedBytes = 0;
  let unchanged = 0;
  for (const root of tree.roots) {
    const dir = targets.get(root.name);
    if (dir === undefined) {
      throw new FileTreeError('NC_FILES_RESTORE_FAILED', `the restored task has no directory for ${root.name}`, {
        context: { root: root.name },
      });
    }
    const directories: TreeEntry[] = [];
    for (const entry of root.entries) {
      const path = entry.path === '' ? dir : join(dir, entry.path);
      try {
        const existing = await lstat(path, { bigint: true }).catch(() => undefined);
        if (existing !== undefined && (await inPlace(existing, path, entry))) {
          unchanged += 1;
          continue;
        }
        if (existing !== undefined && !(existing.isDirectory() && entry.kind === 'directory')) {
          await rm(path, { recursive: true, force: true });
        }
        switch (entry.kind) {
          case 'directory':
            await mkdir(path, { recursive: true });
            directories.push(entry);
            continue;
          case 'file':
            if (entry.linkOf !== undefined) await link(join(dir, entry.linkOf), path);
            else placedBytes += await placeFile(dataDir, entry, path);
            break;
          case 'symlink':
            await symlink(entry.target ?? '', path);
            break;
          case 'fifo':
            await makeFifo(path, entry.mode);
            break;
          case 'socket':
            // A bound socket's file comes back when CRIU binds the restored socket; none can be made otherwise.
            continue;
        }
        await applyAttributes(path, entry);
      } catch (cause) {
        if (cause instanceof FileTreeError) throw cause;
        throw new FileTreeError(
          'NC_FILES_RESTORE_FAILED',
          `could not restore ${root.name}/${entry.path}: ${errorMessage(cause)}`,
          {
            cause,
            context: { root: root.name, path: entry.path },
          },
        );
      }
    }
    // Children change their parent's mtime: directories get theirs last, deepest first.
    for (const entry of directories.reverse())
      await applyAttributes(entry.path === '' ? dir : join(dir, entry.path), entry);
  }
  return { placedBytes, unchanged };
}

async function inPlace(existing: BigIntStats, path: string, entry: TreeEntry): Promise<boolean> {
  const owned =
    Number(existing.uid) === entry.uid &&
    Number(existing.gid) === entry.gid &&
    Number(existing.mode & 0o7777n) === entry.mode;
  // lutimes takes seconds as a double: times it set are within a microsecond of the tree's.
  const drift = existing.mtimeNs - BigInt(entry.mtimeNs);
  switch (entry.kind) {
    case 'directory':
      return existing.isDirectory() && owned && entry.path === '';
    case 'file':
      return existing.isFile() && owned && Number(existing.size) === entry.sizeBytes && drift < 1000n && drift > -1000n;
    case 'symlink':
      return existing.isSymbolicLink() && (await readlink(path)) === entry.target;
    case 'fifo':
      return existing.isFIFO() && owned;
    case 'socket':
      return true;
  }
}

/** Places a file's content from the checkpoint, verified against its size and digest. */
async function placeFile(dataDir: string, entry: TreeEntry, path: string): Promise<number> {
  const data = join(dataDir, entry.data ?? '');
  const info = await lstat(data).catch(() => undefined);
  if (entry.data === undefined || info === undefined || !info.isFile() || info.size !== entry.sizeBytes) {
    throw new FileTreeError('NC_FILES_CORRUPT', `the content of ${entry.path} is missing or has the wrong size`, {
      context: { path: entry.path, expectedBytes: entry.sizeBytes, actualBytes: info?.size ?? -1 },
    });
  }
  const digest = await sha256File(data);
  if (digest !== entry.sha256) {
    throw new FileTreeError('NC_FILES_CORRUPT', `the content of ${entry.path} does not match its digest`, {
      context: { path: entry.path },
    });
  }
  if (entry.sparse) await copySparse(data, path, entry.sizeBytes);
  else if (info.nlink === 1) {
    // The checkpoint's own copy, used by nothing else: the task takes it over without a copy.
    await link(data, path).catch(() => copyFile(data, path));
  } else await copyFile(data, path);
  return entry.sizeBytes;
}

/** Writes only the non-zero blocks, so the holes of a sparse file (a database's preallocation) stay holes. */
async function copySparse(from: string, to: string, sizeBytes: number): Promise<void> {
  const input = await open(from, 'r');
  const output = await open(to, 'w');
  try {
    const block = Buffer.alloc(BLOCK_BYTES);
    for (let offset = 0; offset < sizeBytes; offset += BLOCK_BYTES) {
      const { bytesRead } = await input.read(block, 0, BLOCK_BYTES, offset);
      const part = block.subarray(0, bytesRead);
      if (part.some((b) => b !== 0)) await output.write(part, 0, bytesRead, offset);
    }
    await output.truncate(sizeBytes);
  } finally {
    await input.close();
    await output.close();
  }
}

async function makeFifo(path: string, mode: number): Promise<void> {
  const result = await runCommand(MKFIFO, ['-m', mode.toString(8), path], { timeoutMs: 10_000 });
  if (result.exitCode !== 0) throw new Error(`mkfifo failed: ${result.stderr.toString().trim()}`);
}

async function applyAttributes(path: string, entry: TreeEntry): Promise<void> {
  await lchown(path, entry.uid, entry.gid);
  if (entry.kind !== 'symlink') await chmod(path, entry.mode);
  await lutimes(path, nsToSeconds(entry.atimeNs), nsToSeconds(entry.mtimeNs));
}

function nsToSeconds(ns: string): number {
  const value = BigInt(ns);
  return Number(value / 1_000_000_000n) + Number(value % 1_000_000_000n) / 1e9;
}
