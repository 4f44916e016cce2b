import pino from 'pino';
import { NomadChainError, errorCode } from '../../../../common/errors';
import { MemoryMigrationJournal } from '../../../../local/migration/migration-journal';
import { backgroundKey, filesAheadKey } from '../../../../common/checkpoint-keys';
import { FORWARD_STEPS, type MigrationRecord, type TaskSide } from '../../../../local/migration/migration-record';
import { LAZY_MIN_BYTES, MigrationSequence } from '../../../../local/migration/migration-sequence';
import { LazyPages, MigrationMode, TaskSpec, TaskState } from '../../../../proto/gen/chain/v1/sidecar';
import { FakeClock } from '../../../fakes/fake-clock';
import { FakeRouter } from '../../../fakes/fake-router';
import { FakeScheduler } from '../../../fakes/fake-scheduler';
import { FakeSidecarApi, FakeSidecarCluster } from '../../../fakes/fake-sidecar-api';

const log = pino({ level: 'silent' });

class Crash extends Error {}

function setup() {
  const cluster = new FakeSidecarCluster();
  cluster.add('a', '10.0.0.1:7450');
  cluster.add('b', '10.0.0.2:7450');
  const router = new FakeRouter();
  const scheduler = new FakeScheduler();
  const journal = new MemoryMigrationJournal();
  const clock = new FakeClock();
  return { cluster, router, scheduler, journal, clock };
}

type Env = ReturnType<typeof setup>;

interface BuddyOptions {
  readonly down?: ReadonlySet<string>;
  readonly sideOn?: (record: MigrationRecord, node: string) => TaskSide;
}

function sequence(env: Env, afterStep?: (r: MigrationRecord) => void | Promise<void>, buddy: BuddyOptions = {}) {
  return new MigrationSequence({
    journal: env.journal,
    sidecars: env.cluster,
    router: env.router,
    scheduler: env.scheduler,
    clock: env.clock,
    log,
    checkpointWaitMs: 1000,
    nodes: () => [...env.cluster.sidecars.keys()],
    nodeDown: (node) => buddy.down?.has(node) === true,
    ...(buddy.sideOn ? { sideOn: buddy.sideOn } : {}),
    ...(afterStep ? { afterStep } : {}),
  });
}

/** A task spec that only says where its allocation directory is. */
function specIn(allocDir: string): TaskSpec {
  return TaskSpec.fromPartial({ cwd: '/', allocDir });
}

async function plan(env: Env): Promise<MigrationRecord> {
  const identity = { taskId: 'web-1', allocId: '', taskName: 'web', jobId: 'web', namespace: 'default' };
  await env.cluster.sidecar('a').startTask({ identity, spec: undefined });
  const source = { service: 'web', id: 'web-1', address: '10.0.0.1', port: 8080, node: 'a' };
  await env.router.joinRotation(source);
  return {
    id: 'm1',
    taskKey: 'web',
    handoverKey: 'web-2/web',
    mode: MigrationMode.MIGRATION_MODE_AUTO,
    source: {
      node: 'a',
      taskId: 'web-1',
      identity,
      spec: specIn('/a'),
      instance: source,
    },
    target: {
      node: 'b',
      taskId: 'web-2',
      identity: { ...identity, taskId: 'web-2' },
      spec: specIn('/b'),
      instance: { ...source, id: 'web-2', address: '10.0.0.2', node: 'b' },
    },
    targetTransferAddress: '10.0.0.2:7450',
    step: 'planned',
    createdAtUnixMs: env.clock.now(),
    updatedAtUnixMs: env.clock.now(),
    stepsAtUnixMs: {},
  };
}

function expectOneInstance(env: Env, node: string): void {
  const running = env.cluster.running('web');
  expect(running.map((t) => t.nodeName)).toEqual([node]);
  expect([...env.router.inRotation.values()].map((i) => i.node)).toEqual([node]);
}

