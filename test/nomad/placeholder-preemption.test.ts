import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import pino from 'pino';
import type { Allocation, Job, NodeListStub } from '../../common/nomad-api';
import { NomadSchedulerActions } from '../../forecaster/src/actions/nomad-scheduler-actions';
import type { Reservation } from '../../forecaster/src/actions/scheduler-actions';
import { buildTestModel } from '../fixtures/forecaster/test-model';
import { GiveUp, type NomadCluster, REPO, waitFor } from './nomad-cluster';
import { attachSharedCluster, releaseSharedCluster } from './shared-cluster';

// Issue 6, item 4: "reserve capacity ... in Nomad: low-priority placeholder allocations that the replacements
// preempt — check on a real Nomad that the scheduler really does". One server, two clients (NOMAD_BIN). A chained
// job on client A asks for most of a client's memory, so A's replacement fits on B only if B's placeholder goes.
const CHAINED = 'ncb2-preempt-chained';
const FILLER = 'ncb2-preempt-filler';
const BLOCKED = 'ncb2-preempt-blocked';

interface NodeResources {
  NodeResources?: { Memory?: { MemoryMB?: number } };
  ReservedResources?: { Memory?: { MemoryMB?: number } } | null;
}

let cluster: NomadCluster;
let memoryMb = 0;
let nodeA: NodeListStub;
let nodeB: NodeListStub;
let chainedAlloc: Allocation;
const logLines: Record<string, unknown>[] = [];
const log = pino({ level: 'debug' }, { write: (line: string) => logLines.push(JSON.parse(line) as never) });

function actions(): NomadSchedulerActions {
  return new NomadSchedulerActions(cluster.api, log);
}

function logged(msg: string): Record<string, unknown>[] {
  return logLines.filter((l) => l.msg === msg);
}

/** A service job of one group, one task, `memoryMb` of memory. */
function job(id: string, priority: number, driver: string, config: Record<string, unknown>, onNode?: string): Job {
  return {
    ID: id,
    Name: id,
    Type: 'service',
    Priority: priority,
    Datacenters: ['*'],
    ...(onNode === undefined ? {} : { Constraints: [{ LTarget: '${node.unique.id}', RTarget: onNode, Operand: '=' }] }),
    TaskGroups: [
      {
        Name: 'work',
        Count: 1,
        // No restarts or reschedules on the way: a failure must show, not be retried into a pass.
        RestartPolicy: { Attempts: 0, Mode: 'fail' },
        ReschedulePolicy: { Attempts: 0, Unlimited: false },
        Tasks: [{ Name: 'work', Driver: driver, Config: config, Resources: { CPU: 100, MemoryMB: memoryMb } }],
      },
    ],
  };
}

const SLEEP = { command: '/bin/sleep', args: ['2147483'] };

async function allocsOf(jobId: string): Promise<Allocation[]> {
  const { value } = await cluster.api.listAllocations({ filter: `JobID == "${jobId}"` });
  return Promise.all(value.map(async (stub) => (await cluster.api.getAllocation(stub.ID)).value));
}

/** Waits for a running allocation of `jobId` matching `predicate`; gives up once a matching one failed. */
async function running(jobId: string, predicate: (a: Allocation) => boolean = () => true): Promise<Allocation> {
  return waitFor(`a running ${jobId} allocation`, 300_000, async () => {
    const allocs = (await allocsOf(jobId)).filter(predicate);
    const found = allocs.find((a) => a.ClientStatus === 'running' && a.DesiredStatus === 'run');
    if (found !== undefined) return found;
    const failed = allocs.find((a) => a.ClientStatus === 'failed');
    const states = allocs.map(
      (a) =>
        `${a.ID.slice(0, 8)} on ${a.NodeName} ${a.ClientStatus}/${a.DesiredStatus}: ` +
        JSON.stringify(Object.values(a.TaskStates ?? {}).flatMap((t) => (t.Events ?? []).map((e) => e.DisplayMessage))),
    );
    if (failed !== undefined) throw new GiveUp(states.join('; '));
    throw new Error(states.join('; ') || 'no allocation yet');
  });
}

async function serverGet<T>(urlPath: string): Promise<T> {
  const { status, body } = await cluster.nomadGet(urlPath);
  if (status !== 200) throw new Error(`GET ${urlPath}: ${status} ${body}`);
  return JSON.parse(body) as T;
}

