// One real sidecar node for tests and benchmarks, built in-process from the sidecar's own classes (runc, CRIU,
// dumper, restorer, migrator) on a test network's namespace; nothing here needs Jest.
import { execFile, execFileSync } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readdir, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { SystemClock } from '../../common/clock';
import type { Features } from '../../sidecar/src/checkpoint/features';
import type { CheckpointMeta } from '../../sidecar/src/checkpoint/manifest';
import { checkpointSizeBytes } from '../../sidecar/src/checkpoint/manifest';
import type { CheckpointShipper } from '../../sidecar/src/checkpoint/staging';
import { DirectoryStagedCheckpoints } from '../../sidecar/src/checkpoint/staging';
import { DEFAULT_ID_MAPPING } from '../../sidecar/src/runtime/user-namespace';
import { buildNodeCore } from '../../sidecar/src/node-core';
import type { Dumper } from '../../sidecar/src/checkpoint/dump';
import type { PeerMigrator } from '../../sidecar/src/checkpoint/migrate-to-peer';
import type { TaskPrestager } from '../../sidecar/src/checkpoint/prestager';
import type { Restorer } from '../../sidecar/src/checkpoint/restore';
import type { RetainedCheckpoints } from '../../sidecar/src/checkpoint/retained';
import type { RuncCli } from '../../sidecar/src/runtime/runc';
import type { TaskRuntime } from '../../sidecar/src/runtime/task-runtime';
import type { TestNode } from './test-network';

export const RUNC_BIN = process.env.RUNC_BIN ?? '/usr/sbin/runc';
export const CRIU_BIN = process.env.CRIU_BIN ?? '/usr/local/sbin/criu';

/** Copies a checkpoint into a peer's staging area, as the State Transfer Protocol would over the wire. */
export class DirectoryShipper implements CheckpointShipper {
  constructor(private readonly peers: Map<string, DirectoryStagedCheckpoints>) {}
  failNext = false;

  async ship(dir: string, meta: CheckpointMeta, peerAddress: string): Promise<{ wireBytes: number }> {
    const peer = this.peers.get(peerAddress);
    if (!peer || this.failNext) {
      this.failNext = false;
      throw Object.assign(new Error(`no peer at ${peerAddress}`), { code: 'NC_TEST_PEER_UNREACHABLE' });
    }
    const incoming = `${dir}.incoming-${peerAddress.replace(/\W/g, '_')}`;
    await cp(dir, incoming, { recursive: true });
    await peer.adopt(incoming, meta);
    await rm(incoming, { recursive: true, force: true });
    return { wireBytes: checkpointSizeBytes(meta) };
  }
}

/** One simulated node in this process: runtime, dumper, restorer and staging, in the node's namespace. */
export interface HarnessNode {
  readonly name: string;
  readonly net: TestNode | undefined;
  readonly root: string;
  readonly runtime: TaskRuntime;
  readonly runc: RuncCli;
  readonly dumper: Dumper;
  readonly restorer: Restorer;
  readonly staged: DirectoryStagedCheckpoints;
  /** The source's own copies of what it handed over (a failed restore on the target rolls back from them). */
  readonly retained: RetainedCheckpoints;
  readonly migrator: PeerMigrator;
  readonly prestager: TaskPrestager;
  readonly features: Features;
  readonly cgroupParent: string;
  /** A fresh directory for a task's /alloc. */
  allocDir(name: string): Promise<string>;
}

export const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export interface NodeOptions {
  /** Where peers reach this process's page servers: the test network's bridge address. */
  readonly pageServerHost?: string;
  readonly lazyConnectTimeoutMs?: number;
  /** Run tasks in their own user namespace (the product's default). @default true */
  readonly userNamespace?: boolean;
  /** filesMaxSize of the node's migrations; 0 = no limit. @default 0 */
  readonly filesMaxBytes?: number;
}

