import { readFile, rm } from 'node:fs/promises';
import { runCommand } from './run-command';

/** The mount table escapes a space, tab, newline and backslash in a path as three octal digits. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/**
 * Lazily unmounts whatever is mounted at or below `dir`, deepest first. runc and CRIU killed before their end
 * (a restore whose copy is killed in a post-copy window, a dump killed) leave their mounts behind: CRIU's
 * cgroup yard (`.criu.cgyard.*`) in its work directory, runc's `criu-root` in the container's state directory.
 * Removing the directory then fails with EBUSY and leaves it, and the mount, on the node.
 */
export async function unmountBelow(dir: string): Promise<void> {
  const table = await readFile('/proc/self/mounts', 'utf8');
  const mounts = table
    .split('\n')
    .map((line) => unescapeMountPath(line.split(' ')[1] ?? ''))
    .filter((path) => path === dir || path.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const mount of mounts) await runCommand('umount', ['-l', mount], { timeoutMs: 10_000 });
}

/** Removes a runc or CRIU work directory, with whatever a killed run left mounted below it. */
export async function removeMountedDir(dir: string): Promise<void> {
  await unmountBelow(dir);
  await rm(dir, { recursive: true, force: true });
}
