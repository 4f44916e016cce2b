import { status } from '@grpc/grpc-js';
import { MigrationMode, TaskState as SidecarTaskState } from '../../../proto/gen/chain/v1/sidecar';
import type { CheckpointInfo, StopTaskRequest, TakeOverRequest } from '../../../proto/gen/chain/v1/sidecar';
import {
  NetworkIsolationSpec_NetworkIsolationMode as NetworkMode,
  TaskState,
} from '../../../proto/gen/nomad/plugins/drivers/proto/driver';
import { SidecarError } from '../../../common/sidecar-api/errors';
import { decodeTaskState } from '../../../plugin/src/task-state';
import { rig, settle, taskConfig, taskDriverConfig, thrownCode } from './rig';

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('expected a rejection');
}

const OLD = 'a0000000-0000-4000-8000-000000000001';
const NEW = 'a0000000-0000-4000-8000-000000000002';

/** A checkpoint a predecessor handed over, filed under `handoverKey`. */
function handedOver(checkpointId: string, handoverKey: string): CheckpointInfo {
  return {
    checkpointId,
    handoverKey,
    source: { taskId: 'old', allocId: OLD, taskName: 'web', jobId: 'job', namespace: 'default' },
    manifestDigest: '',
    sizeBytes: 1,
    createdAtUnixMs: 0,
    spec: undefined,
    sourceNode: 'node-a',
  };
}

function migratingPair(r: ReturnType<typeof rig>): void {
  r.lookup.put({ id: OLD, nodeId: 'node-a', nextAllocation: NEW, migrate: true, desiredStatus: 'stop' });
  r.lookup.put({ id: NEW, nodeId: 'node-b', previousAllocation: OLD });
  r.lookup.nodes.set('node-b', { 'driver.chain.transfer_address': '198.18.0.3:7451' });
}

