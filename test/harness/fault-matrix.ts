import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { resolveBinary } from '../../common/binaries';
import { errorMessage } from '../../common/errors';
import { run } from '../../common/exec';
import { backgroundKey } from '../../common/checkpoint-keys';
import { GrpcSidecarApi } from '../../common/sidecar-api/grpc-sidecar-api';
import {
  EXAMPLE_SERVICE,
  connectController,
  startLocalMode,
  waitForPort,
  type LocalMode,
} from '../../local/local-mode';
import type { LocalController } from '../../local/controller/local-controller';
import { isFinished, type MigrationRecord, type MigrationStep } from '../../local/migration/migration-record';
import { MigrationMode } from '../../proto/gen/chain/v1/sidecar';
import { cgroupParentOf, hostNetnsName, type LocalClusterOptions } from '../../local/cluster/cluster';
import type { LinkShape } from '../../local/cluster/network';
import { smallDiskSource, type SmallDisk } from '../../local/cluster/small-disks';
import { FlakyProxy, type Flaw } from './flaky-proxy';
import { killGroup, killOne, whenSeen } from './processes';

/**
 * Where a fault strikes. The journaled steps of a stop-and-copy drain: the sequence reports each step once it
 * is done, so a fault "after planned" is one before the source leaves rotation, which the target check covers
 * (after `done` nothing is at stake). `post-copy-window`: a post-copy drain's `handed-over`, with its window
 * open (the images on the target, the source frozen serving its pages). `pre-stage`: while a pre-stage copies
 * the running task to its reserved node, ahead of the drain.
 */
export const FAULT_STEPS = [
  'left-rotation',
  'handed-over',
  'restored',
  'joined-rotation',
  'post-copy-window',
  'pre-stage',
] as const;
export type FaultStep = (typeof FAULT_STEPS)[number];

/** The journaled step a fault follows: none for a pre-stage, which journals nothing. */
function journaledStep(step: FaultStep): MigrationStep | undefined {
  if (step === 'pre-stage') return undefined;
  return step === 'post-copy-window' ? 'handed-over' : step;
}

/** How a cell's step reads in a sentence: "after left-rotation", "in post-copy-window", "during pre-stage". */
export function when(step: FaultStep): string {
  if (step === 'pre-stage') return 'during pre-stage';
  return step === 'post-copy-window' ? 'in post-copy-window' : `after ${step}`;
}

/**
 * What can go wrong, each as the real thing: a process killed with SIGKILL, a node's every process killed at
 * once (its containers gone, as after a pre-emption), packets dropped both ways, checkpoint bytes flipped, a
 * small disk (tmpfs) filled until ENOSPC, a rate-limited link losing packets and delaying the transfer, a TCP
 * proxy that flips a byte of, or cuts, every stream the source opens to the target's transfer port; in a
 * post-copy window, the source's lazy dump (runc and its CRIU) or the target's page daemon killed.
 */
export const FAULTS = [
  'controller-crash',
  'source-sidecar-kill',
  'target-sidecar-kill',
  'source-node-gone',
  'target-node-gone',
  'partition',
  'restore-fails',
  'store-full',
  'disk-full',
  'slow-link',
  'corrupt-in-flight',
  'truncated-stream',
  'source-dump-kill',
  'target-page-daemon-kill',
] as const;
export type Fault = (typeof FAULTS)[number];

/**
 * Where the task ended: on the target, back on its source, brought back from its buddy's background checkpoint
 * (its source died before the hand-over), stopped for an operator, or a broken promise.
 */
export type CellOutcome = 'moved' | 'rolled back' | 'restored from buddy' | 'operator' | 'lost' | 'duplicated';

export interface CellResult {
  readonly step: FaultStep;
  readonly fault: Fault;
  readonly pass: boolean;
  readonly outcome: CellOutcome;
  /** The migration's last journaled step once everything was restarted. */
  readonly finalStep: MigrationStep | 'none';
  /** Where the one running copy is, when there is exactly one. */
  readonly copyOn?: 'source' | 'target';
  /** How old the restored state was, when the task came back from its buddy's background checkpoint. */
  readonly checkpointAgeMs?: number;
  /** The migration's error, when it has one: its code and the step it failed at. */
  readonly error?: string;
  readonly errorMessage?: string;
  /** What the fault did, for faults that can miss (bytes filled, streams damaged, bytes over a slow link). */
  readonly faultDetail?: string;
  /** Each broken rule, in words; empty when the cell passed. */
  readonly failures: readonly string[];
  readonly elapsedMs: number;
}

