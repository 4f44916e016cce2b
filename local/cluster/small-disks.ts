import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../common/exec';

/**
 * Directories of a node's data dir that can get a small filesystem of their own, so a test can fill one as a
 * real disk fills: `store`, the sidecar's checkpoint store; `allocs`, where local mode puts its tasks' files.
 */
export const SMALL_DISKS = ['store', 'allocs'] as const;
export type SmallDisk = (typeof SMALL_DISKS)[number];

/** The tmpfs's source name: what tells a cluster's mounts apart in the mount table, after a crash too. */
export function smallDiskSource(clusterId: string): string {
  return `nc-disk-${clusterId}`;
}

export function smallDiskPath(dataDir: string, disk: SmallDisk): string {
  return join(dataDir, disk);
}

/**
 * A tmpfs of `bytes` at `disk` under a node's data dir, made before its sidecar starts. Mode 0711 as the
 * work dir: tasks in their own user namespace search down to their files, and must not list others'.
 */
export async function mountSmallDisk(
  clusterId: string,
  dataDir: string,
  disk: SmallDisk,
  bytes: number,
): Promise<void> {
  const path = smallDiskPath(dataDir, disk);
  mkdirSync(path, { recursive: true });
  await run(['mount', '-t', 'tmpfs', '-o', `size=${bytes},mode=0711`, smallDiskSource(clusterId), path]);
}

/**
 * Best effort: unmounts every small disk the cluster made, found in the mount table by its source name, so a
 * crashed run's are found too. Lazily: a task or CRIU still holding a file there must not keep the cluster up.
 */
export async function unmountSmallDisks(clusterId: string): Promise<void> {
  const source = smallDiskSource(clusterId);
  const mounted = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[0] === source && fields[1] !== undefined)
    .map((fields) => (fields[1] ?? '').replace(/\\040/g, ' '));
  for (const path of mounted.reverse()) await run(['umount', '-l', path], { allowFailure: true });
}