describe('StartTask', () => {
  it('starts cold with the allocation directories bound, and returns a recoverable handle', async () => {
    const r = rig({ withLookup: false });
    const config = taskConfig(OLD, 'web');
    config.networkIsolationSpec = {
      mode: NetworkMode.GROUP,
      path: '/var/run/netns/x',
      labels: {},
      hostsConfig: undefined,
    };
    const response = await r.driver.startTask({ task: config });

    const [start] = r.sidecar.called('takeOver') as TakeOverRequest[];
    expect(start?.identity).toEqual({
      taskId: `${OLD}_web_0a1b2c3d`,
      allocId: OLD,
      taskName: 'web',
      jobId: 'job',
      namespace: 'default',
    });
    expect(start?.spec).toMatchObject({
      argv: ['/bin/sleep', '60'],
      cwd: '/',
      allocDir: `/var/nomad/alloc/${OLD}/alloc`,
      localDir: `/var/nomad/alloc/${OLD}/web/local`,
      secretsDir: `/var/nomad/alloc/${OLD}/web/secrets`,
      memoryLimitBytes: 268435456,
      cpuShares: 512,
      networkNamespace: '/var/run/netns/x',
      env: { NOMAD_ALLOC_ID: OLD },
    });
    // Without Nomad's lineage, only a checkpoint already staged for this key is taken: no waiting.
    expect(start).toMatchObject({ handoverKey: `${OLD}/web`, waitMs: 0, coldStartFallback: true });
    expect(response.handle?.config).toBe(config);
    expect(response.handle?.state).toBe(TaskState.RUNNING);
    const state = decodeTaskState(response.handle?.version ?? 0, response.handle?.driverState ?? Buffer.alloc(0));
    expect(state).toEqual({
      sidecarTaskId: `${OLD}_web_0a1b2c3d`,
      startedAtUnixMs: 1_700_000_000_000,
      restoredFromCheckpoint: '',
      msgpackDriverConfig: Buffer.from(config.msgpackDriverConfig),
    });
    await settle();
    expect(r.events).toEqual([]);
  });

  it('never looks for a checkpoint when chain = false', async () => {
    const r = rig();
    await r.driver.startTask({ task: taskConfig(OLD, 'web', taskDriverConfig({ chain: false })) });
    expect(r.sidecar.called('takeOver')).toEqual([]);
    expect(r.sidecar.called('startTask')).toHaveLength(1);
  });

  it('restores the predecessor checkpoint of a migrated allocation and says so', async () => {
    const r = rig();
    migratingPair(r);
    r.sidecar.staged.set('ckpt-9', handedOver('ckpt-9', `${NEW}/web`));
    const config = taskConfig(NEW, 'web', taskDriverConfig({ checkpoint_wait: '5s' }));
    const response = await r.driver.startTask({ task: config });

    const [takeOver] = r.sidecar.called('takeOver') as TakeOverRequest[];
    expect(takeOver).toMatchObject({ handoverKey: `${NEW}/web`, waitMs: 5000, coldStartFallback: true });
    expect(takeOver?.spec?.allocDir).toBe(`/var/nomad/alloc/${NEW}/alloc`);
    expect(r.sidecar.called('startTask')).toEqual([]);
    expect(decodeTaskState(1, response.handle?.driverState ?? Buffer.alloc(0)).restoredFromCheckpoint).toBe('ckpt-9');
    await settle();
    expect(r.events.map((e) => [e.taskId, e.message])).toEqual([
      [config.id, `Restored from checkpoint ckpt-9 of allocation ${OLD}`],
    ]);
  });

  it('starts cold with an event when the checkpoint does not come, or its restore fails', async () => {
    const r = rig();
    migratingPair(r);
    const first = taskConfig(NEW, 'web');
    const cold = await r.driver.startTask({ task: first });
    expect(r.sidecar.called('takeOver')).toEqual([
      expect.objectContaining({ handoverKey: `${NEW}/web`, waitMs: 30_000 }),
    ]);
    expect(decodeTaskState(1, cold.handle?.driverState ?? Buffer.alloc(0)).restoredFromCheckpoint).toBe('');

    r.sidecar.staged.set('ckpt-1', handedOver('ckpt-1', `${NEW}/api`));
    r.sidecar.failNext(
      'restoreTask',
      new SidecarError('NC_RESTORE_FAILED', 'sidecar RestoreTask: criu said no', status.INTERNAL),
    );
    const second = taskConfig(NEW, 'api');
    const restoredCold = await r.driver.startTask({ task: second });
    expect(decodeTaskState(1, restoredCold.handle?.driverState ?? Buffer.alloc(0)).restoredFromCheckpoint).toBe('');
    expect(r.sidecar.staged.has('ckpt-1')).toBe(true);
    await settle();
    expect(r.events.map((e) => e.message)).toEqual([
      `No checkpoint from previous allocation ${OLD} within 30000 ms; started cold`,
      'Restore of checkpoint ckpt-1 failed (sidecar RestoreTask: criu said no); started cold',
    ]);
  });

  it('does not wait for a predecessor that was not migrating (a failed allocation rescheduled)', async () => {
    const r = rig();
    r.lookup.put({ id: OLD, desiredStatus: 'stop' });
    r.lookup.put({ id: NEW, previousAllocation: OLD });
    await r.driver.startTask({ task: taskConfig(NEW, 'web') });
    expect(r.sidecar.called('takeOver')).toEqual([expect.objectContaining({ handoverKey: `${NEW}/web`, waitMs: 0 })]);
    await settle();
    expect(r.events).toEqual([]);
  });

  it('rejects a second start of the same id, and a bad config before touching the sidecar', async () => {
    const r = rig();
    const config = taskConfig(OLD, 'web');
    await r.driver.startTask({ task: config });
    expect((await rejection(r.driver.startTask({ task: config }))).code).toBe('NC_PLUGIN_TASK_EXISTS');
    const bad = taskConfig(NEW, 'web', taskDriverConfig({ cwd: 'relative' }));
    expect(await rejection(r.driver.startTask({ task: bad }))).toMatchObject({ code: 'NC_PLUGIN_TASK_CONFIG_INVALID' });
    expect(r.sidecar.called('takeOver')).toHaveLength(1);
    expect((await rejection(r.driver.startTask({ task: undefined }))).code).toBe('NC_PLUGIN_REQUEST_INVALID');
  });
});

