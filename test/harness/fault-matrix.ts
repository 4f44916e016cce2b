import { open, readdir } from 'node:fs/promises';
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

/**
 * The journaled steps a fault can follow: the sequence reports each step once it is done, so a fault "after
 * planned" is one before the source leaves rotation, which the target check covers (after `done` nothing is
 * at stake).
 */
export const FAULT_STEPS = ['left-rotation', 'handed-over', 'restored', 'joined-rotation'] as const;
export type FaultStep = (typeof FAULT_STEPS)[number];

/**
 * What can go wrong, each as the real thing: a process killed with SIGKILL, a node's every process killed at
 * once (its containers gone, as after a pre-emption), packets dropped both ways, checkpoint bytes flipped.
 */
export const FAULTS = [
  'controller-crash',
  'source-sidecar-kill',
  'target-sidecar-kill',
  'source-node-gone',
  'target-node-gone',
  'partition',
  'restore-fails',
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
  /** Each broken rule, in words; empty when the cell passed. */
  readonly failures: readonly string[];
  readonly elapsedMs: number;
}

/** A fault only a step where it means something: a restore can fail only once a checkpoint was handed over. */
export function applies(step: FaultStep, fault: Fault): boolean {
  return fault !== 'restore-fails' || step === 'handed-over';
}

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
  injected: boolean;
}

async function inject(local: LocalMode, cell: Cell, record: MigrationRecord): Promise<void> {
  const source = record.source.node;
  const target = record.target.node;
  switch (cell.fault) {
    case 'controller-crash':
      throw new Error(`fault matrix: controller crash after ${record.step}`);
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
  }
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
 * drain, the fault right after `step` is journaled, then everything a real node would restart (sidecars,
 * nodes, the controller, the link); then the promises are checked where they can break.
 */
export async function runCell(step: FaultStep, fault: Fault, log: Logger): Promise<CellResult> {
  const started = Date.now();
  const cell: Cell = { step, fault, killedSidecars: new Set(), killedNodes: new Set(), injected: false };
  const failures: string[] = [];
  let local: LocalMode | undefined;
  const sidecars = new Map<string, GrpcSidecarApi>();
  try {
    local = await startLocalMode(
      {
        cluster: { nodes: 2, services: [EXAMPLE_SERVICE.name], backgroundCheckpointInterval: BACKGROUND_INTERVAL },
        afterStep: async (record) => {
          if (cell.injected || record.step !== step || local === undefined) return;
          cell.injected = true;
          await inject(local, cell, record);
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
    const acknowledged = ((await get(base, '/counter')) as { counter: number }).counter;
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

    await local.controller.drainNode(placed.node, 'fault matrix').catch((err: unknown) => {
      log.info({ err: errorMessage(err) }, 'drain ended with an error (expected under some faults)');
    });
    if (!cell.injected) failures.push(`the drain never reached step ${step}`);

    // What operators and supervisors do after such a fault: the link comes back, dead processes restart.
    if (cell.partitioned !== undefined) await local.cluster.heal(...cell.partitioned);
    for (const node of new Set([...cell.killedSidecars, ...cell.killedNodes])) await local.cluster.restartNode(node);
    for (const n of local.cluster.nodes)
      sidecars.set(n.name, new GrpcSidecarApi({ socketPath: n.localSocket, timeoutMs: 30_000 }));
    const controller = await connectController(local.cluster, sidecars, {}, log);
    const record = await settle(controller);
    const finalStep = record?.step ?? 'none';
    if (record !== undefined && !isFinished(record)) failures.push(`migration still at ${record.step} after settling`);

    const running: string[] = [];
    for (const n of local.cluster.nodes) {
      for (const c of await settledContainersOn(n.dataDir)) {
        if (c.status === 'running') running.push(n.name);
        else failures.push(`${n.name}: container ${c.id} left ${c.status}`);
      }
    }
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
        const keys = Object.keys((await get(base, '/keys')) as object).length;
        if (keys < KEYS) failures.push(`${keys} of ${KEYS} acknowledged keys left`);
        const counter = ((await get(base, '/counter')) as { counter: number }).counter;
        if (counter <= acknowledged) failures.push(`counter ${counter} is not past the acknowledged ${acknowledged}`);
      } catch (err) {
        failures.push(`service unreachable through the router: ${errorMessage(err)}`);
      }
    }
    failures.push(...(await leaks(local)));
    return {
      step,
      fault,
      pass: failures.length === 0,
      outcome,
      finalStep,
      ...(running.length === 1 ? { copyOn: running[0] === placed.node ? 'source' : 'target' } : {}),
      ...(record?.restoredFromBuddy !== undefined ? { checkpointAgeMs: record.restoredFromBuddy.ageMs } : {}),
      ...(record?.error !== undefined ? { error: `${record.error.code} at ${record.error.step}` } : {}),
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
    for (const s of sidecars.values()) s.close();
    await local?.stop(true).catch((err: unknown) => log.warn({ err }, 'cluster teardown failed'));
  }
}

/** What a fault may leave that nothing will clean: CRIU's iptables chains in a node, live CRIU processes. */
async function leaks(local: LocalMode): Promise<string[]> {
  const found: string[] = [];
  for (const n of local.cluster.nodes) {
    const rules = await local.cluster.exec(n.name, [resolveBinary('iptables'), '-w', '-S']);
    if (rules.stdout.includes('CRIU')) found.push(`${n.name}: CRIU's iptables chain left`);
  }
  const criu = await run(['pgrep', '-a', 'criu'], { allowFailure: true });
  const ours = criu.stdout.split('\n').filter((line) => local.cluster.nodes.some((n) => line.includes(n.dataDir)));
  if (ours.length > 0) found.push(`CRIU processes left: ${ours.join('; ')}`);
  return found;
}