export async function makeNode(
  name: string,
  net: TestNode | undefined,
  peers: Map<string, DirectoryStagedCheckpoints>,
  shipper: CheckpointShipper = new DirectoryShipper(peers),
  options: NodeOptions = {},
): Promise<HarnessNode> {
  const root = await mkdtemp(join(tmpdir(), `a1-${name}-`));
  // mkdtemp makes it 0700: a task's root in its user namespace must be able to search down to its directories.
  await chmod(root, 0o711);
  const cgroupParent = `/a1-test/${name}-${root.slice(-6)}`;
  const core = await buildNodeCore(
    {
      nodeName: name,
      dataDir: root,
      runcBin: RUNC_BIN,
      criuBin: CRIU_BIN,
      commandTimeoutMs: 60_000,
      taskNetworkNamespace: net?.netnsPath ?? '',
      cgroupParent,
      ...(options.userNamespace === false ? {} : { idMapping: DEFAULT_ID_MAPPING }),
      startTimeoutMs: 60_000,
      exitPollMs: 100,
      filesMaxBytes: options.filesMaxBytes ?? 0,
      filesOverLimit: 'cold-start',
      dumpTimeoutMs: 120_000,
      handoverRetentionMs: 600_000,
      lazyPagesNetns: '',
      pageServerHost: options.pageServerHost ?? '127.0.0.1',
      lazyConnectTimeoutMs: options.lazyConnectTimeoutMs ?? 30_000,
      lazyTransferTimeoutMs: 300_000,
    },
    { shipper, clock: new SystemClock(), log },
  );
  const staged = new DirectoryStagedCheckpoints(join(root, 'staged'));
  if (net) peers.set(`${net.address}:7450`, staged);
  return {
    name,
    net,
    root,
    runtime: core.runtime,
    runc: core.runc,
    dumper: core.dumper,
    restorer: core.restorer,
    staged,
    retained: core.retained,
    migrator: core.migrator,
    prestager: core.prestager,
    features: core.features,
    cgroupParent,
    async allocDir(sub: string) {
      const dir = join(root, 'allocs', sub);
      await mkdir(dir, { recursive: true });
      return dir;
    },
  };
}

/** Force-deletes every container under a runc root: whatever a failed test left running. */
export function deleteAllContainers(runcRoot: string): void {
  let ids: string[] = [];
  try {
    ids = execFileSync(RUNC_BIN, ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return;
  }
  for (const id of ids) {
    try {
      execFileSync(RUNC_BIN, ['--root', runcRoot, 'delete', '--force', id], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

/** Removes the (empty) parent cgroups a test's tasks used; runc removes only each container's own. */
export async function removeCgroupParent(parent: string): Promise<void> {
  for (const controller of await readdir('/sys/fs/cgroup').catch(() => [])) {
    await rmdir(join('/sys/fs/cgroup', controller, parent)).catch(() => undefined);
    await rmdir(join('/sys/fs/cgroup', controller, '/a1-test')).catch(() => undefined);
  }
}

/** Destroys every task of the node and removes its files. */
export async function teardownNode(node: HarnessNode | undefined): Promise<void> {
  if (!node) return;
  for (const task of node.runtime.list()) await node.runtime.destroy(task.taskId, true).catch(() => undefined);
  node.runtime.close();
  deleteAllContainers(join(node.root, 'runc'));
  await removeCgroupParent(node.cgroupParent);
  await rm(node.root, { recursive: true, force: true }).catch(() => undefined);
}

/** Runs a command inside a node's network namespace (a client on that node). */
export function inNetns(netnsPath: string, argv: readonly string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('nsenter', [`--net=${netnsPath}`, '--', ...argv], { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${argv.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

export { eventually } from './eventually';

export function identity(taskId: string, taskName = 'app') {
  return { taskId, allocId: `alloc-${taskId}`, taskName, jobId: 'job', namespace: 'default' };
}