describe('StopTask', () => {
  it('hands a migrating allocation over to its replacement instead of killing it', async () => {
    const r = rig();
    migratingPair(r);
    const config = taskConfig(OLD, 'web', taskDriverConfig({ migration_mode: 'lazy' }));
    await r.driver.startTask({ task: config });
    await r.driver.stopTask({ taskId: config.id, timeout: { seconds: 5, nanos: 0 }, signal: 'SIGTERM' });

    // Post-copy cannot work under Nomad's drain (the replacement starts once this allocation ended).
    expect(r.sidecar.called('migrateToPeer')).toEqual([
      {
        taskId: `${OLD}_web_0a1b2c3d`,
        peerAddress: '198.18.0.3:7451',
        mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
        handoverKey: `${NEW}/web`,
      },
    ]);
    expect(r.sidecar.called('stopTask')).toEqual([]);
    await settle();
    expect(r.events.map((e) => e.message)).toEqual([`Handed over to allocation ${NEW} (frozen 5 ms, 1024 bytes sent)`]);
    expect(r.events[0]?.annotations).toMatchObject({ next_alloc_id: NEW, node_id: 'node-b', mode: 'stop-and-copy' });
    expect(r.events[0]?.annotations?.mode_fallback).toContain(
      'Nomad starts a replacement only after the previous allocation ended',
    );
  });

  it("stops a task whose allocation is not migrating, with Nomad's signal and timeout", async () => {
    const r = rig();
    r.lookup.put({ id: OLD, desiredStatus: 'stop' });
    const config = taskConfig(OLD, 'web');
    await r.driver.startTask({ task: config });
    await r.driver.stopTask({ taskId: config.id, timeout: { seconds: 2, nanos: 500_000_000 }, signal: 'SIGINT' });
    expect(r.sidecar.called('stopTask')).toEqual([
      { taskId: `${OLD}_web_0a1b2c3d`, signal: 'SIGINT', timeoutMs: 2500 },
    ]);
    expect(r.sidecar.called('migrateToPeer')).toEqual([]);
  });

  it('falls back to a stop, with an event, when the lineage or the hand-over fails', async () => {
    const r = rig();
    migratingPair(r);
    const config = taskConfig(OLD, 'web');
    await r.driver.startTask({ task: config });
    r.sidecar.failNext(
      'migrateToPeer',
      new SidecarError('NC_MIGRATION_STEP_FAILED', 'sidecar MigrateToPeer: peer down', status.INTERNAL),
    );
    await r.driver.stopTask({ taskId: config.id, timeout: undefined, signal: '' });
    expect((r.sidecar.called('stopTask') as StopTaskRequest[]).map((s) => s.taskId)).toEqual([`${OLD}_web_0a1b2c3d`]);

    const other = taskConfig(OLD, 'api');
    await r.driver.startTask({ task: other });
    r.lookup.failure = new Error('connection refused');
    await r.driver.stopTask({ taskId: other.id, timeout: undefined, signal: '' });
    expect(r.sidecar.called('stopTask')).toHaveLength(2);

    r.lookup.failure = undefined;
    r.lookup.nodes.set('node-b', {});
    const third = taskConfig(OLD, 'db');
    await r.driver.startTask({ task: third });
    await r.driver.stopTask({ taskId: third.id, timeout: undefined, signal: '' });
    expect(r.sidecar.called('stopTask')).toHaveLength(3);
    await settle();
    expect(r.events.map((e) => e.message)).toEqual([
      `Hand-over to allocation ${NEW} failed (sidecar MigrateToPeer: peer down); task stopped`,
      'Could not tell whether the allocation is migrating (connection refused); task stopped',
      `Could not tell whether the allocation is migrating (node node-b of allocation ${NEW} publishes no driver.chain.transfer_address); task stopped`,
    ]);
  });

  it('treats every stop as a plain stop without a Nomad API (nomad_address = "")', async () => {
    const r = rig({ withLookup: false });
    const config = taskConfig(OLD, 'web');
    await r.driver.startTask({ task: config });
    await r.driver.stopTask({ taskId: config.id, timeout: undefined, signal: '' });
    expect(r.sidecar.called('stopTask')).toHaveLength(1);
  });
});

