import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskSpec } from '../../../../proto/gen/chain/v1/sidecar';
import { FileTreeError } from '../../errors';

/**
 * A task's writable directories as part of its checkpoint: `files/tree.json` (every entry's kind, mode,
 * owner, times, size, hard links, symlink targets) beside `files/data/` (regular files' contents as plain
 * files, so the transfer chunks and deduplicates them like memory images). The transfer carries only files
 * and directories, so everything else the tree holds (symlinks, fifos, socket files, owners, times, hard
 * links, sparseness) lives in the JSON.
 */
export const FILES_DIR = 'files';
export const TREE_FILE = 'tree.json';
export const DATA_DIR = 'data';
export const FILE_TREE_VERSION = 1;

export type EntryKind = 'directory' | 'file' | 'symlink' | 'fifo' | 'socket';

export interface TreeEntry {
  /** Relative to its root, '/'-separated; '' is the root directory itself. */
  readonly path: string;
  readonly kind: EntryKind;
  /** Permission bits incl. setuid/setgid/sticky. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Nanoseconds since the epoch, as decimal strings (beyond a double's precision). */
  readonly mtimeNs: string;
  readonly atimeNs: string;
  readonly sizeBytes: number;
  /** Symlinks: where they point. */
  readonly target?: string;
  /** Regular files: name of the content under `files/data/`; absent for a hard link's later names. */
  readonly data?: string;
  readonly sha256?: string;
  /** A later name of a hard-linked file: the path (same root) whose inode it shares. */
  readonly linkOf?: string;
  /** The file had holes (fewer blocks than its size): restored with holes where its blocks are zero. */
  readonly sparse?: boolean;
  /** What the change detection compares: an entry whose key is unchanged is not read again. */
  readonly changeKey: string;
}

export interface TreeRoot {
  /** `alloc`, `local`, or `bind:<destination>`: where the task sees it, the same on every node. */
  readonly name: string;
  readonly entries: readonly TreeEntry[];
}

export interface FileTree {
  readonly version: number;
  readonly roots: readonly TreeRoot[];
  /** Sum of the regular files' sizes (each inode once). */
  readonly totalBytes: number;
  /** Bytes this snapshot had to read and hash (changed or new files); the rest reused earlier digests. */
  readonly hashedBytes: number;
}

/** What a checkpoint's metadata says about its file tree. */
export interface FileTreeSummary {
  readonly totalBytes: number;
  readonly hashedBytes: number;
  readonly entries: number;
}

/** The writable directories of a task as (root name → host path); secrets stay behind (each node renders its own). */
export function taskRoots(spec: TaskSpec): Map<string, string> {
  const roots = new Map<string, string>();
  if (spec.allocDir !== '') roots.set('alloc', spec.allocDir);
  if (spec.localDir !== '') roots.set('local', spec.localDir);
  for (const [source, destination] of Object.entries(spec.binds).sort((a, b) => a[1].localeCompare(b[1]))) {
    roots.set(`bind:${destination}`, source);
  }
  return roots;
}

export function filesDir(checkpointDir: string): string {
  return join(checkpointDir, FILES_DIR);
}

export function treePath(checkpointDir: string): string {
  return join(filesDir(checkpointDir), TREE_FILE);
}

export async function writeTree(checkpointDir: string, tree: FileTree): Promise<void> {
  const path = treePath(checkpointDir);
  await writeFile(`${path}.tmp`, JSON.stringify(tree));
  await rename(`${path}.tmp`, path);
}

export async function readTree(checkpointDir: string): Promise<FileTree> {
  let tree: Partial<FileTree>;
  try {
    tree = JSON.parse(await readFile(treePath(checkpointDir), 'utf8')) as Partial<FileTree>;
  } catch (cause) {
    throw new FileTreeError('NC_FILES_CORRUPT', 'the checkpoint lists files but its file tree is unreadable', {
      cause,
      context: { path: checkpointDir },
    });
  }
  if (tree.version !== FILE_TREE_VERSION || !Array.isArray(tree.roots)) {
    throw new FileTreeError('NC_FILES_CORRUPT', `file tree format ${String(tree.version)} is not supported`, {
      context: { path: checkpointDir, supported: FILE_TREE_VERSION },
    });
  }
  return tree as FileTree;
}