describe('MigrationSequence', () => {
  it('moves a task: source leaves rotation, target restores and joins, source is cleaned up', async () => {
    const env = setup();
    const steps: string[] = [];
    const done = await sequence(env, (r) => void steps.push(r.step)).run(await plan(env));
    expect(done.step).toBe('done');
    expect(steps).toEqual(FORWARD_STEPS.slice(1));
    expectOneInstance(env, 'b');
    expect(env.cluster.sidecar('a').tasks.size).toBe(0);
    expect(env.cluster.restores).toBe(1);
    expect(env.scheduler.placements.get('web')).toEqual({ node: 'b', taskId: 'web-2' });
  });

  it.each(FORWARD_STEPS.slice(1, -1))(
    'resumes after a crash right after "%s" with exactly one instance and one restore',
    async (crashStep) => {
      const env = setup();
      const record = await plan(env);
      await expect(
        sequence(env, (r) => {
          if (r.step === crashStep) throw new Crash(`crash after ${crashStep}`);
        }).run(record),
      ).rejects.toBeInstanceOf(Crash);
      const [resumed] = await sequence(env).resumeAll();
      expect(resumed?.step).toBe('done');
      expectOneInstance(env, 'b');
      expect(env.cluster.restores).toBe(1);
    },
  );

  it('goes forward when the hand-over answer is lost but the checkpoint arrived', async () => {
    const env = setup();
    const record = await plan(env);
    const source = env.cluster.sidecar('a');
    const migrate = source.migrateToPeer.bind(source);
    source.migrateToPeer = async (req) => {
      await migrate(req);
      throw new Error('connection reset after the dump');
    };
    const result = await sequence(env).run(record);
    expect(result.step).toBe('done');
    expectOneInstance(env, 'b');
    expect(env.cluster.restores).toBe(1);
  });

  it('resumes a crash between the dump and its journal entry without dumping twice', async () => {
    const env = setup();
    const record = await plan(env);
    await expect(
      sequence(env, (r) => {
        if (r.step === 'left-rotation') throw new Crash('crash before the hand-over is journaled');
      }).run(record),
    ).rejects.toBeInstanceOf(Crash);
    // The dump went through just before the crash; the journal still says left-rotation.
    await env.cluster.sidecar('a').migrateToPeer({
      taskId: 'web-1',
      peerAddress: '10.0.0.2:7450',
      mode: MigrationMode.MIGRATION_MODE_AUTO,
      handoverKey: 'web-2/web',
    });
    const migrate = jest.spyOn(env.cluster.sidecar('a'), 'migrateToPeer');
    const [resumed] = await sequence(env).resumeAll();
    expect(resumed?.step).toBe('done');
    expect(migrate).not.toHaveBeenCalled();
    expectOneInstance(env, 'b');
    expect(env.cluster.restores).toBe(1);
  });

  it('rolls back when the hand-over fails while the source still runs', async () => {
    const env = setup();
    env.cluster
      .sidecar('a')
      .failNext('migrateToPeer', new NomadChainError('NC_TRANSFER_PEER_UNREACHABLE', 'peer went away'));
    const result = await sequence(env).run(await plan(env));
    expect(result.step).toBe('rolled-back');
    expect(result.error?.code).toBe('NC_TRANSFER_PEER_UNREACHABLE');
    expectOneInstance(env, 'a');
  });

  // Issue #10: most failures should happen before the freeze, not after it.
  it('finds a dead target before anything stops: the source never leaves rotation', async () => {
    const env = setup();
    env.cluster.sidecar('b').dead = true;
    const migrate = jest.spyOn(env.cluster.sidecar('a'), 'migrateToPeer');
    const result = await sequence(env).run(await plan(env));
    expect(result.step).toBe('rolled-back');
    expect(result.error).toMatchObject({ code: 'NC_SIDECAR_UNREACHABLE', step: 'planned' });
    expect(migrate).not.toHaveBeenCalled();
    expectOneInstance(env, 'a');
  });

  it("releases the source's own copy once the target runs", async () => {
    const env = setup();
    const result = await sequence(env).run(await plan(env));
    expect(result.step).toBe('done');
    expect(env.cluster.sidecar('a').ownCopies.size).toBe(0);
  });

  // Issue #10: a restore that fails on the target after the freeze must not lose the task.
  it("restores the source from its own copy when the target's restore fails, and forgets the target's", async () => {
    const env = setup();
    env.cluster.sidecar('b').staged.set('ahead-1', {
      checkpointId: 'ahead-1',
      handoverKey: filesAheadKey('web-1'),
      source: undefined,
      manifestDigest: 'digest',
      sizeBytes: 1024,
      createdAtUnixMs: env.clock.now(),
      spec: undefined,
      sourceNode: 'a',
    });
    env.cluster.sidecar('b').failNext('restoreTask', new NomadChainError('NC_RESTORE_FAILED', "Can't open file"));
    const result = await sequence(env).run(await plan(env));
    expect(result.step).toBe('rolled-back');
    expect(result.error).toMatchObject({ code: 'NC_RESTORE_FAILED', step: 'handed-over' });
    expectOneInstance(env, 'a');
    expect(env.cluster.sidecar('b').staged.size).toBe(0);
    expect(env.cluster.sidecar('a').ownCopies.size).toBe(0);
  });

  it('asks a target that did not answer to forget its staged copy again, in the background, until it does', async () => {
    const env = setup();
    const b = env.cluster.sidecar('b');
    b.failNext('restoreTask', new NomadChainError('NC_RESTORE_FAILED', "Can't open file"));
    b.failNext('deleteCheckpoint');
    b.failNext('deleteCheckpoint');
    const result = await sequence(env).run(await plan(env));
    expect(result.step).toBe('rolled-back');
    expectOneInstance(env, 'a');
    await new Promise((resolve) => setImmediate(resolve));
    expect(b.called('deleteCheckpoint')).toHaveLength(3);
    expect(b.staged.size).toBe(0);
    expect(env.clock.sleeps.slice(-2)).toEqual([1_000, 2_000]);
  });

  it('restores the source in place when the target cannot restore', async () => {
    const env = setup();
    env.cluster.sidecar('b').failNext('restoreTask');
    env.cluster.sidecar('b').failNext('inspectTask');
    const result = await sequence(env).run(await plan(env));
    expect(result.step).toBe('rolled-back');
    expectOneInstance(env, 'a');
    expect(env.cluster.sidecar('a').tasks.get('web-1')?.restoredFromCheckpoint).toMatch(/^ckpt-a-/);
  });

  it('leaves a restorable checkpoint, never neither, when both restores fail', async () => {
    const env = setup();
    const record = await plan(env);
    env.cluster.sidecar('b').failNext('restoreTask');
    env.cluster.sidecar('a').failNext('restoreTask');
    const result = await sequence(env).run(record);
    expect(result.step).toBe('failed');
    expect(env.cluster.running('web')).toEqual([]);
    expect([...env.cluster.sidecar('b').staged.values()].map((c) => c.handoverKey)).toEqual(['web-2/web']);
  });

  it('retries a rotation change after the target runs, never rolling back', async () => {
    const env = setup();
    const record = await plan(env);
    env.router.failJoins = 2;
    const result = await sequence(env).run(record);
    expect(result.step).toBe('done');
    expectOneInstance(env, 'b');
  });

  it('retries, once restarted, a rollback that failed on a dead source sidecar: the source serves again or moves', async () => {
    const env = setup();
    const record = await plan(env);
    const failed = await sequence(env, (r) => {
      if (r.step === 'left-rotation') env.cluster.sidecar('a').dead = true;
    }).run(record);
    expect(failed).toMatchObject({ step: 'failed', error: { code: 'NC_SIDECAR_UNREACHABLE', step: 'left-rotation' } });
    // Out of rotation while its sidecar is down: the task itself still runs there.
    expect(env.router.inRotation.size).toBe(0);
    env.cluster.sidecar('a').dead = false;
    const [resumed] = await sequence(env).resumeAll();
    expect(resumed?.step).toBe('done');
    expect(resumed?.error).toBeUndefined();
    expectOneInstance(env, 'b');
    expect(env.cluster.restores).toBe(1);
  });

  it('retries, once restarted, a clean-up that failed on a dead source sidecar', async () => {
    const env = setup();
    const record = await plan(env);
    const failed = await sequence(env, (r) => {
      if (r.step === 'joined-rotation') env.cluster.sidecar('a').dead = true;
    }).run(record);
    expect(failed).toMatchObject({
      step: 'failed',
      error: { code: 'NC_SIDECAR_UNREACHABLE', step: 'joined-rotation' },
    });
    env.cluster.sidecar('a').dead = false;
    const [resumed] = await sequence(env).resumeAll();
    expect(resumed?.step).toBe('done');
    expectOneInstance(env, 'b');
    expect(env.cluster.sidecar('a').tasks.size).toBe(0);
  });

  it('brings the source back from its own copy when the restored task is lost with its node before the clean-up', async () => {
    const env = setup();
    const record = await plan(env);
    const result = await sequence(env, (r) => {
      if (r.step === 'restored') env.cluster.sidecar('b').tasks.delete('web-2');
    }).run(record);
    expect(result).toMatchObject({
      step: 'rolled-back',
      error: { code: 'NC_MIGRATION_TARGET_LOST', step: 'joined-rotation' },
    });
    expectOneInstance(env, 'a');
    expect(env.cluster.sidecar('a').tasks.get('web-1')?.restoredFromCheckpoint).toMatch(/^ckpt-a-/);
  });

  it('never revives the source while the target cannot be asked (it may still run the task)', async () => {
    const env = setup();
    const record = await plan(env);
    const result = await sequence(env, (r) => {
      if (r.step === 'joined-rotation') env.cluster.sidecar('b').dead = true;
    }).run(record);
    expect(result).toMatchObject({ step: 'failed', error: { code: 'NC_SIDECAR_UNREACHABLE' } });
    expect(env.cluster.sidecar('a').tasks.get('web-1')?.state).toBe(TaskState.TASK_STATE_MIGRATED);
    env.cluster.sidecar('b').dead = false;
    const [resumed] = await sequence(env).resumeAll();
    expect(resumed?.step).toBe('done');
    expectOneInstance(env, 'b');
  });

  it('leaves any other failure to an operator, even after a restart', async () => {
    const env = setup();
    const record = await plan(env);
    env.router.failJoins = 10;
    expect((await sequence(env).run(record)).step).toBe('failed');
    env.router.failJoins = 0;
    expect(await sequence(env).resumeAll()).toEqual([]);
  });

  it('calls an operator when a post-restore step keeps failing, with the target still running', async () => {
    const env = setup();
    const record = await plan(env);
    env.router.failJoins = 10;
    const result = await sequence(env).run(record);
    expect(result.step).toBe('failed');
    expect(env.cluster.running('web').map((t) => t.nodeName)).toEqual(['b']);
    expect(env.cluster.sidecar('a').tasks.get('web-1')?.state).toBe(TaskState.TASK_STATE_MIGRATED);
  });
});