describe('wait, inspect, destroy, recover', () => {
  it('WaitTask rides out an unreachable sidecar and returns the exit', async () => {
    const r = rig();
    const config = taskConfig(OLD, 'web');
    await r.driver.startTask({ task: config });
    r.sidecar.failNext('waitTask', new SidecarError('NC_SIDECAR_UNREACHABLE', 'down', status.UNAVAILABLE));
    const waiting = r.driver.waitTask({ taskId: config.id }, new AbortController().signal);
    await r.driver.stopTask({ taskId: config.id, timeout: undefined, signal: '' });
    expect(await waiting).toEqual({ result: { exitCode: 0, signal: 15, oomKilled: false }, err: '' });
    expect(r.sidecar.called('waitTask')).toHaveLength(2);
  });

  it('InspectTask always sets both timestamps, and reports a migrated task as exited', async () => {
    const r = rig();
    migratingPair(r);
    const config = taskConfig(OLD, 'web');
    await r.driver.startTask({ task: config });
    const running = await r.driver.inspectTask({ taskId: config.id });
    expect(running.task).toMatchObject({
      id: config.id,
      name: 'web',
      state: TaskState.RUNNING,
      completedAt: { seconds: 0, nanos: 0 },
    });
    expect(running.task?.startedAt).toEqual({ seconds: 1_700_000_000, nanos: 0 });
    r.clock.advance(1000);
    await r.driver.stopTask({ taskId: config.id, timeout: undefined, signal: '' });
    const moved = await r.driver.inspectTask({ taskId: config.id });
    expect(moved.task?.state).toBe(TaskState.EXITED);
    expect(moved.task?.completedAt).toEqual({ seconds: 1_700_000_001, nanos: 0 });
    expect(moved.driver?.attributes).toMatchObject({ migrated: 'true', sidecar_task_id: `${OLD}_web_0a1b2c3d` });
    expect(r.sidecar.tasks.get(`${OLD}_web_0a1b2c3d`)?.state).toBe(SidecarTaskState.TASK_STATE_MIGRATED);
  });

  it('DestroyTask refuses a running task without force and is idempotent', async () => {
    const r = rig();
    const config = taskConfig(OLD, 'web');
    await r.driver.startTask({ task: config });
    expect((await rejection(r.driver.destroyTask({ taskId: config.id, force: false }))).code).toBe(
      'NC_PLUGIN_TASK_RUNNING',
    );
    await r.driver.destroyTask({ taskId: config.id, force: true });
    await r.driver.destroyTask({ taskId: config.id, force: true });
    expect(r.store.size).toBe(0);
    expect((await rejection(r.driver.inspectTask({ taskId: config.id }))).code).toBe('NC_PLUGIN_TASK_NOT_FOUND');
  });

  // Issue #5: Nomad v1.6.5 persists no driver config, so after a client restart RecoverTask's TaskConfig has none.
  it('RecoverTask decodes the driver config kept in driver_state when Nomad hands back none', async () => {
    const first = rig();
    const config = taskConfig(OLD, 'web');
    const { handle } = await first.driver.startTask({ task: config });
    const fresh = rig();
    Object.assign(fresh.sidecar, { tasks: first.sidecar.tasks });
    const afterRestart = { ...handle!, config: { ...handle!.config!, msgpackDriverConfig: Buffer.alloc(0) } };
    await fresh.driver.recoverTask({ taskId: '', handle: afterRestart });
    expect((await fresh.driver.inspectTask({ taskId: config.id })).task?.state).toBe(TaskState.RUNNING);
  });

  // Issue #5: after a failed recovery Nomad destroys (force) a task the plugin holds no handle for.
  it('DestroyTask with force removes the sidecar task of a handle it does not hold', async () => {
    const first = rig();
    const config = taskConfig(OLD, 'web');
    await first.driver.startTask({ task: config });
    const fresh = rig();
    Object.assign(fresh.sidecar, { tasks: first.sidecar.tasks });
    await fresh.driver.destroyTask({ taskId: config.id, force: true });
    expect(fresh.sidecar.called('destroyTask')).toEqual([{ taskId: `${OLD}_web_0a1b2c3d`, force: true }]);
    await fresh.driver.destroyTask({ taskId: config.id, force: true });
  });

  it('RecoverTask re-attaches a fresh driver from the stored handle, and refuses a vanished task', async () => {
    const first = rig();
    const config = taskConfig(OLD, 'web');
    const { handle } = await first.driver.startTask({ task: config });
    const fresh = rig();
    // The sidecar outlives the plugin: the fresh driver talks to the same tasks.
    Object.assign(fresh.sidecar, { tasks: first.sidecar.tasks });
    await fresh.driver.recoverTask({ taskId: '', handle });
    expect((await fresh.driver.inspectTask({ taskId: config.id })).task?.state).toBe(TaskState.RUNNING);

    const empty = rig();
    expect(await rejection(empty.driver.recoverTask({ taskId: '', handle }))).toMatchObject({
      code: 'NC_PLUGIN_TASK_NOT_FOUND',
    });
    const corrupt = { ...handle!, driverState: Buffer.from('{') };
    expect((await rejection(empty.driver.recoverTask({ taskId: '', handle: corrupt }))).code).toBe(
      'NC_PLUGIN_TASK_STATE_INVALID',
    );
    expect((await rejection(empty.driver.recoverTask({ taskId: '', handle: undefined }))).code).toBe(
      'NC_PLUGIN_REQUEST_INVALID',
    );
  });

  it('streams stats each interval until cancelled', async () => {
    const r = rig();
    const config = taskConfig(OLD, 'web');
    await r.driver.startTask({ task: config });
    const stop = new AbortController();
    const samples = [];
    for await (const sample of r.driver.taskStats(
      { taskId: config.id, collectionInterval: { seconds: 1, nanos: 0 } },
      stop.signal,
    )) {
      samples.push(sample);
      if (samples.length === 3) stop.abort();
    }
    expect(samples).toHaveLength(3);
    expect(samples[0]?.stats?.aggResourceUsage?.memory?.rss).toBe(1024);
    // One collection interval between samples.
    expect(r.clock.now()).toBeGreaterThanOrEqual(1_700_000_002_000);
  });

  it('answers UNIMPLEMENTED-coded errors for network RPCs and serves exec', async () => {
    const r = rig();
    expect(thrownCode(() => r.driver.createNetwork())).toBe('NC_PLUGIN_UNSUPPORTED');
    const config = taskConfig(OLD, 'web');
    await r.driver.startTask({ task: config });
    const exec = await r.driver.execTask({
      taskId: config.id,
      command: ['echo', 'hi'],
      timeout: { seconds: 3, nanos: 0 },
    });
    expect(Buffer.from(exec.stdout).toString()).toBe('echo hi');
    expect(r.sidecar.called('execTask')).toEqual([
      { taskId: `${OLD}_web_0a1b2c3d`, argv: ['echo', 'hi'], timeoutMs: 3000 },
    ]);
  });
});
