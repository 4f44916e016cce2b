import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GrpcSidecarApi } from '../../../common/sidecar-api/grpc-sidecar-api';
import { TaskState } from '../../../proto/gen/chain/v1/sidecar';
import { EXAMPLE_SERVICE, waitForPort, type LocalMode } from '../../../local/local-mode';

/** Runs the kv service, once it accepts connections; `base` reaches it through the cluster's HAProxy. */
export async function runKv(local: LocalMode) {
  const placed = await local.controller.runService(EXAMPLE_SERVICE, (i) => waitForPort(i));
  return { placed, base: `http://127.0.0.1:${local.cluster.haproxy.portOf(EXAMPLE_SERVICE.name)}` };
}

/** One request to the example kv service behind HAProxy (`base`); a non-2xx answer fails the test. */
export async function call(base: string, path: string, method = 'GET', body?: string): Promise<string> {
  const res = await fetch(`${base}${path}`, { method, ...(body !== undefined ? { body } : {}) });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status}`);
  return res.text();
}

/** The service's request counter: it goes on across a migration only if the process state moved with it. */
export const counter = async (base: string): Promise<number> =>
  (JSON.parse(await call(base, '/counter')) as { counter: number }).counter;

/** The service's journal: lines on disk, and whether the file it holds open is the one at its path. */
export const journal = async (base: string): Promise<{ lines: number; sameFile: boolean }> =>
  JSON.parse(await call(base, '/journal')) as { lines: number; sameFile: boolean };

/** Nodes where a copy of the kv service runs, asked of every node's real sidecar but those killed (nothing runs there). */
export async function runningCopies(local: LocalMode, killed: readonly string[] = []): Promise<string[]> {
  const found: string[] = [];
  for (const node of local.cluster.nodes.filter((n) => !killed.includes(n.name))) {
    const api = new GrpcSidecarApi({ socketPath: node.localSocket, timeoutMs: 30_000 });
    try {
      for (const t of await api.listTasks())
        if (t.identity?.taskName === EXAMPLE_SERVICE.name && t.state === TaskState.TASK_STATE_RUNNING)
          found.push(node.name);
    } finally {
      api.close();
    }
  }
  return found;
}

/** Flips a byte in every chunk a node's store holds: whatever it then materialises fails its integrity check. */
export async function corruptStore(dataDir: string): Promise<void> {
  const chunks = join(dataDir, 'store', 'chunks');
  for (const sub of await readdir(chunks)) {
    for (const name of await readdir(join(chunks, sub))) {
      const path = join(chunks, sub, name);
      const bytes = await readFile(path);
      if (bytes.length === 0) continue;
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
      await writeFile(path, bytes);
    }
  }
}