/**
 * A fault only at a step where it means something. The checkpoint crosses the link into the target's store
 * between `left-rotation` and `handed-over`: a full store, a slow link or a damaged stream matter only right
 * after `left-rotation` (later, the bytes are already across). The target writes the task's files and
 * restores it between `handed-over` and `restored`: a restore can fail, and a disk fill up under the task's
 * files, only right after `handed-over`.
 */
export function applies(step: FaultStep, fault: Fault): boolean {
  if (step === 'post-copy-window') return WINDOW_FAULTS.has(fault);
  if (step === 'pre-stage') return PRESTAGE_FAULTS.has(fault);
  switch (fault) {
    case 'source-dump-kill':
    case 'target-page-daemon-kill':
      return false;
    case 'restore-fails':
    case 'disk-full':
      return step === 'handed-over';
    case 'store-full':
    case 'slow-link':
    case 'corrupt-in-flight':
    case 'truncated-stream':
      return step === 'left-rotation';
    default:
      return true;
  }
}

/**
 * Inside a post-copy window the images are already on the target (no store, link or stream fault is left to
 * strike) and the target restores from them while pulling pages: what can break is a party of the window
 * (either sidecar, either node, the controller), the page stream between them (a partition), or one of the
 * window's own processes (the source's lazy dump serving the pages, the target's page daemon pulling them).
 * A restore failing or a disk filling up under the task's files is the stop-and-copy row's `handed-over`.
 */
const WINDOW_FAULTS: ReadonlySet<Fault> = new Set<Fault>([
  'source-sidecar-kill',
  'target-sidecar-kill',
  'source-node-gone',
  'target-node-gone',
  'partition',
  'controller-crash',
  'source-dump-kill',
  'target-page-daemon-kill',
]);
/**
 * A pre-stage dumps the running task on its source (leave-running) and pushes the copy into the target's
 * store: either sidecar or the target node can die, the link can drop, the store can be full, the stream can
 * be damaged. Nothing is restored (no restore or disk fault) and nothing is journaled (no controller state to
 * lose); a source node gone takes the task with it, which is no longer the pre-stage's doing.
 */
const PRESTAGE_FAULTS: ReadonlySet<Fault> = new Set<Fault>([
  'source-sidecar-kill',
  'target-sidecar-kill',
  'target-node-gone',
  'partition',
  'store-full',
  'corrupt-in-flight',
]);
/**
 * A post-copy cell's nodes: lazy restore of a user-namespaced task needs vm.unprivileged_userfaultfd = 1 and
 * CAP_SYS_RESOURCE, which this machine lacks (the sidecar's probe says so), so its tasks run in the node's user
 * namespace, as in the post-copy integration test.
 */
const WINDOW_CLUSTER = {
  sidecarEnv: { NOMAD_CHAIN_USER_NAMESPACE: 'off' },
  readyTimeoutMs: 90_000,
} as const satisfies Partial<LocalClusterOptions>;
/**
 * Faults in place before a pre-stage starts, so its push runs into them (a full store, a damaged stream); the
 * others strike once its dump is seen running on the source.
 */
const BEFORE_PRESTAGE: ReadonlySet<Fault> = new Set<Fault>(['store-full', 'corrupt-in-flight']);
/** State written besides the keys before a pre-stage, so its dump and push last long enough to be struck. */
const PRESTAGE_VALUES = 16;
const PRESTAGE_VALUE_BYTES = 512 * 1024;

/** Which small disk a full-disk fault fills on the target. */
const FULL_DISK = { 'store-full': 'store', 'disk-full': 'allocs' } as const satisfies Partial<Record<Fault, SmallDisk>>;

function fillsDisk(fault: Fault): fault is keyof typeof FULL_DISK {
  return fault in FULL_DISK;
}

/**
 * The small disks' sizes: room for the kv service's background checkpoints (its chunks deduplicated) and its
 * files, small enough that filling one is quick.
 */
const SMALL_DISKS: Readonly<Record<SmallDisk, number>> = { store: 512 * 1024 * 1024, allocs: 64 * 1024 * 1024 };
/**
 * What a slow link is here: a low rate and random loss on the nodes' links (tc and iptables), and, as this
 * kernel has no netem to add latency, a proxy that delays the transfer's stream each way.
 */
