import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { errorCode } from '../../common/errors';
import { HttpNomadApi } from '../../common/nomad-api';
import type { Events } from '../../common/nomad-api';
import { CONTRACT_GO_DIR, FIXTURE, HttpStandIn, NOMAD_TOKEN } from './http-standin';

// Nomad's side is github.com/hashicorp/nomad/api: every request must decode strictly into its structs.
let standIn: HttpStandIn;
let api: HttpNomadApi;

beforeAll(async () => {
  standIn = await HttpStandIn.start();
  api = new HttpNomadApi({ address: standIn.nomadAddress, token: NOMAD_TOKEN, timeoutMs: 20_000 });
});

afterAll(async () => {
  await standIn?.stop();
});

async function expectNoContractFailures(): Promise<void> {
  expect((await standIn.report()).failures).toEqual([]);
}

test('the stand-ins accept HashiCorp Go clients (go test ./httpapi/...)', async () => {
  const { stdout } = await promisify(execFile)('go', ['test', '-count=1', './httpapi/...'], { cwd: CONTRACT_GO_DIR });
  expect(stdout).toMatch(/^ok\s+nomad-chain\/contract\/httpapi/m);
});

test('nodes: list, read and allocations parse from api.NodeListStub / api.Node / api.Allocation', async () => {
  const nodes = await api.listNodes();
  expect(nodes.lastIndex).toBeGreaterThan(0);
  expect(nodes.value.map((n) => n.ID).sort()).toEqual([FIXTURE.nodeA, FIXTURE.nodeB]);
  expect(nodes.value[0]?.Drivers?.chain?.Healthy).toBe(true);

  const node = await api.getNode(FIXTURE.nodeA);
  expect(node.value.Name).toBe('client-a');
  expect(node.value.Attributes?.['driver.chain']).toBe('1');
  expect(node.value.Status).toBe('ready');

  const allocs = await api.nodeAllocations(FIXTURE.nodeA);
  expect(allocs.value.map((a) => a.ID)).toEqual([FIXTURE.oldAlloc]);
  await expectNoContractFailures();
});

test('drain: a blocking node read wakes with the DrainStrategy the drain request set', async () => {
  const before = await api.getNode(FIXTURE.nodeA);
  const blocked = api.getNode(FIXTURE.nodeA, { index: before.lastIndex, waitMs: 60_000 });
  const res = await api.drainNode(FIXTURE.nodeA, { deadlineMs: 3_600_000, meta: { reason: 'spot notice' } });
  expect(res.NodeModifyIndex).toBeGreaterThan(before.lastIndex);
  expect(res.EvalIDs).toHaveLength(1);

  const after = await blocked;
  expect(after.lastIndex).toBeGreaterThan(before.lastIndex);
  expect(after.value.DrainStrategy?.Deadline).toBe(3_600_000_000_000);
  expect(after.value.DrainStrategy?.IgnoreSystemJobs).toBe(true);
  expect(after.value.LastDrain?.Meta).toEqual({ reason: 'spot notice' });
  expect(after.value.SchedulingEligibility).toBe('ineligible');

  // Nomad refuses "eligible" while draining; the error keeps its HTTP status.
  const refused = await api.setEligibility(FIXTURE.nodeA, true).catch((err: unknown) => err);
  expect(errorCode(refused)).toBe('NC_NOMAD_API_STATUS');
  expect((refused as { status?: number }).status).toBe(400);

  await api.cancelDrain(FIXTURE.nodeA);
  const cancelled = await api.getNode(FIXTURE.nodeA);
  expect(cancelled.value.DrainStrategy).toBeNull();
  expect(cancelled.value.LastDrain?.Status).toBe('canceled');
  expect(cancelled.value.SchedulingEligibility).toBe('eligible');

  await api.setEligibility(FIXTURE.nodeB, false);
  expect((await api.getNode(FIXTURE.nodeB)).value.SchedulingEligibility).toBe('ineligible');
  await api.setEligibility(FIXTURE.nodeB, true);

  const report = await standIn.report();
  const drainBody = report.requests.find((r) => r.path.endsWith('/drain'))?.body;
  expect(JSON.parse(drainBody ?? 'null')).toEqual({
    NodeID: FIXTURE.nodeA,
    DrainSpec: { Deadline: 3_600_000_000_000, IgnoreSystemJobs: true },
    MarkEligible: false,
    Meta: { reason: 'spot notice' },
  });
  await expectNoContractFailures();
});