/** Files a background checkpoint of the source's task on `node`, taken `ageMs` before the fake clock's now. */
function background(env: Env, node: string, ageMs: number): string {
  const checkpointId = `bg-${node}-${ageMs}`;
  env.cluster.sidecar(node).staged.set(checkpointId, {
    checkpointId,
    handoverKey: backgroundKey('web-1'),
    source: undefined,
    manifestDigest: 'digest',
    sizeBytes: 1024,
    createdAtUnixMs: env.clock.now() - ageMs,
    spec: undefined,
    sourceNode: 'a',
  });
  return checkpointId;
}

/** The source node dies at once, as a pre-emption takes it: its sidecar stops answering, its task is gone. */
function killSource(env: Env): void {
  env.cluster.sidecar('a').dead = true;
  env.cluster.sidecar('a').tasks.clear();
}

// Issue #13's failing cell, issue #12 item 2's source failure: the source is gone after it left rotation and
// before any hand-over reached the target. The task comes back from its buddy's newest background checkpoint,
// never while the source could still run it.
describe('MigrationSequence: a source gone before the hand-over', () => {
  it('waits for the source node to answer, then restores the newest background checkpoint on the buddy', async () => {
    const env = setup();
    const record = await plan(env);
    const older = background(env, 'b', 9000);
    env.cluster.add('c', '10.0.0.3:7450');
    const newest = background(env, 'b', 2000);
    env.cluster.sidecar('b').staged.delete(older);
    background(env, 'c', 4000);
    const failed = await sequence(env, (r) => {
      if (r.step === 'left-rotation') killSource(env);
    }).run(record);
    // No answer from the source is no proof it stopped: nothing is restored yet.
    expect(failed).toMatchObject({ step: 'failed', error: { code: 'NC_SIDECAR_UNREACHABLE', step: 'left-rotation' } });
    expect(env.cluster.restores).toBe(0);

    // The node comes back empty: its own sidecar says the task is not there.
    env.cluster.sidecar('a').dead = false;
    const [resumed] = await sequence(env).resumeAll();
    expect(resumed).toMatchObject({
      step: 'done',
      target: { node: 'b' },
      restoredFromBuddy: { node: 'b', checkpointId: newest, ageMs: 2000, fencedBy: 'source-reports-gone' },
    });
    expectOneInstance(env, 'b');
    expect(env.cluster.restores).toBe(1);
    expect(env.cluster.sidecar('b').tasks.get('web-2')?.restoredFromCheckpoint).toBe(newest);
    // The restored checkpoint is dropped on the buddy: the dead source will never forget it there.
    expect(env.cluster.sidecar('b').staged.has(newest)).toBe(false);
    expect(env.scheduler.placements.get('web')).toEqual({ node: 'b', taskId: 'web-2' });
  });

  it('restores at once when the scheduler killed the source node itself (its fence)', async () => {
    const env = setup();
    const record = await plan(env);
    const checkpointId = background(env, 'b', 1500);
    const result = await sequence(
      env,
      (r) => {
        if (r.step === 'left-rotation') killSource(env);
      },
      { down: new Set(['a']) },
    ).run(record);
    expect(result).toMatchObject({
      step: 'failed',
      error: { code: 'NC_SIDECAR_UNREACHABLE', step: 'joined-rotation' },
    });
    expect(result.restoredFromBuddy).toEqual({
      node: 'b',
      checkpointId,
      checkpointAtUnixMs: expect.any(Number) as number,
      ageMs: 1500,
      fencedBy: 'node-down',
    });
    // Restored and serving; only the dead source's clean-up waits for its node.
    expectOneInstance(env, 'b');
    expect(env.cluster.restores).toBe(1);
  });

  it('never restores while the source does not answer and no one says its node is dead', async () => {
    const env = setup();
    const record = await plan(env);
    background(env, 'b', 1000);
    const result = await sequence(env, (r) => {
      if (r.step === 'left-rotation') env.cluster.sidecar('a').dead = true;
    }).run(record);
    expect(result.step).toBe('failed');
    expect(result.restoredFromBuddy).toBeUndefined();
    expect(env.cluster.restores).toBe(0);
    // Cut off, not dead: it still runs the task, the one copy.
    expect(env.cluster.running('web').map((t) => t.nodeName)).toEqual(['a']);
  });

  it('restores on the buddy when the buddy is not the target, its side made by the scheduler', async () => {
    const env = setup();
    env.cluster.add('c', '10.0.0.3:7450');
    const record = await plan(env);
    background(env, 'c', 3000);
    const sideOn = (r: MigrationRecord, node: string): TaskSide => ({
      ...r.target,
      node,
      spec: { ...r.target.spec, allocDir: '/c' },
      instance: { ...r.target.instance, node, address: '10.0.0.3' },
    });
    const result = await sequence(
      env,
      (r) => {
        if (r.step === 'left-rotation') killSource(env);
      },
      { down: new Set(['a']), sideOn },
    ).run(record);
    expect(result.restoredFromBuddy).toMatchObject({ node: 'c', ageMs: 3000 });
    expect(result.target).toMatchObject({ node: 'c', spec: { allocDir: '/c' } });
    expectOneInstance(env, 'c');
  });

  it('calls an operator when no node holds a background checkpoint: nothing is started', async () => {
    const env = setup();
    const record = await plan(env);
    env.cluster.sidecar('a').dead = true;
    env.cluster.sidecar('a').tasks.clear();
    env.cluster.sidecar('a').dead = false;
    const result = await sequence(env, undefined, {}).run({ ...record, step: 'left-rotation' });
    expect(result).toMatchObject({
      step: 'failed',
      error: { code: 'NC_MIGRATION_NO_BACKGROUND_CHECKPOINT', step: 'left-rotation' },
    });
    expect(env.cluster.running('web')).toEqual([]);
    expect(await sequence(env).resumeAll()).toEqual([]);
  });

  it.each(['restoring-from-buddy', 'restored'] as const)(
    'resumes a crash right after "%s" with exactly one restore of the background checkpoint',
    async (crashStep) => {
      const env = setup();
      const record = await plan(env);
      background(env, 'b', 1000);
      await expect(
        sequence(
          env,
          (r) => {
            if (r.step === 'left-rotation') killSource(env);
            if (r.step === crashStep) throw new Crash(`crash after ${crashStep}`);
          },
          { down: new Set(['a']) },
        ).run(record),
      ).rejects.toThrow(Crash);
      env.cluster.sidecar('a').dead = false;
      const [resumed] = await sequence(env).resumeAll();
      expect(resumed?.step).toBe('done');
      expectOneInstance(env, 'b');
      expect(env.cluster.restores).toBe(1);
    },
  );
});

