import type { BigIntStats } from 'node:fs';
import { copyFile, link, lstat, mkdir, readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FileTreeError } from '../../errors';
import type { EntryKind, FileTree, TreeEntry, TreeRoot } from './file-tree';
import { sha256File } from '../manifest';
import { DATA_DIR, FILE_TREE_VERSION, filesDir, writeTree } from './file-tree';

export interface SnapshotRequest {
  /** Root name → host directory (see `taskRoots`). */
  readonly roots: ReadonlyMap<string, string>;
  readonly checkpointDir: string;
  /**
   * The task is frozen or gone: contents are hard-linked into the checkpoint (no copy, no read) and
   * nothing may change them until the checkpoint has been shipped. Otherwise they are copied.
   */
  readonly frozen: boolean;
  /** An earlier snapshot of the same task: entries whose change key is the same reuse its digests. */
  readonly previous?: FileTree;
  /** Refuse (NC_FILES_TOO_LARGE) before copying anything if the files add up to more. 0 = no limit. */
  readonly maxBytes: number;
}

interface Scanned {
  readonly root: string;
  readonly entry: Omit<TreeEntry, 'data' | 'sha256' | 'linkOf'>;
  readonly inode: string;
}

function kindOf(info: BigIntStats): EntryKind | undefined {
  if (info.isDirectory()) return 'directory';
  if (info.isFile()) return 'file';
  if (info.isSymbolicLink()) return 'symlink';
  if (info.isFIFO()) return 'fifo';
  if (info.isSocket()) return 'socket';
  return undefined;
}

function changeKey(info: BigIntStats): string {
  return `${info.size}:${info.mtimeNs}:${info.ctimeNs}:${info.dev}:${info.ino}`;
}

/**
 * Nomad's log collector owns these in the allocation directory (its FIFOs and rotated stdout/stderr files):
 * the replacement's collector makes its own, and one restored over them would cut it off from the task.
 */
const NODE_OWNED_IN_ALLOC = /^logs\/(\.[^/]+\.std(out|err)\.fifo|[^/]+\.std(out|err)\.\d+)$/;

function nodeOwned(rootName: string, path: string): boolean {
  return rootName === 'alloc' && NODE_OWNED_IN_ALLOC.test(path);
}

/** Every entry under `dir` (and `dir` itself as ''), parents before children, in path order. */
async function scanRoot(rootName: string, dir: string): Promise<Scanned[]> {
  const out: Scanned[] = [];
  const visit = async (path: string): Promise<void> => {
    const full = path === '' ? dir : join(dir, path);
    // A running task renames and deletes files while it is scanned: what is gone is simply not there.
    const vanished = (err: unknown): undefined => {
      if (path !== '' && gone(err)) return undefined;
      throw err;
    };
    const info = await lstat(full, { bigint: true }).catch(vanished);
    if (info === undefined) return;
    const kind = kindOf(info);
    if (kind === undefined) {
      throw new FileTreeError('NC_FILES_UNSUPPORTED', 'a task directory holds a device file, which cannot move', {
        context: { root: rootName, path },
      });
    }
    const target = kind === 'symlink' ? await readlink(full).catch(vanished) : undefined;
    if (kind === 'symlink' && target === undefined) return;
    out.push({
      root: rootName,
      inode: `${info.dev}:${info.ino}`,
      entry: {
        path,
        kind,
        mode: Number(info.mode & 0o7777n),
        uid: Number(info.uid),
        gid: Number(info.gid),
        mtimeNs: info.mtimeNs.toString(),
        atimeNs: info.atimeNs.toString(),
        sizeBytes: kind === 'file' ? Number(info.size) : 0,
        ...(target !== undefined ? { target } : {}),
        ...(kind === 'file' && info.blocks * 512n < info.size ? { sparse: true } : {}),
        changeKey: changeKey(info),
      },
    });
    if (kind !== 'directory') return;
    for (const name of ((await readdir(full).catch(vanished)) ?? []).sort()) {
      const child = path === '' ? name : `${path}/${name}`;
      if (!nodeOwned(rootName, child)) await visit(child);
    }
  };
  await visit('');
  return out;
}

/** Regular files' bytes, each inode once. */
function fileBytes(scanned: readonly Scanned[]): number {
  const inodes = new Set<string>();
  let total = 0;
  for (const s of scanned) {
    if (s.entry.kind !== 'file' || inodes.has(s.inode)) continue;
    inodes.add(s.inode);
    total += s.entry.sizeBytes;
  }
  return total;
}

