import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLE_SERVICE } from '../../local/local-mode';

/** The example key/value service's request counter on one instance (its node's address). */
export async function kvCounter(address: string): Promise<number> {
  const res = await fetch(`http://${address}:${EXAMPLE_SERVICE.port}/counter`);
  return ((await res.json()) as { counter: number }).counter;
}

/** Writes one key on one instance (appended to its journal under /alloc/data). */
export async function kvPut(address: string, key: string, value: string): Promise<void> {
  const res = await fetch(`http://${address}:${EXAMPLE_SERVICE.port}/kv/${key}`, { method: 'PUT', body: value });
  if (!res.ok) throw new Error(`PUT ${key}: ${res.status}`);
}

/** Keys in memory, and the journal on disk: lines, and whether the open journal is the file at its path. */
export async function kvState(address: string): Promise<{ keys: number; lines: number; sameFile: boolean }> {
  const base = `http://${address}:${EXAMPLE_SERVICE.port}`;
  const keys = Object.keys((await (await fetch(`${base}/keys`)).json()) as object).length;
  const journal = (await (await fetch(`${base}/journal`)).json()) as { lines: number; sameFile: boolean };
  return { keys, ...journal };
}

/** A task directory for the example service on a node: alloc/local/secrets, with the program in local/. */
export function prepareKvTaskDir(dataDir: string, taskId: string): string {
  const dir = join(dataDir, 'allocs', taskId);
  for (const sub of ['alloc', 'local', 'secrets']) mkdirSync(join(dir, sub), { recursive: true });
  for (const [hostPath, name] of Object.entries(EXAMPLE_SERVICE.localFiles))
    copyFileSync(hostPath, join(dir, 'local', name));
  return dir;
}
