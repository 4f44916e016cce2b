import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { CheckpointMeta } from '../../../../sidecar/src/checkpoint/manifest';
import { backgroundKey, filesAheadKey } from '../../../../common/checkpoint-keys';
import { prestageKey } from '../../../../sidecar/src/checkpoint/prestager';
import type { RestoreRequest } from '../../../../sidecar/src/checkpoint/restore';
import type { StagedCheckpoints } from '../../../../sidecar/src/checkpoint/staging';
import { TakeOver } from '../../../../sidecar/src/checkpoint/take-over';
import type { TaskView } from '../../../../sidecar/src/runtime/task-runtime';
import {
  LazyPages,
  type CheckpointInfo,
  type TaskIdentity,
  type TaskSpec,
} from '../../../../proto/gen/chain/v1/sidecar';

const IDENTITY: TaskIdentity = {
  taskId: 'new-1',
  allocId: 'alloc-new',
  taskName: 'web',
  jobId: 'job',
  namespace: 'default',
};
const SPEC = { argv: ['/bin/sleep', '60'] } as unknown as TaskSpec;

function info(checkpointId: string, handoverKey: string, sourceTaskId = 'old-1'): CheckpointInfo {
  return {
    checkpointId,
    handoverKey,
    source: { ...IDENTITY, taskId: sourceTaskId, allocId: 'alloc-old' },
    manifestDigest: '',
    sizeBytes: 1,
    createdAtUnixMs: 0,
    spec: undefined,
    sourceNode: 'node-a',
  };
}

/** Staged checkpoints in memory. */
class MemoryStaged implements StagedCheckpoints {
  readonly byId = new Map<string, CheckpointInfo>();
  readonly deleted: string[] = [];
  readonly finds: { handoverKey: string; waitMs: number }[] = [];

  constructor(readonly materializesVerified: boolean) {}

  adopt(): Promise<CheckpointInfo> {
    return Promise.reject(new Error('not used'));
  }
  async get(checkpointId: string): Promise<CheckpointInfo | undefined> {
    return this.byId.get(checkpointId);
  }
  async find(handoverKey: string, waitMs: number): Promise<CheckpointInfo | undefined> {
    this.finds.push({ handoverKey, waitMs });
    return [...this.byId.values()].find((c) => c.handoverKey === handoverKey);
  }
  async list(): Promise<CheckpointInfo[]> {
    return [...this.byId.values()];
  }
  async materialize(): Promise<void> {}
  async delete(checkpointId: string): Promise<void> {
    this.deleted.push(checkpointId);
    this.byId.delete(checkpointId);
  }
}

interface SetupOptions {
  readonly restoreFails?: Error;
  readonly materializesVerified?: boolean;
  readonly retainedDir?: string;
  /** Restores are post-copy ones whose pages all arrive when this settles. */
  readonly lazyPages?: Promise<void>;
}

function setup(options: SetupOptions = {}) {
  const staged = new MemoryStaged(options.materializesVerified ?? true);
  const restores: RestoreRequest[] = [];
  const starts: TaskIdentity[] = [];
  const view = (restoredFrom: string): TaskView => ({ record: { restoredFromCheckpoint: restoredFrom } }) as TaskView;
  const takeOver = new TakeOver({
    runtime: {
      start: async (identity) => {
        starts.push(identity);
        return view('');
      },
    },
    restorer: {
      restore: async (request) => {
        restores.push(request);
        if (options.restoreFails !== undefined) throw options.restoreFails;
        return {
          view: view('restored'),
          meta: { mode: options.lazyPages !== undefined ? 'lazy' : 'stop-and-copy' } as CheckpointMeta,
          environment: undefined,
          stepsMs: {},
          complete: options.lazyPages ?? Promise.resolve(),
        };
      },
    },
    staged,
    retained: { path: async () => options.retainedDir, release: async () => true },
    restoreDir: mkdtempSync(join(tmpdir(), 'nc-take-over-')),
    log: pino({ level: 'silent' }),
  });
  return { takeOver, staged, restores, starts };
}

