import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { errorCode, errorMessage } from '../../../common/errors';
import { type CheckpointInfo, LazyPages, type TaskIdentity, type TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { CheckpointError } from '../errors';
import type { TaskRuntime, TaskView } from '../runtime/task-runtime';
import { backgroundKey, filesAheadKey } from '../../../common/checkpoint-keys';
import { prestageKey } from './prestager';
import type { Restorer } from './restore';
import type { RetainedCheckpoints } from './retained';
import type { StagedCheckpoints } from './staging';

export interface TakeOverRequest {
  readonly identity: TaskIdentity;
  readonly spec: TaskSpec;
  readonly handoverKey: string;
  /** How long to wait for the checkpoint; 0 = only one already staged. */
  readonly waitMs: number;
  /** Start the task from its spec when no checkpoint arrives or its restore fails (Nomad mode); else fail. */
  readonly coldStartFallback: boolean;
}

export interface TakeOverOutcome {
  readonly view: TaskView;
  /** The checkpoint restored; undefined when the task started cold. */
  readonly restoredFrom: CheckpointInfo | undefined;
  /** Why the task started cold; '' when it was restored. */
  readonly coldReason: string;
  /** No checkpoint arrived in time (as opposed to one whose restore failed). */
  readonly noCheckpoint: boolean;
}

export interface TakeOverDeps {
  readonly runtime: Pick<TaskRuntime, 'start'>;
  readonly restorer: Pick<Restorer, 'restore'>;
  readonly staged: StagedCheckpoints;
  readonly retained: Pick<RetainedCheckpoints, 'path' | 'release'>;
  /** Scratch space: staged checkpoints are materialized here for CRIU. */
  readonly restoreDir: string;
  readonly log: Logger;
}

/**
 * The receiving half of a hand-over, one home for both modes: the plugin (Nomad mode) and the local controller's
 * migration sequence ask for it, and differ only in what a missing checkpoint means (start cold, or fail so
 * the sequence can roll back). Each checkpoint is restored at most once.
 */
export class TakeOver {
  /**
   * Post-copy restores by task id: whether their pages all arrived is what tells a caller that lost the source
   * (its sidecar died mid-window) whether the copy here is whole. Bounded: only recent restores matter.
   */
  private readonly lazyPages = new LRUCache<string, LazyPages>({ max: 1024 });

  constructor(private readonly deps: TakeOverDeps) {}

  /** Where the pages of a task restored here from a post-copy checkpoint stand; NONE for any other task. */
  lazyPagesOf(taskId: string): LazyPages {
    return this.lazyPages.get(taskId) ?? LazyPages.LAZY_PAGES_NONE;
  }

  async takeOver(request: TakeOverRequest, signal?: AbortSignal): Promise<TakeOverOutcome> {
    const { identity, spec, handoverKey, waitMs } = request;
    const found = await this.deps.staged.find(handoverKey, waitMs, signal);
    if (found === undefined) {
      const reason = `no checkpoint filed under ${handoverKey} within ${waitMs} ms`;
      if (!request.coldStartFallback) {
        throw new CheckpointError('NC_CHECKPOINT_NOT_FOUND', reason, { context: { handoverKey, waitMs } });
      }
      return this.cold(identity, spec, reason, true);
    }
    try {
      const { view, complete, lazy } = await this.restoreAny(identity, found.checkpointId, spec);
      // A post-copy restore leans on the buddy's background copy until its last page arrived (if its source dies
      // in the window, that copy stands in): the seeds go only once it is whole, and never if it failed.
      const dropped = complete.then(
        () => this.dropSeedCopies(found),
        () => undefined,
      );
      if (!lazy) await dropped;
      return { view, restoredFrom: found, coldReason: '', noCheckpoint: false };
    } catch (err) {
      if (!request.coldStartFallback) throw err;
      this.deps.log.warn(
        { err, taskId: identity.taskId, checkpointId: found.checkpointId },
        'restore failed, starting cold',
      );
      const reason = `restore of checkpoint ${found.checkpointId} failed (${errorMessage(err)})`;
      return this.cold(identity, spec, reason, false);
    }
  }

  /**
   * Restores a staged checkpoint and deletes it once the task no longer needs it; a checkpoint this node
   * retained of its own hand-over restores the task here (a rollback). A failed restore leaves the checkpoint
   * as it was, so it can be tried again.
   */
  async restore(identity: TaskIdentity, checkpointId: string, spec: TaskSpec): Promise<TaskView> {
    return (await this.restoreAny(identity, checkpointId, spec)).view;
  }

  /** The restored task, and when its restore is whole: at once, but for a post-copy one once every page arrived. */
  private async restoreAny(
    identity: TaskIdentity,
    checkpointId: string,
    spec: TaskSpec,
  ): Promise<{ view: TaskView; complete: Promise<void>; lazy: boolean }> {
    const staged = await this.deps.staged.get(checkpointId);
    if (staged === undefined)
      return {
        view: await this.restoreRetained(identity, checkpointId, spec),
        complete: Promise.resolve(),
        lazy: false,
      };
    const dir = join(this.deps.restoreDir, checkpointId);
    await rm(dir, { recursive: true, force: true });
    let result;
    try {
      await this.deps.staged.materialize(checkpointId, dir);
      const verifiedByStore = this.deps.staged.materializesVerified;
      result = await this.deps.restorer.restore({ identity, checkpointDir: dir, spec, verifiedByStore });
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    if (result.meta.mode === 'lazy') {
      const taskId = identity.taskId;
      this.lazyPages.set(taskId, LazyPages.LAZY_PAGES_PENDING);
      result.complete.then(
        () => this.lazyPages.set(taskId, LazyPages.LAZY_PAGES_COMPLETE),
        () => this.lazyPages.set(taskId, LazyPages.LAZY_PAGES_FAILED),
      );
    }
    // A lazy restore still reads its images until every page arrived; only then is the checkpoint spent.
    void result.complete
      .then(
        () => this.deps.staged.delete(checkpointId),
        () => undefined,
      )
      .finally(() => rm(dir, { recursive: true, force: true }));
    if (result.meta.mode !== 'lazy') await result.complete;
    return { view: result.view, complete: result.complete, lazy: result.meta.mode === 'lazy' };
  }

  private async restoreRetained(identity: TaskIdentity, checkpointId: string, spec: TaskSpec): Promise<TaskView> {
    const dir = await this.deps.retained.path(checkpointId);
    if (dir === undefined) {
      throw new CheckpointError('NC_CHECKPOINT_NOT_FOUND', 'no such staged or retained checkpoint', {
        context: { checkpointId },
      });
    }
    // Read from this node's disk as it was dumped: nothing checked it since, so the restore verifies it.
    const result = await this.deps.restorer.restore({ identity, checkpointDir: dir, spec, verifiedByStore: false });
    await result.complete;
    await this.deps.retained.release(checkpointId);
    return result.view;
  }

  private async cold(
    identity: TaskIdentity,
    spec: TaskSpec,
    reason: string,
    noCheckpoint: boolean,
  ): Promise<TakeOverOutcome> {
    this.deps.log.info({ taskId: identity.taskId, reason }, 'taking over cold');
    const view = await this.deps.runtime.start(identity, spec);
    return { view, restoredFrom: undefined, coldReason: reason, noCheckpoint };
  }

  /**
   * Copies of the task's previous life filed here served their purpose once the hand-over is restored: one
   * pre-staged ahead of the drain, its files sent ahead of the freeze, and the background copy this node kept as
   * the task's buddy only seeded chunks. The task now runs here, so neither can ever stand in for it; left, they would wait for the store's
   * bound. A failure to drop them costs disk, never the task.
   */
  private async dropSeedCopies(restored: CheckpointInfo): Promise<void> {
    const sourceTaskId = restored.source?.taskId;
    if (sourceTaskId === undefined || sourceTaskId === '') return;
    for (const key of [prestageKey(sourceTaskId), filesAheadKey(sourceTaskId), backgroundKey(sourceTaskId)]) {
      try {
        const copy = await this.deps.staged.find(key, 0);
        if (copy !== undefined && copy.checkpointId !== restored.checkpointId)
          await this.deps.staged.delete(copy.checkpointId);
      } catch (err) {
        this.deps.log.warn({ code: errorCode(err), err, sourceTaskId, key }, 'seed copy not dropped');
      }
    }
  }
}