/**
 * Post-copy on the fake source: the images reach the target at once; the hand-over settles when the target's
 * restore has pulled every page (`complete`, the default on restore) or rejects (`fail`), as the sidecar's lazy
 * dump does: once pages flowed (NC_LAZY_PAGES_FAILED) it holds the source frozen, before that it resumes it.
 * Other modes are the fake's own.
 */
function lazySource(env: Env, onRestore: 'complete' | 'none' = 'complete') {
  const a = env.cluster.sidecar('a');
  const b = env.cluster.sidecar('b');
  const window: { complete(): void; fail(error: Error): void } = { complete: () => undefined, fail: () => undefined };
  a.features = async () => ({ ...(await FakeSidecarApi.prototype.features.call(a)), lazyPages: true });
  a.migrateToPeer = (request) => {
    if (request.mode !== MigrationMode.MIGRATION_MODE_LAZY)
      return FakeSidecarApi.prototype.migrateToPeer.call(a, request);
    return new Promise((resolve, reject) => {
      const task = a.tasks.get(request.taskId);
      if (task === undefined) return reject(new NomadChainError('NC_TASK_NOT_FOUND', 'no task'));
      const checkpoint = {
        checkpointId: 'lazy-1',
        handoverKey: request.handoverKey,
        source: task.identity,
        manifestDigest: 'digest',
        sizeBytes: 64,
        createdAtUnixMs: env.clock.now(),
        spec: undefined,
        sourceNode: 'a',
      };
      b.staged.set(checkpoint.checkpointId, checkpoint);
      window.complete = () => {
        env.clock.advance(700);
        a.tasks.set(request.taskId, { ...task, state: TaskState.TASK_STATE_MIGRATED });
        resolve({
          checkpoint,
          modeUsed: MigrationMode.MIGRATION_MODE_LAZY,
          wireBytes: 64,
          freezeMs: 90,
          fallbackReason: '',
          fileBytes: 0,
        });
      };
      window.fail = (error) => {
        const held = errorCode(error) === 'NC_LAZY_PAGES_FAILED';
        a.tasks.set(request.taskId, {
          ...task,
          state: held ? TaskState.TASK_STATE_HELD : TaskState.TASK_STATE_RUNNING,
        });
        reject(error);
      };
    });
  };
  if (onRestore === 'complete') {
    afterTargetRestore(env, (r) => {
      if (r.checkpointId === 'lazy-1') window.complete();
    });
  }
  return window;
}