test('allocations: lineage (PreviousAllocation, NextAllocation, DesiredTransition), list and stop', async () => {
  const replacement = await api.getAllocation(FIXTURE.newAlloc);
  expect(replacement.value.PreviousAllocation).toBe(FIXTURE.oldAlloc);
  expect(replacement.value.TaskStates?.counter?.State).toBe('pending');

  const old = await api.getAllocation(FIXTURE.oldAlloc);
  expect(old.value.NextAllocation).toBe(FIXTURE.newAlloc);
  expect(old.value.DesiredTransition.Migrate).toBe(true);
  expect(old.value.DesiredStatus).toBe('stop');

  const list = await api.listAllocations({ taskStates: true });
  expect(list.value.map((a) => [a.ID, a.NextAllocation, a.JobType])).toEqual([
    [FIXTURE.oldAlloc, FIXTURE.newAlloc, 'service'],
    [FIXTURE.newAlloc, '', 'service'],
  ]);

  const stopped = await api.stopAllocation(FIXTURE.newAlloc);
  expect(stopped.EvalID).toMatch(/^e0000000-/);

  const missing = await api.getAllocation('00000000-0000-4000-8000-00000000dead').catch((err: unknown) => err);
  expect(errorCode(missing)).toBe('NC_NOMAD_API_NOT_FOUND');
  await expectNoContractFailures();
});

test('event stream: heartbeats skipped, resumed after a disconnect past the last index, no repeats', async () => {
  const controller = new AbortController();
  const frames: Events[] = [];
  const reconnects: number[] = [];
  for await (const frame of api.events({
    topics: { Node: ['*'], Allocation: [FIXTURE.newAlloc] },
    signal: controller.signal,
    backoffInitialMs: 50,
    onReconnect: ({ attempt }) => reconnects.push(attempt),
  })) {
    frames.push(frame);
    if (frame.Index === 12) controller.abort();
  }
  expect(frames.map((f) => f.Index)).toEqual([10, 11, 12]);
  expect(reconnects).toEqual([1]);
  const node = frames[0]?.Events[0];
  expect(node?.Topic).toBe('Node');
  expect(node?.Type).toBe('NodeDrain');
  expect((node?.Payload.Node as { ID?: string }).ID).toBe(FIXTURE.nodeA);
  const alloc = frames[1]?.Events[0];
  expect((alloc?.Payload.Allocation as { PreviousAllocation?: string }).PreviousAllocation).toBe(FIXTURE.oldAlloc);

  const report = await standIn.report();
  expect(report.streamIndexes).toEqual(['', '12']);
  const first = report.requests.find((r) => r.path === '/v1/event/stream');
  expect(new URLSearchParams(first?.query).getAll('topic')).toEqual(['Node:*', `Allocation:${FIXTURE.newAlloc}`]);
  await expectNoContractFailures();
});

test('jobs: parse, register (the Job decodes strictly into api.Job) and deregister', async () => {
  const job = await api.parseJob('job "example-counter" {}');
  expect(job.ID).toBe(FIXTURE.jobId);
  const registered = await api.registerJob(job);
  expect(registered.JobModifyIndex).toBeGreaterThan(0);
  const gone = await api.deregisterJob(FIXTURE.jobId, { purge: true });
  expect(gone.EvalID).toMatch(/^e0000000-/);
  await expectNoContractFailures();
});

test('dynamic node metadata: apply sets and unsets keys, read returns Meta / Dynamic / Static', async () => {
  await api.applyNodeMeta({ 'chain.risk': '0.91', 'chain.stale': 'x' }, FIXTURE.nodeA);
  const res = await api.applyNodeMeta({ 'chain.stale': null }, FIXTURE.nodeA);
  expect(res.Dynamic).toEqual({ 'chain.risk': '0.91' });
  const read = await api.readNodeMeta(FIXTURE.nodeA);
  expect(read.value.Meta).toEqual({ rack: 'r1', 'chain.risk': '0.91' });
  expect(read.value.Static).toEqual({ rack: 'r1' });
  await expectNoContractFailures();
});

test('scheduler configuration: read, then a check-and-set write that decodes strictly into api.SchedulerConfiguration', async () => {
  const read = await api.schedulerConfiguration();
  const config = read.value.SchedulerConfig;
  if (config === null) throw new Error('the stand-in answered no SchedulerConfig');
  expect(read.lastIndex).toBeGreaterThan(0);
  expect(config.PreemptionConfig).toEqual({
    SystemSchedulerEnabled: true,
    SysBatchSchedulerEnabled: false,
    BatchSchedulerEnabled: false,
    ServiceSchedulerEnabled: true,
  });
  const off = { ...config, PreemptionConfig: { ...config.PreemptionConfig, ServiceSchedulerEnabled: false } };
  expect((await api.setSchedulerConfiguration(off, { casIndex: config.ModifyIndex })).Updated).toBe(true);
  // The index moved with that write, so the same check-and-set no longer applies.
  expect((await api.setSchedulerConfiguration(config, { casIndex: config.ModifyIndex })).Updated).toBe(false);
  const after = (await api.schedulerConfiguration()).value.SchedulerConfig;
  expect(after?.PreemptionConfig.ServiceSchedulerEnabled).toBe(false);
  expect(after?.ModifyIndex).toBeGreaterThan(config.ModifyIndex);

  const put = (await standIn.report()).requests.filter((r) => r.path === '/v1/operator/scheduler/configuration');
  expect(put.map((r) => `${r.method} ${r.query}`)).toEqual([
    'GET ',
    `PUT cas=${config.ModifyIndex}`,
    `PUT cas=${config.ModifyIndex}`,
    'GET ',
  ]);
  await expectNoContractFailures();
});