/** A take-over of the checkpoint filed under the new allocation's key, already there: no wait, no cold start. */
const TAKE_OVER_NOW = {
  identity: IDENTITY,
  spec: SPEC,
  handoverKey: 'alloc-new/web',
  waitMs: 0,
  coldStartFallback: false,
};

describe('TakeOver', () => {
  it("restores the checkpoint filed under the key, spends it, and drops the same task's pre-staged copy, files sent ahead and buddy copy", async () => {
    const { takeOver, staged, restores, starts } = setup();
    staged.byId.set('ckpt-1', info('ckpt-1', 'alloc-new/web'));
    staged.byId.set('pre-1', info('pre-1', prestageKey('old-1')));
    staged.byId.set('bg-1', info('bg-1', backgroundKey('old-1')));
    staged.byId.set('ahead-1', info('ahead-1', filesAheadKey('old-1')));
    staged.byId.set('pre-2', info('pre-2', prestageKey('other-task'), 'other-task'));
    staged.byId.set('bg-2', info('bg-2', backgroundKey('other-task'), 'other-task'));

    const outcome = await takeOver.takeOver({
      identity: IDENTITY,
      spec: SPEC,
      handoverKey: 'alloc-new/web',
      waitMs: 5000,
      coldStartFallback: true,
    });

    expect(outcome).toMatchObject({ coldReason: '', noCheckpoint: false, restoredFrom: { checkpointId: 'ckpt-1' } });
    expect(restores.map((r) => r.identity)).toEqual([IDENTITY]);
    expect(starts).toEqual([]);
    expect(staged.finds[0]).toEqual({ handoverKey: 'alloc-new/web', waitMs: 5000 });
    expect(staged.deleted.sort()).toEqual(['ahead-1', 'bg-1', 'ckpt-1', 'pre-1']);
    expect([...staged.byId.keys()].sort()).toEqual(['bg-2', 'pre-2']);
  });

  it('starts cold and says why when no checkpoint arrives, if the caller allows it; else fails and starts nothing', async () => {
    const { takeOver, starts } = setup();
    const request = { identity: IDENTITY, spec: SPEC, handoverKey: 'alloc-new/web', waitMs: 0 };
    const cold = await takeOver.takeOver({ ...request, coldStartFallback: true });
    expect(cold).toMatchObject({ restoredFrom: undefined, noCheckpoint: true });
    expect(cold.coldReason).toBe('no checkpoint filed under alloc-new/web within 0 ms');
    expect(starts).toEqual([IDENTITY]);

    await expect(takeOver.takeOver({ ...request, coldStartFallback: false })).rejects.toMatchObject({
      code: 'NC_CHECKPOINT_NOT_FOUND',
    });
    expect(starts).toHaveLength(1);
  });

  it('a failed restore leaves the checkpoint staged: a cold start when allowed, else the error', async () => {
    const failure = Object.assign(new Error('criu said no'), { code: 'NC_RESTORE_FAILED' });
    const { takeOver, staged, starts } = setup({ restoreFails: failure });
    staged.byId.set('ckpt-1', info('ckpt-1', 'alloc-new/web'));
    const request = { identity: IDENTITY, spec: SPEC, handoverKey: 'alloc-new/web', waitMs: 0 };

    await expect(takeOver.takeOver({ ...request, coldStartFallback: false })).rejects.toBe(failure);
    expect(starts).toEqual([]);
    expect(staged.byId.has('ckpt-1')).toBe(true);

    const cold = await takeOver.takeOver({ ...request, coldStartFallback: true });
    expect(cold).toMatchObject({ noCheckpoint: false, restoredFrom: undefined });
    expect(cold.coldReason).toBe('restore of checkpoint ckpt-1 failed (criu said no)');
    expect(starts).toEqual([IDENTITY]);
    expect(staged.deleted).toEqual([]);
  });

  // Issue #12: the store checked every chunk's sha256 as it took it in; a second hash of the images only adds
  // to the freeze. What comes from disk as it is still is verified.
  it('asks the restore to skip the re-hash only for a checkpoint the store materialised', async () => {
    const store = setup({ materializesVerified: true });
    store.staged.byId.set('ckpt-1', info('ckpt-1', 'alloc-new/web'));
    await store.takeOver.takeOver(TAKE_OVER_NOW);
    expect(store.restores.map((r) => r.verifiedByStore)).toEqual([true]);

    const directory = setup({ materializesVerified: false });
    directory.staged.byId.set('ckpt-1', info('ckpt-1', 'alloc-new/web'));
    await directory.takeOver.takeOver(TAKE_OVER_NOW);
    expect(directory.restores.map((r) => r.verifiedByStore)).toEqual([false]);
  });

  it('verifies a retained local copy restored on rollback, even beside a store that verifies', async () => {
    const { takeOver, restores } = setup({ materializesVerified: true, retainedDir: '/retained/ckpt-9' });
    await takeOver.restore(IDENTITY, 'ckpt-9', SPEC);
    expect(restores).toEqual([expect.objectContaining({ checkpointDir: '/retained/ckpt-9', verifiedByStore: false })]);
  });

  it("keeps the buddy's copy through a post-copy take-over's window: dropped once every page arrived, kept if not", async () => {
    const window = (outcome: 'arrive' | 'break') => {
      let end: () => void = () => undefined;
      const pages = new Promise<void>(
        (resolve, reject) => (end = outcome === 'arrive' ? resolve : () => reject(new Error('source gone'))),
      );
      const env = setup({ lazyPages: pages });
      env.staged.byId.set('lazy-1', info('lazy-1', 'alloc-new/web'));
      env.staged.byId.set('bg-1', info('bg-1', backgroundKey('old-1')));
      return { env, end };
    };

    const whole = window('arrive');
    await whole.env.takeOver.takeOver(TAKE_OVER_NOW);
    expect(whole.env.staged.byId.has('bg-1')).toBe(true);
    whole.end();
    await new Promise((resolve) => setImmediate(resolve));
    expect(whole.env.staged.byId.has('bg-1')).toBe(false);

    const broken = window('break');
    await broken.env.takeOver.takeOver(TAKE_OVER_NOW);
    broken.end();
    await new Promise((resolve) => setImmediate(resolve));
    expect(broken.env.staged.byId.has('bg-1')).toBe(true);
  });

  it("says where a post-copy restore's pages stand: pending, then complete or failed; nothing for other tasks", async () => {
    const settle = (outcome: 'arrive' | 'break') => {
      let done: () => void = () => undefined;
      let broke: (err: Error) => void = () => undefined;
      const pages = new Promise<void>((resolve, reject) => ((done = resolve), (broke = reject)));
      const env = setup({ lazyPages: pages });
      env.staged.byId.set('lazy-1', info('lazy-1', 'alloc-new/web'));
      return { env, end: () => (outcome === 'arrive' ? done() : broke(new Error('page daemon exited with 1'))) };
    };
    const whole = settle('arrive');
    await whole.env.takeOver.restore(IDENTITY, 'lazy-1', SPEC);
    expect(whole.env.takeOver.lazyPagesOf(IDENTITY.taskId)).toBe(LazyPages.LAZY_PAGES_PENDING);
    expect(whole.env.takeOver.lazyPagesOf('other')).toBe(LazyPages.LAZY_PAGES_NONE);
    whole.end();
    await new Promise((resolve) => setImmediate(resolve));
    expect(whole.env.takeOver.lazyPagesOf(IDENTITY.taskId)).toBe(LazyPages.LAZY_PAGES_COMPLETE);

    const broken = settle('break');
    await broken.env.takeOver.restore(IDENTITY, 'lazy-1', SPEC);
    broken.end();
    await new Promise((resolve) => setImmediate(resolve));
    expect(broken.env.takeOver.lazyPagesOf(IDENTITY.taskId)).toBe(LazyPages.LAZY_PAGES_FAILED);

    const copied = setup();
    copied.staged.byId.set('ckpt-1', info('ckpt-1', 'alloc-new/web'));
    await copied.takeOver.restore(IDENTITY, 'ckpt-1', SPEC);
    expect(copied.takeOver.lazyPagesOf(IDENTITY.taskId)).toBe(LazyPages.LAZY_PAGES_NONE);
  });
});