const SLOW_LINK: LinkShape = { rate: '20mbit', loss: 0.05 };
const SLOW_LINK_DELAY_MS = 50;
/**
 * Where the proxy damages a stream: past a TLS handshake and a protocol greeting (a few KiB), inside any push
 * that carries a checkpoint's chunks.
 */
const PROXY_FLAWS = {
  'corrupt-in-flight': { kind: 'flip', atByte: 64 * 1024 },
  'truncated-stream': { kind: 'cut', afterBytes: 64 * 1024 },
} as const satisfies Partial<Record<Fault, Flaw>>;
/** The file that fills a small disk: the operator's fix is to delete it. */
const FILLER = 'fault-matrix.filler';

const KEYS = 10;
const SETTLE_MS = 120_000;
/** Every node checkpoints its tasks to the next node this often, as a cluster with background checkpoints does. */
const BACKGROUND_INTERVAL = '2s';
const BACKGROUND_WAIT_MS = 60_000;

interface Cell {
  readonly step: FaultStep;
  readonly fault: Fault;
  readonly killedSidecars: Set<string>;
  readonly killedNodes: Set<string>;
  partitioned?: readonly [string, string];
  /** What an operator does once the drain is over, in order: the link repaired, the disk freed, the proxy gone. */
  readonly repairs: (() => Promise<void>)[];
  /**
   * Set by a fault that can be injected without taking effect: what it did (read before the repairs), and
   * whether that was anything at all.
   */
  evidence?: () => Promise<{ readonly detail: string; readonly inEffect: boolean }>;
  injected: boolean;
}

/**
 * Injects the cell's fault between `source` and `target`. A fault that waits for a process of the window (the
 * migration goes on meanwhile: the sequence awaits this) leaves its evidence to await it; `over` says when the
 * moment for it has passed.
 */
async function inject(
  local: LocalMode,
  cell: Cell,
  source: string,
  target: string,
  over: () => boolean,
): Promise<void> {
  switch (cell.fault) {
    case 'controller-crash':
      throw new Error(`fault matrix: controller crash ${when(cell.step)}`);
    case 'source-dump-kill': {
      // runc checkpoint --lazy-pages and the CRIU it started share its process group: both die.
      const killed = whenSeen(['checkpoint', '--lazy-pages', local.cluster.node(source).dataDir], over).then((pid) =>
        pid === undefined ? false : (killGroup(pid), true),
      );
      cell.evidence = async () => ({
        detail: (await killed) ? "the source's lazy dump killed" : 'no lazy dump seen on the source',
        inEffect: await killed,
      });
      return;
    }
    case 'target-page-daemon-kill': {
      const parts = ['lazy-pages', '--page-server', '--images-dir', local.cluster.node(target).dataDir];
      const killed = whenSeen(parts, over).then((pid) => (pid === undefined ? false : (killOne(pid), true)));
      cell.evidence = async () => ({
        detail: (await killed) ? "the target's page daemon killed" : 'no page daemon seen on the target',
        inEffect: await killed,
      });
      return;
    }
    case 'source-sidecar-kill':
      cell.killedSidecars.add(source);
      return local.cluster.killSidecar(source);
    case 'target-sidecar-kill':
      cell.killedSidecars.add(target);
      return local.cluster.killSidecar(target);
    case 'source-node-gone':
      cell.killedNodes.add(source);
      return local.cluster.killNode(source);
    case 'target-node-gone':
      cell.killedNodes.add(target);
      return local.cluster.killNode(target);
    case 'partition':
      cell.partitioned = [source, target];
      return local.cluster.partition(source, target);
    case 'restore-fails':
      return corruptStaged(local.cluster.node(target).dataDir);
    case 'store-full':
    case 'disk-full': {
      const disk = FULL_DISK[cell.fault];
      const path = join(local.cluster.diskPath(target, disk), FILLER);
      cell.repairs.push(() => rm(path, { force: true }));
      const filled = await fill(path);
      cell.evidence = () =>
        Promise.resolve({
          detail: `${mib(filled)} filled ${disk} until ENOSPC`,
          inEffect: filled > 0,
        });
      return;
    }
    case 'slow-link': {
      const cluster = local.cluster;
      cell.repairs.push(() => cluster.unshape(source, target, SLOW_LINK));
      await cluster.shape(source, target, SLOW_LINK);
      const proxy = await throughProxy(local, cell, source, target, { kind: 'delay', ms: SLOW_LINK_DELAY_MS });
      cell.evidence = async () => {
        const stats = await cluster.shapedLinkStats(source, target);
        return {
          detail: `${mib(stats.shapedBytes)} over the ${SLOW_LINK.rate} links, ${stats.droppedPackets} packets dropped, ${proxy.flawed} streams delayed ${SLOW_LINK_DELAY_MS} ms each way`,
          inEffect: stats.shapedBytes > 0 && proxy.flawed > 0,
        };
      };
      return;
    }
    case 'corrupt-in-flight':
    case 'truncated-stream': {
      const flaw: Flaw = PROXY_FLAWS[cell.fault];
      const proxy = await throughProxy(local, cell, source, target, flaw);
      cell.evidence = () =>
        Promise.resolve({
          detail: `${proxy.flawed} of ${proxy.connections} streams ${flaw.kind === 'flip' ? 'flipped' : 'cut'}, ${mib(proxy.bytes)} through the proxy`,
          inEffect: proxy.flawed > 0,
        });
      return;
    }
  }
}

