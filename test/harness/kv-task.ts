import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLE_SERVICE } from '../../sidecar/src/controller/local-mode';

/** The example key/value service's request counter on one instance (its node's address). */
export async function kvCounter(address: string): Promise<number> {
  const res = await fetch(`http://${address}:${EXAMPLE_SERVICE.port}/counter`);
  return ((await res.json()) as { counter: number }).counter;
}

/** A task directory for the example service on a node: alloc/local/secrets, with the program in local/. */
export function prepareKvTaskDir(dataDir: string, taskId: string): string {
  const dir = join(dataDir, 'allocs', taskId);
  for (const sub of ['alloc', 'local', 'secrets']) mkdirSync(join(dir, sub), { recursive: true });
  for (const [hostPath, name] of Object.entries(EXAMPLE_SERVICE.localFiles))
    copyFileSync(hostPath, join(dir, 'local', name));
  return dir;
}