/** The target's restore does what a real one does, then `then` (a fault of the window) strikes. */
function afterTargetRestore(env: Env, then: (request: Parameters<FakeSidecarApi['restoreTask']>[0]) => void): void {
  const b = env.cluster.sidecar('b');
  b.restoreTask = async (request) => {
    const info = await FakeSidecarApi.prototype.restoreTask.call(b, request);
    then(request);
    return info;
  };
}

function withRss(env: Env, bytes: number): void {
  Object.assign(env.cluster.sidecar('a'), {
    taskStats: async () => ({
      timestampUnixMs: env.clock.now(),
      memoryRssBytes: bytes,
      memoryUsageBytes: bytes,
      memoryMaxUsageBytes: bytes,
      cpuPercent: 0,
      cpuTotalNs: 0,
      pids: [],
    }),
  });
}

// Issue #12 item 2: post-copy through the sequence; its danger window bounded and in the record.
describe('MigrationSequence: post-copy', () => {
  it('chooses post-copy automatically for a large task where both nodes offer lazy pages, stop-and-copy otherwise', async () => {
    const env = setup();
    lazySource(env);
    withRss(env, LAZY_MIN_BYTES);
    const moved = await sequence(env).run(await plan(env));
    expect(moved).toMatchObject({ step: 'done', mode: MigrationMode.MIGRATION_MODE_LAZY, lazyWindowMs: 700 });
    expect(moved.modeReason).toMatch(/at least/);
    expectOneInstance(env, 'b');

    const small = setup();
    lazySource(small);
    withRss(small, LAZY_MIN_BYTES - 1);
    const copied = await sequence(small).run(await plan(small));
    expect(copied).toMatchObject({ step: 'done', mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY });
    expect(copied.lazyWindowMs).toBeUndefined();
  });

  it('keeps a mode asked for (the per-service override), whatever the size', async () => {
    const env = setup();
    lazySource(env);
    withRss(env, 1);
    const record = { ...(await plan(env)), mode: MigrationMode.MIGRATION_MODE_LAZY };
    expect(await sequence(env).run(record)).toMatchObject({ step: 'done', modeReason: 'asked for', lazyWindowMs: 700 });
    expectOneInstance(env, 'b');
  });

  it('kills the target copy first when the window fails, then tells the held source to run again', async () => {
    const env = setup();
    const lazy = lazySource(env, 'none');
    const a = env.cluster.sidecar('a');
    const b = env.cluster.sidecar('b');
    const order: string[] = [];
    const destroy = b.destroyTask.bind(b);
    b.destroyTask = async (r) => {
      order.push(`destroy ${r.taskId} (source ${TaskState[a.tasks.get('web-1')?.state ?? 0]})`);
      return destroy(r);
    };
    const resume = a.resumeTask.bind(a);
    a.resumeTask = async (taskId) => {
      order.push(`resume ${taskId} (target copy ${b.tasks.has('web-2') ? 'there' : 'gone'})`);
      return resume(taskId);
    };
    afterTargetRestore(env, () => {
      // The target's page daemon dies (or the source's dump): the page stream breaks, the source is held.
      lazy.fail(new NomadChainError('NC_LAZY_PAGES_FAILED', 'daemon gone'));
    });
    const result = await sequence(env).run({ ...(await plan(env)), mode: MigrationMode.MIGRATION_MODE_LAZY });
    expect(result).toMatchObject({ step: 'rolled-back', error: { code: 'NC_LAZY_PAGES_FAILED', step: 'handed-over' } });
    expect(order[0]).toBe('destroy web-2 (source TASK_STATE_HELD)');
    expect(order.at(-1)).toBe('resume web-1 (target copy gone)');
    expectOneInstance(env, 'a');
  });

  it('a restarted sequence finds the source held: kills the target copy, then resumes the source', async () => {
    const env = setup();
    const lazy = lazySource(env, 'none');
    const a = env.cluster.sidecar('a');
    const b = env.cluster.sidecar('b');
    let crash = true;
    afterTargetRestore(env, () => {
      lazy.fail(new NomadChainError('NC_LAZY_PAGES_FAILED', 'dump killed'));
    });
    // The controller dies right after the window opened: the held source and the target copy outlive it.
    const record = { ...(await plan(env)), mode: MigrationMode.MIGRATION_MODE_LAZY };
    const first = sequence(env, async (r) => {
      if (crash && r.step === 'handed-over') {
        crash = false;
        await b.restoreTask({ identity: r.target.identity, checkpointId: r.checkpointId ?? '', spec: r.target.spec });
        throw new Error('controller crashed');
      }
    });
    await expect(first.run(record)).rejects.toThrow('controller crashed');
    expect(a.tasks.get('web-1')?.state).toBe(TaskState.TASK_STATE_HELD);
    expect(b.tasks.get('web-2')?.state).toBe(TaskState.TASK_STATE_RUNNING);
    const [result] = await sequence(env).resumeAll();
    expect(result).toMatchObject({ step: 'rolled-back' });
    expectOneInstance(env, 'a');
  });

  it('restores the buddy checkpoint when the source dies in the window, the target copy killed first', async () => {
    const env = setup();
    const lazy = lazySource(env, 'none');
    background(env, 'b', 2500);
    const b = env.cluster.sidecar('b');
    afterTargetRestore(env, (r) => {
      if (r.checkpointId === 'lazy-1') {
        lazy.fail(new NomadChainError('NC_SIDECAR_UNREACHABLE', 'source gone'));
        killSource(env);
      }
    });
    const result = await sequence(env, undefined, { down: new Set(['a']) }).run({
      ...(await plan(env)),
      mode: MigrationMode.MIGRATION_MODE_LAZY,
    });
    expect(result.restoredFromBuddy).toMatchObject({ node: 'b', ageMs: 2500, fencedBy: 'node-down' });
    expect(b.tasks.get('web-2')?.restoredFromCheckpoint).toBe('bg-b-2500');
    expect(env.cluster.running('web').map((t) => t.nodeName)).toEqual(['b']);
    // Neither the spent background copy nor the window's images (no memory in them) are left on the target.
    expect([...b.staged.keys()]).toEqual([]);
  });

  it('a source whose node went unannounced in the window is retried once it answers: the buddy restores', async () => {
    const env = setup();
    const lazy = lazySource(env, 'none');
    background(env, 'b', 2500);
    const b = env.cluster.sidecar('b');
    b.restoreTask = async (r) => {
      if (r.checkpointId !== 'lazy-1') return FakeSidecarApi.prototype.restoreTask.call(b, r);
      // The source's node goes with its page server: the restore, pulling its first pages, fails.
      lazy.fail(new NomadChainError('NC_SIDECAR_UNREACHABLE', 'source gone'));
      killSource(env);
      throw new NomadChainError('NC_RESTORE_FAILED', 'uffd: Failed sending restore finished indication');
    };
    // No one tells the sequence the node is down: the source may still hold its task, so nothing is chosen yet.
    const record = { ...(await plan(env)), mode: MigrationMode.MIGRATION_MODE_LAZY };
    const first = await sequence(env).run(record);
    expect(first).toMatchObject({ step: 'failed', error: { code: 'NC_SIDECAR_UNREACHABLE', step: 'handed-over' } });
    expect(env.cluster.running('web')).toEqual([]);
    // The node comes back empty (its tasks died with it): the retry finds the source gone, the buddy restores.
    env.cluster.sidecar('a').dead = false;
    const [retried] = await sequence(env).resumeAll();
    expect(retried?.restoredFromBuddy).toMatchObject({ node: 'b', fencedBy: 'source-reports-gone' });
    expect(env.cluster.running('web').map((t) => t.nodeName)).toEqual(['b']);
  });

  /** The target's copy, its page daemon at `pages` (what its sidecar's inspect says). */
  function targetPages(env: Env, pages: LazyPages): void {
    const b = env.cluster.sidecar('b');
    const task = b.tasks.get('web-2');
    if (task !== undefined) b.tasks.set('web-2', { ...task, lazyPages: pages });
  }

  /** What a post-copy dump does once every page left, with or without its sidecar: CRIU kills the source. */
  function sourceDumpedAway(env: Env): void {
    const a = env.cluster.sidecar('a');
    const source = a.tasks.get('web-1');
    if (source !== undefined) a.tasks.set('web-1', { ...source, state: TaskState.TASK_STATE_EXITED, pid: 0 });
  }

  // Issue #13, the fault matrix's post-copy-window x source-sidecar-kill: CRIU finished the page transfer without
  // its sidecar (and killed the source, as a post-copy dump does); the whole copy on the target must stay.
  it("keeps the target's copy when the source's sidecar dies after every page arrived: moved, cleaned up later", async () => {
    const env = setup();
    const lazy = lazySource(env, 'none');
    const a = env.cluster.sidecar('a');
    const b = env.cluster.sidecar('b');
    afterTargetRestore(env, () => {
      targetPages(env, LazyPages.LAZY_PAGES_COMPLETE);
      a.dead = true;
      lazy.fail(new NomadChainError('NC_SIDECAR_UNREACHABLE', 'source sidecar gone'));
      sourceDumpedAway(env);
    });
    const first = await sequence(env).run({ ...(await plan(env)), mode: MigrationMode.MIGRATION_MODE_LAZY });
    // Forward, never back: only the clean-up of the source waits for its sidecar.
    expect(first).toMatchObject({ step: 'failed', error: { code: 'NC_SIDECAR_UNREACHABLE', step: 'joined-rotation' } });
    expect(b.called('destroyTask')).toEqual([]);
    expectOneInstance(env, 'b');
    a.dead = false;
    const [retried] = await sequence(env).resumeAll();
    expect(retried).toMatchObject({ step: 'done' });
    expect(retried?.restoredFromBuddy).toBeUndefined();
    expectOneInstance(env, 'b');
    expect(a.tasks.size).toBe(0);
  });

  it('waits, bounded, while the pages still arrive, and keeps the copy once they all did', async () => {
    const env = setup();
    const lazy = lazySource(env, 'none');
    const a = env.cluster.sidecar('a');
    const b = env.cluster.sidecar('b');
    let polls = 0;
    const inspect = b.inspectTask.bind(b);
    b.inspectTask = async (taskId) => {
      if (taskId === 'web-2' && ++polls === 3) {
        targetPages(env, LazyPages.LAZY_PAGES_COMPLETE);
        sourceDumpedAway(env);
      }
      return inspect(taskId);
    };
    afterTargetRestore(env, () => {
      targetPages(env, LazyPages.LAZY_PAGES_PENDING);
      a.dead = true;
      lazy.fail(new NomadChainError('NC_SIDECAR_UNREACHABLE', 'source sidecar gone'));
    });
    const first = await sequence(env).run({ ...(await plan(env)), mode: MigrationMode.MIGRATION_MODE_LAZY });
    expect(first.error?.step).toBe('joined-rotation');
    expect(polls).toBeGreaterThanOrEqual(3);
    expect(b.called('destroyTask')).toEqual([]);

    // Pages that never finish within checkpointWaitMs: the copy is not whole, and goes.
    const slow = setup();
    const stuck = lazySource(slow, 'none');
    const sb = slow.cluster.sidecar('b');
    afterTargetRestore(slow, () => {
      targetPages(slow, LazyPages.LAZY_PAGES_PENDING);
      slow.cluster.sidecar('a').dead = true;
      stuck.fail(new NomadChainError('NC_SIDECAR_UNREACHABLE', 'source sidecar gone'));
    });
    const started = slow.clock.now();
    const given = await sequence(slow).run({ ...(await plan(slow)), mode: MigrationMode.MIGRATION_MODE_LAZY });
    expect(given).toMatchObject({ step: 'failed', error: { code: 'NC_SIDECAR_UNREACHABLE', step: 'handed-over' } });
    expect(sb.called('destroyTask')).toEqual([{ taskId: 'web-2', force: true }]);
    expect(slow.clock.now() - started).toBeGreaterThan(1000);
  });

  it('gives up a copy at once when its source is held with pages still missing: the source resumes', async () => {
    const env = setup();
    const lazy = lazySource(env, 'none');
    afterTargetRestore(env, () => {
      targetPages(env, LazyPages.LAZY_PAGES_PENDING);
      lazy.fail(new NomadChainError('NC_LAZY_PAGES_FAILED', 'stream broke'));
    });
    const started = env.clock.now();
    const result = await sequence(env).run({ ...(await plan(env)), mode: MigrationMode.MIGRATION_MODE_LAZY });
    expect(result).toMatchObject({ step: 'rolled-back', error: { code: 'NC_LAZY_PAGES_FAILED' } });
    expect(env.clock.now() - started).toBeLessThan(1000);
    expectOneInstance(env, 'a');
  });

  it("a restarted sequence keeps a whole target copy though the source's sidecar is dead", async () => {
    const env = setup();
    lazySource(env, 'none');
    const a = env.cluster.sidecar('a');
    const b = env.cluster.sidecar('b');
    const record = { ...(await plan(env)), mode: MigrationMode.MIGRATION_MODE_LAZY };
    const first = sequence(env, async (r) => {
      if (r.step !== 'handed-over' || b.tasks.has('web-2')) return;
      await b.restoreTask({ identity: r.target.identity, checkpointId: r.checkpointId ?? '', spec: r.target.spec });
      targetPages(env, LazyPages.LAZY_PAGES_COMPLETE);
      sourceDumpedAway(env);
      a.dead = true;
      throw new Crash();
    });
    await expect(first.run(record)).rejects.toThrow(Crash);
    const [resumed] = await sequence(env).resumeAll();
    expect(resumed).toMatchObject({
      step: 'failed',
      error: { code: 'NC_SIDECAR_UNREACHABLE', step: 'joined-rotation' },
    });
    expect(b.called('destroyTask')).toEqual([]);
    expectOneInstance(env, 'b');
  });

  it('rolls back when the target cannot restore: the source, never killed, resumes', async () => {
    const env = setup();
    const lazy = lazySource(env, 'none');
    const b = env.cluster.sidecar('b');
    b.restoreTask = async () => {
      // No daemon ever connects: the source's dump gives up and resumes the task.
      lazy.fail(new NomadChainError('NC_LAZY_PAGES_TIMEOUT', 'no daemon'));
      throw new NomadChainError('NC_RESTORE_FAILED', 'restore failed');
    };
    const result = await sequence(env).run({ ...(await plan(env)), mode: MigrationMode.MIGRATION_MODE_LAZY });
    expect(result).toMatchObject({ step: 'rolled-back', error: { code: 'NC_RESTORE_FAILED' } });
    expectOneInstance(env, 'a');
  });
});