/**
 * Puts a proxy with `flaw` between the source and the target's transfer port, for every connection the source
 * opens there from now on; its removal joins the cell's repairs.
 */
async function throughProxy(
  local: LocalMode,
  cell: Cell,
  source: string,
  target: string,
  flaw: Flaw,
): Promise<FlakyProxy> {
  const cluster = local.cluster;
  const upstream = { host: cluster.node(target).address, port: cluster.transferPort };
  const proxy = await FlakyProxy.start(cluster.hostAddress, upstream, flaw);
  const via = { address: proxy.address, port: proxy.port };
  // Repairs run in order: the rule goes before the proxy, so no new connection finds it gone.
  cell.repairs.push(
    () => cluster.unredirectTransfer(source, target, via),
    () => proxy.stop(),
  );
  await cluster.redirectTransfer(source, target, via);
  return proxy;
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * Fills the filesystem holding `path` with one file until it is full (ENOSPC), as a disk fills up: large
 * writes first, then page-sized ones for the last partial megabyte. Resolves the bytes written.
 */
async function fill(path: string): Promise<number> {
  const file = await open(path, 'w');
  let written = 0;
  try {
    for (const size of [1024 * 1024, 4096]) {
      const block = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          written += (await file.write(block)).bytesWritten;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    await file.close();
  }
  return written;
}

/**
 * Flips the last byte of every file the target's store holds, whatever its layout: every checkpoint it then
 * materialises fails its integrity check, as after a disk or a link that corrupted it.
 */
export async function corruptStaged(dataDir: string): Promise<void> {
  const visit = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await visit(path);
      else if (entry.isFile() && !entry.name.endsWith('.json')) {
        const file = await open(path, 'r+');
        try {
          const { size } = await file.stat();
          if (size === 0) continue;
          const byte = Buffer.alloc(1);
          await file.read(byte, 0, 1, size - 1);
          byte[0] = (byte[0] ?? 0) ^ 0xff;
          await file.write(byte, 0, 1, size - 1);
        } finally {
          await file.close();
        }
      }
    }
  };
  await visit(join(dataDir, 'store'));
}

export interface Container {
  readonly id: string;
  readonly status: string;
}

/** runc's own view of a node's containers (not the sidecar's, not the controller's). */
export async function containersOn(dataDir: string): Promise<Container[]> {
  const out = await run([resolveBinary('runc'), '--root', join(dataDir, 'runc'), 'list', '--format', 'json'], {
    allowFailure: true,
  });
  if (out.code !== 0 || out.stdout.trim() === '' || out.stdout.trim() === 'null') return [];
  return (JSON.parse(out.stdout) as { id: string; status: string }[]).map((c) => ({ id: c.id, status: c.status }));
}

/**
 * runc's view once no container is paused: a background checkpoint freezes its task for the dump (under a
 * second), and a copy caught frozen is a running copy, not one left behind. Bounded: one that stays paused is.
 */
