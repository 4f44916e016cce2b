import { lchown, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskUser } from './task-user';
import type { IdMapping } from './user-namespace';
import { hostIdOf } from './user-namespace';

/**
 * Hands a task's own directories (alloc, local, secrets) to the task's user inside its user namespace.
 * What belongs to host root there (directories the sidecar or Nomad just made, files rendered for the task)
 * is unreachable from inside the namespace, where host root is no one: it becomes the task user's mapped
 * ids. Anything else keeps its owner — files the task wrote carry mapped ids already (the same on every
 * node), and Nomad's world-writable directories owned by `nobody` stay as Nomad made them. Symlinks are
 * changed, never followed, and the walk stays on each directory's own file system.
 */
export async function ownDirsByTask(dirs: readonly string[], mapping: IdMapping, user: TaskUser): Promise<void> {
  const uid = hostIdOf(mapping, user.uid);
  const gid = hostIdOf(mapping, user.gid);
  for (const dir of dirs) {
    const top = await lstat(dir);
    await walk(dir, top.dev, uid, gid);
  }
}

async function walk(path: string, dev: number, uid: number, gid: number): Promise<void> {
  const info = await lstat(path);
  if (info.dev !== dev) return;
  if (info.uid === 0 || info.gid === 0) {
    await lchown(path, info.uid === 0 ? uid : info.uid, info.gid === 0 ? gid : info.gid);
  }
  if (!info.isDirectory()) return;
  for (const name of await readdir(path)) await walk(join(path, name), dev, uid, gid);
}
