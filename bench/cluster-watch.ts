import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveBinary } from '../common/binaries';
import { run } from '../common/exec';
import type { LocalCluster } from '../local/cluster/cluster';

// What the soak and the drain benchmark read from a real local cluster, never from the controller: runc's
// own list of containers on each node, and each sidecar's resource use from /proc and its data dir.

export interface Container {
  readonly node: string;
  readonly id: string;
  readonly status: string;
}

/** Every container runc knows on every node (any status), as `runc list` reports it. */
export async function runcContainers(cluster: LocalCluster): Promise<Container[]> {
  const found: Container[] = [];
  for (const n of cluster.nodes) {
    const out = await run([resolveBinary('runc'), '--root', join(n.dataDir, 'runc'), 'list', '--format', 'json'], {
      allowFailure: true,
    });
    const text = out.stdout.trim();
    if (out.code !== 0 || text === '' || text === 'null') continue;
    for (const c of JSON.parse(text) as { id: string; status: string }[])
      found.push({ node: n.name, id: c.id, status: c.status });
  }
  return found;
}

/**
 * The service a container runs: local mode names tasks `<service>-<generation>`, and the runtime names a task's
 * container `<task id>-<hash>` (containerIdFor).
 */
export function serviceOf(containerId: string): string {
  const taskId = containerId.replace(/-[0-9a-f]{10}$/, '');
  return taskId.slice(0, taskId.lastIndexOf('-'));
}

export interface SidecarUsage {
  readonly node: string;
  readonly rssKiB: number;
  readonly fds: number;
  /** Bytes under the node's checkpoint store (its own staged checkpoints and its buddy's background ones). */
  readonly storeBytes: number;
  readonly storeFiles: number;
  /** Task directories left under the node's allocs (each move makes one on its target). */
  readonly allocDirs: number;
}

async function tree(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const sub = await tree(path);
      bytes += sub.bytes;
      files += sub.files;
    } else if (entry.isFile()) {
      bytes += (await stat(path).catch(() => ({ size: 0 }))).size;
      files += 1;
    }
  }
  return { bytes, files };
}

/** A node's sidecar as the kernel sees it: resident memory, open descriptors; and what its store holds on disk. */
export async function sidecarUsage(cluster: LocalCluster, node: string): Promise<SidecarUsage> {
  const pid = cluster.sidecarPid(node);
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  const dataDir = cluster.node(node).dataDir;
  const store = await tree(join(dataDir, 'store'));
  const allocDirs = (await readdir(join(dataDir, 'allocs')).catch(() => [])).length;
  return { node, rssKiB, fds, storeBytes: store.bytes, storeFiles: store.files, allocDirs };
}

/** Reads `-flag value` options given as defaults; a flag not among them is a usage error. */
export function parseFlags<T extends Record<string, string>>(argv: readonly string[], defaults: T, usage: string): T {
  const out: Record<string, string> = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const flag = (argv[i] ?? '').replace(/^--?/, '');
    if (flag === 'help') {
      console.log(usage);
      process.exit(0);
    }
    if (!(flag in defaults)) throw new Error(`unknown option ${String(argv[i])}\n${usage}`);
    if (defaults[flag] === 'false') out[flag] = 'true';
    else {
      const value = argv[++i];
      if (value === undefined) throw new Error(`-${flag} needs a value\n${usage}`);
      out[flag] = value;
    }
  }
  return out as T;
}

/** A whole number option at least `min`, or a usage error. */
export function intFlag(name: string, value: string, min: number, usage: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`-${name}: expected a whole number >= ${min}, got ${value}\n${usage}`);
  return n;
}