async function settledContainersOn(dataDir: string): Promise<Container[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const containers = await containersOn(dataDir);
    if (!containers.some((c) => c.status === 'paused') || Date.now() > deadline) return containers;
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function get(base: string, path: string): Promise<unknown> {
  const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
  return res.json();
}

/**
 * Waits until `buddy` holds a background checkpoint of the task dumped wholly after `sinceMs`: the second one
 * filed after it (the first may have begun its dump before). A task restored from it keeps every write
 * acknowledged before `sinceMs`, so the cell checks the same state promise whichever way the task comes back.
 */
async function backgroundAfter(buddy: GrpcSidecarApi, taskId: string, sinceMs: number): Promise<void> {
  const deadline = Date.now() + BACKGROUND_WAIT_MS;
  let first: string | undefined;
  for (;;) {
    const found = await buddy.findCheckpoint({ handoverKey: backgroundKey(taskId), waitMs: 0 });
    const checkpoint = found.found ? found.checkpoint : undefined;
    if (checkpoint !== undefined && checkpoint.createdAtUnixMs > sinceMs) {
      if (first !== undefined && checkpoint.checkpointId !== first) return;
      first = checkpoint.checkpointId;
    }
    if (Date.now() > deadline) throw new Error(`no background checkpoint of ${taskId} on its buddy after ${sinceMs}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function settle(controller: LocalController): Promise<MigrationRecord | undefined> {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const records = controller.migrations();
    const last = records[records.length - 1];
    if (last === undefined || isFinished(last) || Date.now() > deadline) return last;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * One cell: a stateful service (keys written and acknowledged, a request counter, a journal held open), a
 * drain, the fault right after `step` is journaled (in a pre-stage cell: during a pre-stage ahead of the
 * drain, everything restarted before the drain), then everything a real node would restart (sidecars, nodes,
 * the controller, the link); then the promises are checked where they can break.
 */
export async function runCell(step: FaultStep, fault: Fault, log: Logger): Promise<CellResult> {
  const started = Date.now();
  const cell: Cell = { step, fault, killedSidecars: new Set(), killedNodes: new Set(), repairs: [], injected: false };
  const failures: string[] = [];
  let local: LocalMode | undefined;
  let drained = false;
  const sidecars = new Map<string, GrpcSidecarApi>();
  const window = step === 'post-copy-window';
  try {
    local = await startLocalMode(
      {
        cluster: {
          nodes: 2,
          services: [EXAMPLE_SERVICE.name],
          // A pre-stage cell finds the pre-stage's dump by its command line: no background dump to mistake for it.
          ...(step === 'pre-stage' ? {} : { backgroundCheckpointInterval: BACKGROUND_INTERVAL }),
          ...(window ? WINDOW_CLUSTER : {}),
          ...clusterFor(fault),
        },
        ...(window ? { mode: MigrationMode.MIGRATION_MODE_LAZY } : {}),
        afterStep: async (record) => {
          if (cell.injected || record.step !== journaledStep(step) || local === undefined) return;
          cell.injected = true;
          await inject(local, cell, record.source.node, record.target.node, () => drained);
        },
      },
      log,
    );
    const placed = await local.controller.runService(EXAMPLE_SERVICE, (i) => waitForPort(i));
    const base = `http://127.0.0.1:${local.cluster.haproxy.portOf(EXAMPLE_SERVICE.name)}`;
    for (let i = 0; i < KEYS; i++) {
      const res = await fetch(`${base}/kv/k${i}`, { method: 'PUT', body: `v${i}` });
      if (!res.ok) throw new Error(`PUT k${i}: HTTP ${res.status}`);
    }
    let prestage: string | undefined;
    if (step === 'pre-stage') {
      for (let i = 0; i < PRESTAGE_VALUES; i++) {
        const value = randomBytes(PRESTAGE_VALUE_BYTES / 2).toString('hex');
        const res = await fetch(`${base}/kv/big${i}`, { method: 'PUT', body: value });
        if (!res.ok) throw new Error(`PUT big${i}: HTTP ${res.status}`);
      }
      prestage = await prestageUnder(local, cell, placed.node, failures);
      // What operators and supervisors do after such a fault, before the drain: the pre-stage must not have
      // cost the task its one running copy.
      await restore(local, cell);
      const running = await runningOn(local, failures);
      if (running.length !== 1 || running[0] !== placed.node)
        failures.push(`after the pre-stage and the restarts, running copies (runc): ${running.join(', ') || 'none'}`);
    }
    const acknowledged = ((await get(base, '/counter')) as { counter: number }).counter;
    if (step !== 'pre-stage') {
      // The buddy is the next node of the cluster (the last node's is the first).
      const nodes = local.cluster.nodes;
      const buddyNode = nodes[(nodes.findIndex((n) => n.name === placed.node) + 1) % nodes.length];
      if (buddyNode === undefined) throw new Error('no buddy node');
      const buddy = new GrpcSidecarApi({ socketPath: buddyNode.localSocket, timeoutMs: 30_000 });
      try {
        await backgroundAfter(buddy, placed.taskId, Date.now());
      } finally {
        buddy.close();
      }
    }

    await local.controller
      .drainNode(placed.node, 'fault matrix')
      .catch((err: unknown) => {
        log.info({ err: errorMessage(err) }, 'drain ended with an error (expected under some faults)');
      })
      .finally(() => (drained = true));
    if (!cell.injected) failures.push(`the fault never struck ${when(step)}`);
    const evidence = await cell.evidence?.();
    if (evidence !== undefined && !evidence.inEffect) failures.push(`fault not in effect: ${evidence.detail}`);

    // What operators and supervisors do after such a fault: the link comes back, disks are freed, dead
    // processes restart.
    await restore(local, cell);
    for (const n of local.cluster.nodes)
      sidecars.set(n.name, new GrpcSidecarApi({ socketPath: n.localSocket, timeoutMs: 30_000 }));
    const controller = await connectController(
      local.cluster,
      sidecars,
      window ? { mode: MigrationMode.MIGRATION_MODE_LAZY } : {},
      log,
    );
    const record = await settle(controller);
    const finalStep = record?.step ?? 'none';
    if (record !== undefined && !isFinished(record)) failures.push(`migration still at ${record.step} after settling`);
    if (window && record !== undefined && record.mode !== MigrationMode.MIGRATION_MODE_LAZY)
      failures.push(`the drain ran in mode ${record.mode}, not post-copy`);

    const running = await runningOn(local, failures);
    let outcome: CellOutcome;
    if (running.length === 0) outcome = 'lost';
    else if (running.length > 1) outcome = 'duplicated';
    else if (finalStep === 'failed') outcome = 'operator';
    else if (record?.restoredFromBuddy !== undefined) outcome = 'restored from buddy';
    else outcome = running[0] === placed.node ? 'rolled back' : 'moved';
    if (
      record?.restoredFromBuddy !== undefined &&
      !controller.events.since(0).some((e) => e.event.type === 'task-restored-from-checkpoint')
    )
      failures.push('restored from a background checkpoint, but the controller told no one');
    if (running.length !== 1) failures.push(`${running.length} running copies (runc): ${running.join(', ')}`);

    if (running.length === 1) {
      const home = local.cluster.node(running[0] ?? '').address;
      try {
        const who = (await get(base, '/whoami')) as { addresses: string[] };
        if (!who.addresses.includes(home)) failures.push(`router reaches ${who.addresses.join(',')}, not ${home}`);
        const keys = (await get(base, '/keys')) as Record<string, string>;
        const kept = Array.from({ length: KEYS }, (_, i) => i).filter((i) => keys[`k${i}`] === `v${i}`).length;
        if (kept < KEYS) failures.push(`${kept} of ${KEYS} acknowledged keys left`);
        const counter = ((await get(base, '/counter')) as { counter: number }).counter;
        if (counter <= acknowledged) failures.push(`counter ${counter} is not past the acknowledged ${acknowledged}`);
      } catch (err) {
        failures.push(`service unreachable through the router: ${errorMessage(err)}`);
      }
    }
    const diskFull = fillsDisk(fault) && record?.error !== undefined;
    if (diskFull && !/FULL|ENOSPC/.test(`${record?.error?.code} ${record?.error?.message}`))
      failures.push(`failed on a full disk with an error that does not say so: ${record?.error?.code}`);
    // A stream a proxy altered fails TLS's record check: the error names the link, not a lost peer.
    if (
      fault === 'corrupt-in-flight' &&
      record?.error !== undefined &&
      record.error.code !== 'NC_TRANSFER_STREAM_CORRUPT'
    )
      failures.push(`failed on an altered stream with ${record.error.code}, not NC_TRANSFER_STREAM_CORRUPT`);
    const ids = [placed.taskId, record?.target.taskId].filter((id) => id !== undefined);
    const kept = await storeLeft(sidecars, ids, running.length === 1 ? running[0] : undefined);
    if (kept.length > 0) failures.push(`checkpoints left in stores: ${kept.join(', ')}`);
    failures.push(...(await leaks(local)));
    const detail = [prestage, evidence?.detail].filter((d) => d !== undefined).join('; ');
    return {
      step,
      fault,
      pass: failures.length === 0,
      outcome,
      finalStep,
      ...(running.length === 1 ? { copyOn: running[0] === placed.node ? 'source' : 'target' } : {}),
      ...(record?.restoredFromBuddy !== undefined ? { checkpointAgeMs: record.restoredFromBuddy.ageMs } : {}),
      ...(record?.error !== undefined
        ? { error: `${record.error.code} at ${record.error.step}`, errorMessage: record.error.message }
        : {}),
      ...(detail !== '' ? { faultDetail: detail } : {}),
      failures,
      elapsedMs: Date.now() - started,
    };
  } catch (err) {
    failures.push(`harness: ${errorMessage(err)}`);
    return {
      step,
      fault,
      pass: false,
      outcome: 'lost',
      finalStep: 'none',
      failures,
      elapsedMs: Date.now() - started,
    };
  } finally {
    await repair(cell).catch((err: unknown) => log.warn({ err }, 'fault repair failed'));
    for (const s of sidecars.values()) s.close();
    // NC_KEEP_RUN_DIR keeps the cluster's directory (sidecar logs, journal) for a post-mortem.
    await local
      ?.stop(process.env.NC_KEEP_RUN_DIR === undefined)
      .catch((err: unknown) => log.warn({ err }, 'cluster teardown failed'));
  }
}

/**
 * A pre-stage of the placed task to its reserved node with the cell's fault striking it: set up before it
 * starts, or once its dump runs on the source. Resolves what the pre-stage reported; a fault that left the
 * pre-stage's copy staged, or a damaged stream it did not name, is a failure.
 */
async function prestageUnder(local: LocalMode, cell: Cell, source: string, failures: string[]): Promise<string> {
  const { controller } = local;
  await controller.setEligibility(source, false, 'fault matrix: pre-stage ahead of a drain');
  const reservation = await controller.reserve(source, 'fault matrix: pre-stage ahead of a drain');
  const [target] = Object.values(reservation.assignments);
  if (target === undefined) throw new Error(`no reserved node for the task of ${source}`);
  let over = false;
  let struck: Promise<void> = Promise.resolve();
  if (BEFORE_PRESTAGE.has(cell.fault)) {
    cell.injected = true;
    await inject(local, cell, source, target, () => over);
  } else {
    struck = whenSeen(['checkpoint', '--leave-running', local.cluster.node(source).dataDir], () => over).then(
      async (pid) => {
        if (pid === undefined) return;
        cell.injected = true;
        await inject(local, cell, source, target, () => over);
      },
    );
  }
  const report = await controller.prestage(source, reservation.id).finally(() => (over = true));
  await struck;
  if (!cell.injected) return 'no pre-stage dump seen on the source';
  const [staged] = report.staged;
  if (staged === undefined) throw new Error('the pre-stage reported no task');
  if (staged.outcome === 'staged') {
    failures.push(`the pre-stage staged its copy through the fault (${staged.wireBytes} bytes)`);
    return `pre-stage staged ${mib(staged.wireBytes)}`;
  }
  if (cell.fault === 'corrupt-in-flight' && staged.code !== 'NC_TRANSFER_STREAM_CORRUPT')
    failures.push(`the pre-stage failed on an altered stream with ${staged.code}, not NC_TRANSFER_STREAM_CORRUPT`);
  return `pre-stage failed: ${staged.code}: ${staged.error}`;
}

/** The link healed, the cell's repairs run, every killed sidecar and node restarted. */
async function restore(local: LocalMode, cell: Cell): Promise<void> {
  if (cell.partitioned !== undefined) await local.cluster.heal(...cell.partitioned);
  cell.partitioned = undefined;
  await repair(cell);
  for (const node of new Set([...cell.killedSidecars, ...cell.killedNodes])) await local.cluster.restartNode(node);
  cell.killedSidecars.clear();
  cell.killedNodes.clear();
}

/** Nodes with a running copy (runc's view); a container in any other state joins `failures` when given. */
async function runningOn(local: LocalMode, failures?: string[]): Promise<string[]> {
  const running: string[] = [];
  for (const n of local.cluster.nodes) {
    for (const c of await settledContainersOn(n.dataDir)) {
      if (c.status === 'running') running.push(n.name);
      else failures?.push(`${n.name}: container ${c.id} left ${c.status}`);
    }
  }
  return running;
}

/**
 * Checkpoints a store still holds that nothing will ever restore: all but the task's background copy (under its
 * id before or after the move) on a node that does not run it, kept for the day the task's node is gone. A hand-over restored or given up, a
 * pre-staged copy the drain used, and a background copy on the node now running the task are spent; each is
 * deleted in the background once the move settled, so a bounded wait for that before they count as left.
 */
async function storeLeft(
  sidecars: ReadonlyMap<string, GrpcSidecarApi>,
  taskIds: readonly string[],
  runningOn: string | undefined,
): Promise<string[]> {
  const buddyCopies = new Set(taskIds.map(backgroundKey));
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found: string[] = [];
    for (const [node, api] of sidecars)
      for (const c of await api.listCheckpoints())
        if (!buddyCopies.has(c.handoverKey) || node === runningOn) found.push(`${node}: ${c.handoverKey}`);
    if (found.length === 0 || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Small disks only where a fault fills one: every other cell runs on the layout a real node has. */
function clusterFor(fault: Fault): Pick<LocalClusterOptions, 'smallDisks'> {
  return fillsDisk(fault) ? { smallDisks: SMALL_DISKS } : {};
}

/** Runs the cell's repairs once each, in order, every one even when an earlier one fails; throws the first failure. */
async function repair(cell: Cell): Promise<void> {
  let first: Error | undefined;
  for (const step of cell.repairs.splice(0))
    await step().catch((err: unknown) => (first ??= err instanceof Error ? err : new Error(String(err))));
  if (first !== undefined) throw first;
}

/**
 * What a fault may leave that nothing will clean: CRIU's iptables chains in a node, live CRIU processes (the
 * lazy-pages daemons among them), mounts under the cluster's directory other than its small disks (runc's
 * criu-root, CRIU's cgroup yard), task cgroups of no container runc knows, network namespaces of the cluster
 * that are not its nodes'.
 */
async function leaks(local: LocalMode): Promise<string[]> {
  const found: string[] = [];
  const { cluster } = local;
  for (const n of cluster.nodes) {
    const rules = await cluster.exec(n.name, [resolveBinary('iptables'), '-w', '-S']);
    if (rules.stdout.includes('CRIU')) found.push(`${n.name}: CRIU's iptables chain left`);
  }
  const criu = await run(['pgrep', '-a', 'criu'], { allowFailure: true });
  const ours = criu.stdout.split('\n').filter((line) => cluster.nodes.some((n) => line.includes(n.dataDir)));
  if (ours.length > 0) found.push(`CRIU processes left: ${ours.join('; ')}`);
  const mounts = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' '))
    .filter(([source, at]) => at?.startsWith(`${cluster.runDir}/`) === true && source !== smallDiskSource(cluster.id))
    .map(([, at]) => at);
  if (mounts.length > 0) found.push(`mounts left: ${mounts.join(', ')}`);
  for (const n of cluster.nodes) {
    const known = new Set((await containersOn(n.dataDir)).map((c) => c.id));
    const parent = cgroupParentOf(cluster.id, n.name);
    for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [])) {
      const entries = await readdir(join('/sys/fs/cgroup', hierarchy, parent), { withFileTypes: true }).catch(() => []);
      const stray = entries
        .filter((e) => e.isDirectory() && !known.has(e.name.replace(/\.shim$/, '')))
        .map((e) => `${hierarchy}${parent}/${e.name}`);
      if (stray.length > 0) found.push(`${n.name}: cgroups of no container left: ${stray.join(', ')}`);
    }
  }
  const netns = (await run([resolveBinary('ip'), 'netns', 'list'], { allowFailure: true })).stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(`nc-${cluster.id}-`) && name !== hostNetnsName(cluster.id))
    .filter((name) => !cluster.nodes.some((n) => n.netns === name));
  if (netns.length > 0) found.push(`network namespaces left: ${netns.join(', ')}`);
  return found;
}