async function scanRoots(roots: ReadonlyMap<string, string>): Promise<Scanned[]> {
  const scanned: Scanned[] = [];
  for (const [name, dir] of roots) scanned.push(...(await scanRoot(name, dir)));
  return scanned;
}

function gone(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** What a snapshot would hold, from metadata alone: checked before a freeze, so a refusal costs no downtime. */
export async function measureFiles(
  roots: ReadonlyMap<string, string>,
): Promise<{ totalBytes: number; entries: number }> {
  const scanned = await scanRoots(roots);
  return { totalBytes: fileBytes(scanned), entries: scanned.length };
}

/** Digests of an earlier snapshot by (root, path, change key). */
function digestsOf(previous: FileTree | undefined): Map<string, string> {
  const digests = new Map<string, string>();
  for (const root of previous?.roots ?? []) {
    for (const e of root.entries)
      if (e.sha256 !== undefined) digests.set(`${root.name}\0${e.path}\0${e.changeKey}`, e.sha256);
  }
  return digests;
}

/**
 * Takes a task's writable directories into `<checkpointDir>/files/`. Change detection is by size, mtime,
 * ctime and inode: a file whose key matches the previous snapshot is not read again (its digest is reused),
 * so a snapshot inside the freeze reads only what changed since the last round.
 */
export async function snapshotFiles(request: SnapshotRequest): Promise<FileTree> {
  const scanned = await scanRoots(request.roots);
  const inodes = new Map<string, { root: string; path: string }>();
  for (const s of scanned) {
    if (s.entry.kind === 'file' && !inodes.has(s.inode)) inodes.set(s.inode, { root: s.root, path: s.entry.path });
  }
  const totalBytes = fileBytes(scanned);
  if (request.maxBytes > 0 && totalBytes > request.maxBytes) {
    throw new FileTreeError(
      'NC_FILES_TOO_LARGE',
      `the task's files add up to ${totalBytes} bytes, over the ${request.maxBytes}-byte limit (filesMaxSize)`,
      { context: { totalBytes, maxBytes: request.maxBytes } },
    );
  }
  const dataDir = join(filesDir(request.checkpointDir), DATA_DIR);
  await mkdir(dataDir, { recursive: true });
  const previous = digestsOf(request.previous);
  const written = new Map<string, { data: string; sha256: string }>();
  const roots = new Map<string, TreeEntry[]>([...request.roots.keys()].map((name) => [name, []]));
  let hashedBytes = 0;
  for (const s of scanned) {
    const entries = roots.get(s.root) as TreeEntry[];
    if (s.entry.kind !== 'file') {
      entries.push(s.entry);
      continue;
    }
    const first = inodes.get(s.inode);
    const done = written.get(s.inode);
    if (done !== undefined) {
      // A later name of an inode already taken: in the same root it is a hard link, across roots a copy.
      const sameRoot = first?.root === s.root;
      entries.push({ ...s.entry, ...(sameRoot ? { linkOf: first.path } : done) });
      continue;
    }
    const data = String(written.size).padStart(6, '0');
    const source = join(request.roots.get(s.root) as string, s.entry.path);
    const target = join(dataDir, data);
    try {
      await placeContent(source, target, request.frozen);
    } catch (err) {
      if (!request.frozen && gone(err)) continue;
      throw err;
    }
    let sha256 = previous.get(`${s.root}\0${s.entry.path}\0${s.entry.changeKey}`);
    if (sha256 === undefined) {
      sha256 = await sha256File(target);
      hashedBytes += s.entry.sizeBytes;
    }
    let entry: TreeEntry = { ...s.entry, data, sha256 };
    // A running task may write while its file is copied: such a copy is hashed as it is and never reused.
    if (!request.frozen && changeKey(await lstat(source, { bigint: true })) !== s.entry.changeKey) {
      const copied = (await stat(target)).size;
      entry = { ...entry, sizeBytes: copied, sha256: await sha256File(target), changeKey: 'changed-while-copied' };
    }
    written.set(s.inode, { data, sha256 });
    entries.push(entry);
  }
  const tree: FileTree = {
    version: FILE_TREE_VERSION,
    roots: [...roots].map(([name, entries]): TreeRoot => ({ name, entries })),
    totalBytes,
    hashedBytes,
  };
  await writeTree(request.checkpointDir, tree);
  return tree;
}

/** A frozen task's file is hard-linked (nothing writes it any more); a running task's is copied. */
async function placeContent(source: string, target: string, frozen: boolean): Promise<void> {
  if (frozen) {
    try {
      await link(source, target);
      return;
    } catch (err) {
      // Another filesystem (or links refused): copy instead.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw err;
    }
  }
  await copyFile(source, target);
}
