import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface Unsearchable {
  readonly dir: string;
  readonly mode: number;
}

/**
 * The first directory from `/` down to `path` that a task's user namespace cannot search (no execute bit for
 * others), or undefined. Task roots and binds live below such paths, and the task's root maps to an
 * unprivileged host id, so runc's own mount of the task's root fails with a bare "permission denied" there.
 */
export async function unsearchableAncestor(path: string): Promise<Unsearchable | undefined> {
  const chain: string[] = [];
  for (let dir = path; ; dir = dirname(dir)) {
    chain.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of chain) {
    const mode = (await stat(dir)).mode & 0o7777;
    if ((mode & 0o001) === 0) return { dir, mode };
  }
  return undefined;
}
