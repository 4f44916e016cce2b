import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface Unsearchable {
  readonly dir: string;
  readonly mode: number;
}

/**
 * Every directory from `/` down to `path` that others cannot search (no execute bit for others), top first.
 * Task roots and binds live below such paths, and a task's root in its user namespace is an unprivileged
 * host id: runc's mount of the task's root, and CRIU's restore of each bind (open_tree from inside the
 * namespace), then fail with a bare "permission denied".
 */
export async function unsearchableAncestors(path: string): Promise<Unsearchable[]> {
  const chain: string[] = [];
  for (let dir = path; ; dir = dirname(dir)) {
    chain.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  const found: Unsearchable[] = [];
  for (const dir of chain) {
    const mode = (await stat(dir)).mode & 0o7777;
    if ((mode & 0o001) === 0) found.push({ dir, mode });
  }
  return found;
}

/** The first of unsearchableAncestors, or undefined. */
export async function unsearchableAncestor(path: string): Promise<Unsearchable | undefined> {
  return (await unsearchableAncestors(path))[0];
}