async function setServicePreemption(enabled: boolean): Promise<void> {
  const read = (await cluster.api.schedulerConfiguration()).value.SchedulerConfig;
  if (read === null) throw new Error('Nomad answered no scheduler configuration');
  const config = { ...read, PreemptionConfig: { ...read.PreemptionConfig, ServiceSchedulerEnabled: enabled } };
  const res = await cluster.api.setSchedulerConfiguration(config, { casIndex: read.ModifyIndex });
  expect(res.Updated).toBe(true);
  const after = (await cluster.api.schedulerConfiguration()).value.SchedulerConfig;
  expect(after?.PreemptionConfig.ServiceSchedulerEnabled).toBe(enabled);
}

/** Runs the forecaster's own main.ts in Nomad mode until it logs `msg`; returns that JSON line. */
async function forecasterStartLine(msg: string): Promise<Record<string, unknown>> {
  const model = await buildTestModel(path.join(cluster.dir, 'forecaster-model'));
  const child = spawn(
    process.execPath,
    ['-r', path.join(REPO, 'scripts', 'register.js'), path.join(REPO, 'forecaster', 'src', 'main.ts')],
    {
      env: {
        // The cluster's https address, CA and management token (ACLs and TLS are on).
        ...cluster.env,
        NOMAD_CHAIN_FORECASTER_MODEL_DIR: model.dir,
        NOMAD_CHAIN_FORECASTER_TELEMETRY_PORT: '0',
        NOMAD_CHAIN_FORECASTER_HTTP_PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const stderr: string[] = [];
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const lines = readline.createInterface({ input: child.stdout });
    for await (const line of lines) {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if (parsed.msg === msg) return parsed;
    }
    throw new Error(`the forecaster exited without logging "${msg}": ${stderr.join('')}`);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

async function purge(jobId: string): Promise<void> {
  await cluster.api.deregisterJob(jobId, { purge: true }).catch(() => undefined);
}

beforeAll(async () => {
  cluster = await attachSharedCluster(__filename);
  // Placeholders run under Nomad's exec driver (the adapter's default task).
  await waitFor('the exec driver healthy on both clients', 120_000, async () => {
    const { value } = await cluster.api.listNodes();
    return value.every((n) => n.Drivers?.exec?.Healthy === true) ? true : undefined;
  });
});

// Also turns service-job preemption off again and ends the drain of node A.
afterAll(() => releaseSharedCluster(cluster));

test("Nomad's default: service-job preemption off, so a priority-1 job blocks a priority-50 one", async () => {
  const config = (await cluster.api.schedulerConfiguration()).value.SchedulerConfig;
  expect(config?.PreemptionConfig).toEqual({
    SystemSchedulerEnabled: true,
    SysBatchSchedulerEnabled: false,
    BatchSchedulerEnabled: false,
    ServiceSchedulerEnabled: false,
  });

  // Most of one client's memory: two such allocations never fit on one client.
  const [first] = (await cluster.api.listNodes()).value;
  if (first === undefined) throw new Error('no client registered');
  const node = (await cluster.api.getNode(first.ID)).value as unknown as NodeResources;
  const total = node.NodeResources?.Memory?.MemoryMB ?? 0;
  const available = total - (node.ReservedResources?.Memory?.MemoryMB ?? 0);
  memoryMb = Math.floor(available * 0.6);
  expect(memoryMb).toBeGreaterThan(0);
  expect(2 * memoryMb).toBeGreaterThan(available);

  try {
    await cluster.api.registerJob(job(FILLER, 1, 'exec', SLEEP, first.ID));
    await blockedBehindFiller(first.ID);
  } finally {
    // A blocked job left behind would take its room (preempting) as soon as a later test turns preemption on.
    await purge(BLOCKED);
    await purge(FILLER);
  }
  await waitFor('the filler to stop', 120_000, async () =>
    (await allocsOf(FILLER)).every((a) => a.ClientStatus !== 'running') ? true : undefined,
  );
});

async function blockedBehindFiller(nodeId: string): Promise<void> {
  const filler = await running(FILLER);
  const registered = await cluster.api.registerJob(job(BLOCKED, 50, 'exec', SLEEP, nodeId));
  // The scheduler answers by parking the job: a blocked evaluation, the group queued, the filler untouched.
  const blocked = await waitFor('a blocked evaluation for the priority-50 job', 120_000, async () => {
    const evals = await serverGet<{ Status: string; PreviousEval: string }[]>(`/v1/job/${BLOCKED}/evaluations`);
    return evals.find((e) => e.Status === 'blocked' && e.PreviousEval === registered.EvalID);
  });
  expect(blocked.Status).toBe('blocked');
  // The summary counts the group as queued once the first evaluation's outcome is applied, a moment after the
  // blocked evaluation shows (a clean-clone run read Queued: 0 in between): wait for it, bounded.
  const summary = await waitFor('the priority-50 group counted as queued', 30_000, async () => {
    const s = await serverGet<{ Summary: Record<string, { Queued: number; Running: number }> }>(
      `/v1/job/${BLOCKED}/summary`,
    );
    return (s.Summary.work?.Queued ?? 0) > 0 ? s : undefined;
  });
  expect(summary.Summary.work).toMatchObject({ Queued: 1, Running: 0 });
  expect(await allocsOf(BLOCKED)).toEqual([]);
  const after = (await cluster.api.getAllocation(filler.ID)).value;
  expect(after).toMatchObject({ ClientStatus: 'running', DesiredStatus: 'run' });
  // Nomad leaves an unset PreemptedByAllocation out of the JSON.
  expect(after.PreemptedByAllocation ?? '').toBe('');
}

test('with preemption off, reserve places no placeholder and says why', async () => {
  await cluster.api.registerJob(job(CHAINED, 50, 'chain', SLEEP));
  chainedAlloc = await running(CHAINED);
  const nodes = (await cluster.api.listNodes()).value;
  const a = nodes.find((n) => n.ID === chainedAlloc.NodeID);
  const b = nodes.find((n) => n.ID !== chainedAlloc.NodeID);
  if (a === undefined || b === undefined) throw new Error('expected two clients');
  [nodeA, nodeB] = [a, b];

  // The forecaster says so at start-up, with the fix, before any decision needs a reservation.
  expect(await forecasterStartLine('placeholders disabled')).toMatchObject({
    level: 40,
    component: 'nomad-actions',
    fix: 'nomad operator scheduler set-config -preempt-service-scheduler=true',
  });
  const adapter = actions();
  await adapter.checkPreemption();
  expect(logged('placeholders disabled')[0]).toMatchObject({
    level: 40,
    fix: 'nomad operator scheduler set-config -preempt-service-scheduler=true',
  });
  await adapter.fence(nodeA.Name, 'test: preemption off');
  const reservation = await adapter.reserve(nodeA.Name, 'test: preemption off');
  expect(reservation).toMatchObject({ id: '', node: nodeA.Name, targets: [], tasks: 0 });
  expect(reservation.skipped).toMatch(/service-job preemption is off/);
  expect(logged('capacity not reserved')[0]).toMatchObject({ level: 40, node: nodeA.Name, tasks: 1 });
  expect(await allocsOf(`nomad-chain-reserve-${nodeA.Name}`)).toEqual([]);
  await adapter.unfence(nodeA.Name, 'test: next step');
});

test("with preemption on, the placeholder holds B and the drain's replacement preempts it there", async () => {
  await setServicePreemption(true);
  expect(await forecasterStartLine('service-job preemption is on: placeholders will reserve capacity')).toMatchObject({
    level: 30,
    component: 'nomad-actions',
  });
  const adapter = actions();
  await adapter.checkPreemption();
  expect(logged('service-job preemption is on: placeholders will reserve capacity')).toHaveLength(1);

  await adapter.fence(nodeA.Name, 'test: risk high');
  const reservation: Reservation = await adapter.reserve(nodeA.Name, 'test: risk high');
  expect(reservation).toMatchObject({ id: `nomad-chain-reserve-${nodeA.Name}`, node: nodeA.Name, tasks: 1 });
  expect(reservation.skipped).toBeUndefined();
  const placeholder = await running(reservation.id);
  expect(placeholder.NodeID).toBe(nodeB.ID);
  expect(placeholder.Job?.Priority).toBe(1);

  await adapter.drain(nodeA.Name, { deadlineMs: 120_000, reason: 'test: risk high', decisionId: 1 });
  const replacement = await running(CHAINED, (x) => x.PreviousAllocation === chainedAlloc.ID);
  expect(replacement.NodeID).toBe(nodeB.ID);
  expect(replacement.PreemptedAllocations).toEqual([placeholder.ID]);
  const evicted = (await cluster.api.getAllocation(placeholder.ID)).value;
  expect(evicted).toMatchObject({
    DesiredStatus: 'evict',
    PreemptedByAllocation: replacement.ID,
    DesiredDescription: `Preempted by alloc ID ${replacement.ID}`,
  });
  expect(evicted.ClientStatus).not.toBe('running');

  await adapter.release(reservation);
  const gone = await cluster.nomadGet(`/v1/job/${reservation.id}`);
  expect(gone.status).toBe(404);
});
