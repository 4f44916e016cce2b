import { backgroundKey } from '../../common/checkpoint-keys';
import type { Clock } from '../../common/clock';
import { errorCode, errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logging';
import type { Router } from '../../common/router';
import type { SchedulerAdapter } from '../../common/scheduler/scheduler-adapter';
import type { SidecarApi } from '../../common/sidecar-api/sidecar-api';
import { TaskState } from '../../proto/gen/chain/v1/sidecar';
import { MigrationError } from './errors';
import type { MigrationJournal } from './migration-journal';
import {
  isFinished,
  type MigrationRecord,
  type MigrationStep,
  type SourceFence,
  type TaskSide,
} from './migration-record';

/** Reaches the sidecar of any node by name. */
export interface NodeSidecars {
  sidecar(node: string): SidecarApi;
}

export interface MigrationSequenceDeps {
  readonly journal: MigrationJournal;
  readonly sidecars: NodeSidecars;
  readonly router: Router;
  readonly scheduler: SchedulerAdapter;
  readonly clock: Clock;
  readonly log: Logger;
  /** How long the target waits for the checkpoint to arrive before it gives up. */
  readonly checkpointWaitMs: number;
  /** Attempts of a step that only ever moves forward (rotation, clean-up) before an operator is called. */
  readonly maxStepAttempts?: number;
  /** Every node of the cluster: where a background checkpoint of a lost source's task may be held. @default none */
  readonly nodes?: () => readonly string[];
  /**
   * The scheduler's own word that a node is gone (it killed the node itself, as a pre-emption does): a source
   * that does not answer is fenced only by this. @default no node is known down
   */
  readonly nodeDown?: (node: string) => boolean;
  /**
   * The task's side on a node other than the planned target (its directories made there): where a lost
   * source's task is restored when its buddy is not the target. @default restores only on the target
   */
  readonly sideOn?: (record: MigrationRecord, node: string) => TaskSide;
  /** Called after each step is journaled: fault injection for tests and drills. */
  readonly afterStep?: (record: MigrationRecord) => void | Promise<void>;
}

type RecordUpdate = Partial<
  Pick<
    MigrationRecord,
    | 'checkpointId'
    | 'wireBytes'
    | 'fileBytes'
    | 'checkpointBytes'
    | 'freezeMs'
    | 'error'
    | 'target'
    | 'targetTransferAddress'
    | 'restoredFromBuddy'
  >
>;

/** What the source's own sidecar says of the task, or that the scheduler knows its node is gone. */
type SourceState = 'running' | 'handed-over' | SourceFence;

/**
 * The chained migration, read here and nowhere else: leave rotation, freeze and hand over the final
 * checkpoint, restore on the target, rejoin rotation, clean up. Each step is journaled before the next
 * begins. A failure before the target runs puts the source back (running and in rotation); after it, only
 * forward. A checkpoint is restored at most once: a resumed step first asks whether its work is done. A source
 * gone before any hand-over reached the target (fenced: see `SourceFence`) is replaced by the newest background
 * checkpoint its buddy holds, its age in the record.
 */
export class MigrationSequence {
  private readonly attempts = new Map<string, number>();

  constructor(private readonly deps: MigrationSequenceDeps) {}

  /** Drives a migration from its journaled step to `done`, `rolled-back` or `failed`. */
  async run(record: MigrationRecord): Promise<MigrationRecord> {
    const log = this.deps.log.child({ migrationId: record.id, taskKey: record.taskKey });
    let current = record;
    if (this.deps.journal.load(record.id) === undefined) this.deps.journal.save(current);
    while (!isFinished(current)) {
      current = await this.advance(current, log);
      this.deps.journal.save(current);
      log.info({ step: current.step, source: current.source.node, target: current.target.node }, 'migration step');
      await this.deps.afterStep?.(current);
    }
    if (current.step === 'failed') log.error({ err: current.error }, 'migration failed: operator must act');
    return current;
  }

  /**
   * Finishes every migration a crash left half-done, and retries those that failed only because a node's
   * sidecar could not be reached: a sidecar that crashed comes back with its tasks (they outlive it), so a
   * restarted controller resumes them from the step that failed instead of leaving them to an operator
   * (a source left out of rotation, a source never cleaned up).
   */
  async resumeAll(): Promise<MigrationRecord[]> {
    const pending = this.deps.journal.list().filter((r) => !isFinished(r) || retryable(r));
    const results: MigrationRecord[] = [];
    for (const found of pending) {
      const record = retryable(found) ? this.reopen(found) : found;
      this.deps.log.warn(
        { migrationId: record.id, step: record.step, ...(found.step === 'failed' ? { error: found.error } : {}) },
        found.step === 'failed'
          ? 'retrying migration that failed on an unreachable sidecar'
          : 'resuming migration after restart',
      );
      results.push(await this.run(record));
    }
    return results;
  }

  /** A retryable failure back at the step it failed at, journaled, with its error kept for the record. */
  private reopen(record: MigrationRecord): MigrationRecord {
    const { error, ...rest } = record;
    const reopened: MigrationRecord = {
      ...rest,
      step: error?.step ?? 'planned',
      updatedAtUnixMs: this.deps.clock.now(),
    };
    this.deps.journal.save(reopened);
    return reopened;
  }

  private next(record: MigrationRecord, step: MigrationStep, update: RecordUpdate = {}): MigrationRecord {
    const now = this.deps.clock.now();
    return {
      ...record,
      ...update,
      step,
      updatedAtUnixMs: now,
      stepsAtUnixMs: { ...record.stepsAtUnixMs, [step]: now },
    };
  }

  private async advance(record: MigrationRecord, log: Logger): Promise<MigrationRecord> {
    try {
      switch (record.step) {
        case 'planned':
          await this.checkTarget(record);
          await this.deps.router.leaveRotation(record.source.instance);
          return this.next(record, 'left-rotation');
        case 'left-rotation':
          return await this.handOver(record);
        case 'handed-over':
          return await this.restore(record);
        case 'restoring-from-buddy':
          return await this.restoreFromBuddy(record);
        case 'restored':
          await this.deps.router.joinRotation(record.target.instance);
          return this.next(record, 'joined-rotation');
        case 'joined-rotation':
          // The source's own copy is the last of the task if the target lost it since its restore (its node
          // died): look before the clean-up deletes that copy.
          if (!(await this.runs(this.deps.sidecars.sidecar(record.target.node), record.target.taskId)))
            return await this.reviveSource(record, log);
          await this.cleanUp(record);
          return this.next(record, 'cleaned-up');
        case 'cleaned-up':
          await this.deps.scheduler.taskPlaced(record.taskKey, record.target.node, record.target.taskId);
          return this.next(record, 'done');
        default:
          return record;
      }
    } catch (err) {
      log.warn({ err, step: record.step }, 'migration step failed');
      return this.recover(record, err, log);
    }
  }

  private async handOver(record: MigrationRecord): Promise<MigrationRecord> {
    const source = this.deps.sidecars.sidecar(record.source.node);
    const task = await source.inspectTask(record.source.taskId);
    if (task.state === TaskState.TASK_STATE_MIGRATED) {
      // A crash after the dump but before the journal caught up: the checkpoint is already on the target.
      const staged = await this.deps.sidecars
        .sidecar(record.target.node)
        .findCheckpoint({ handoverKey: record.handoverKey, waitMs: 0 });
      if (staged.found && staged.checkpoint !== undefined)
        return this.next(record, 'handed-over', { checkpointId: staged.checkpoint.checkpointId });
      throw new MigrationError(
        'NC_MIGRATION_CHECKPOINT_LOST',
        'source was handed over but the target holds no checkpoint',
        {
          context: { taskId: record.source.taskId, handoverKey: record.handoverKey },
        },
      );
    }
    if (task.state !== TaskState.TASK_STATE_RUNNING) {
      throw new MigrationError('NC_MIGRATION_SOURCE_NOT_RUNNING', `source task is not running (state ${task.state})`, {
        context: { taskId: record.source.taskId, node: record.source.node },
      });
    }
    const result = await source.migrateToPeer({
      taskId: record.source.taskId,
      peerAddress: record.targetTransferAddress,
      mode: record.mode,
      handoverKey: record.handoverKey,
    });
    return this.next(record, 'handed-over', {
      ...(result.checkpoint !== undefined ? { checkpointId: result.checkpoint.checkpointId } : {}),
      wireBytes: result.wireBytes,
      fileBytes: result.fileBytes,
      checkpointBytes: result.checkpoint?.sizeBytes ?? 0,
      freezeMs: result.freezeMs,
    });
  }

  private async restore(record: MigrationRecord): Promise<MigrationRecord> {
    const target = this.deps.sidecars.sidecar(record.target.node);
    if (await this.runs(target, record.target.taskId)) return this.next(record, 'restored');
    const staged = await target.findCheckpoint({ handoverKey: record.handoverKey, waitMs: this.deps.checkpointWaitMs });
    if (!staged.found || staged.checkpoint === undefined) {
      throw new MigrationError(
        'NC_MIGRATION_NO_CHECKPOINT',
        `no checkpoint for ${record.handoverKey} on ${record.target.node} within ${this.deps.checkpointWaitMs} ms`,
        {
          context: { handoverKey: record.handoverKey, node: record.target.node },
        },
      );
    }
    await target.restoreTask({
      identity: record.target.identity,
      checkpointId: staged.checkpoint.checkpointId,
      spec: record.target.spec,
    });
    return this.next(record, 'restored', { checkpointId: staged.checkpoint.checkpointId });
  }

  /** Before anything stops: a target that cannot take the task fails the migration while the source serves. */
  private async checkTarget(record: MigrationRecord): Promise<void> {
    const target = await this.deps.sidecars.sidecar(record.target.node).features();
    if (!target.healthy) {
      throw new MigrationError('NC_MIGRATION_TARGET_UNHEALTHY', `target ${record.target.node} is not healthy`, {
        context: { node: record.target.node, reason: target.reason },
      });
    }
  }

  private async cleanUp(record: MigrationRecord): Promise<void> {
    const source = this.deps.sidecars.sidecar(record.source.node);
    try {
      await source.destroyTask({ taskId: record.source.taskId, force: true });
    } catch (err) {
      // Already gone is what clean-up wants; anything else is retried.
      if (errorCode(err) !== 'NC_TASK_NOT_FOUND') throw err;
    }
    // The source's own copy of the hand-over was kept for a rollback, which can no longer happen.
    if (record.checkpointId !== undefined) await source.deleteCheckpoint({ checkpointId: record.checkpointId });
    // A restored background checkpoint: its source will never forget it on the buddy (it died), so it goes here.
    const buddy = record.restoredFromBuddy;
    if (buddy !== undefined)
      await this.deps.sidecars.sidecar(buddy.node).deleteCheckpoint({ checkpointId: buddy.checkpointId });
  }

  private async runs(sidecar: SidecarApi, taskId: string): Promise<boolean> {
    try {
      return (await sidecar.inspectTask(taskId)).state === TaskState.TASK_STATE_RUNNING;
    } catch (err) {
      if (errorCode(err) === 'NC_TASK_NOT_FOUND') return false;
      throw err;
    }
  }

  private failure(record: MigrationRecord, err: unknown): RecordUpdate {
    return {
      error: { code: errorCode(err) ?? 'NC_MIGRATION_STEP_FAILED', message: errorMessage(err), step: record.step },
    };
  }

  private async recover(record: MigrationRecord, err: unknown, log: Logger): Promise<MigrationRecord> {
    const failure = this.failure(record, err);
    if (record.step === 'planned' || record.step === 'left-rotation')
      return this.rollBackBeforeHandover(record, failure, log);
    if (record.step === 'handed-over') return this.rollBackAfterHandover(record, failure, log);
    // The background checkpoint stays on the buddy, restorable, for an operator or a restarted controller.
    if (record.step === 'restoring-from-buddy') return this.next(record, 'failed', failure);
    // The target already runs: only forward. Retry a bounded number of times, then call an operator.
    const key = `${record.id}/${record.step}`;
    const attempt = (this.attempts.get(key) ?? 0) + 1;
    this.attempts.set(key, attempt);
    if (attempt < (this.deps.maxStepAttempts ?? 3)) {
      await this.deps.clock.sleep(250 * attempt);
      return { ...record, ...failure };
    }
    return this.next(record, 'failed', failure);
  }

  /**
   * Before the hand-over the source never stopped serving, unless the hand-over in fact went through, or the
   * source is gone (fenced): then the newest background checkpoint on its buddy. A source that does not answer
   * fails the migration (retried once its sidecar is back): it may still be running the task.
   */
  private async rollBackBeforeHandover(
    record: MigrationRecord,
    failure: RecordUpdate,
    log: Logger,
  ): Promise<MigrationRecord> {
    try {
      const source = await this.sourceState(record);
      if (source === 'running') {
        await this.deps.router.joinRotation(record.source.instance);
        return this.next(record, 'rolled-back', failure);
      }
      const staged = await this.deps.sidecars
        .sidecar(record.target.node)
        .findCheckpoint({ handoverKey: record.handoverKey, waitMs: 0 });
      if (staged.found && staged.checkpoint !== undefined) {
        log.warn(
          { handoverKey: record.handoverKey },
          'hand-over reported failure but the checkpoint arrived: going forward',
        );
        return this.next(record, 'handed-over', { ...failure, checkpointId: staged.checkpoint.checkpointId });
      }
      if (source !== 'handed-over') return await this.chooseBuddyCheckpoint(record, source, failure, log);
    } catch (err) {
      return this.next(record, 'failed', this.failure(record, err));
    }
    return this.next(record, 'failed', failure);
  }

  /**
   * The fence: the source's sidecar answers for its task, or, when it cannot be reached, the scheduler says
   * it killed the node. Anything else (no answer, no word) rethrows: the source may still run the task.
   */
  private async sourceState(record: MigrationRecord): Promise<SourceState> {
    try {
      const task = await this.deps.sidecars.sidecar(record.source.node).inspectTask(record.source.taskId);
      if (task.state === TaskState.TASK_STATE_RUNNING) return 'running';
      // Dumped and handed over: its own copy of the hand-over is on the source, and an operator's to use.
      if (task.state === TaskState.TASK_STATE_MIGRATED) return 'handed-over';
      return 'source-reports-gone';
    } catch (err) {
      if (errorCode(err) === 'NC_TASK_NOT_FOUND') return 'source-reports-gone';
      if (this.deps.nodeDown?.(record.source.node) === true) return 'node-down';
      throw err;
    }
  }

  /**
   * Picks the newest background checkpoint of the source's task held on any other node that answers (its
   * buddy), and where to restore it: the planned target when it holds it, else the buddy itself (its bytes
   * are there already; no second transfer while the task is down). Journaled before the restore.
   */
  private async chooseBuddyCheckpoint(
    record: MigrationRecord,
    fencedBy: SourceFence,
    failure: RecordUpdate,
    log: Logger,
  ): Promise<MigrationRecord> {
    let newest: { node: string; checkpointId: string; createdAtUnixMs: number } | undefined;
    for (const node of (this.deps.nodes?.() ?? []).filter((n) => n !== record.source.node)) {
      try {
        const found = await this.deps.sidecars
          .sidecar(node)
          .findCheckpoint({ handoverKey: backgroundKey(record.source.taskId), waitMs: 0 });
        const checkpoint = found.found ? found.checkpoint : undefined;
        if (checkpoint !== undefined && (newest === undefined || checkpoint.createdAtUnixMs > newest.createdAtUnixMs))
          newest = { node, checkpointId: checkpoint.checkpointId, createdAtUnixMs: checkpoint.createdAtUnixMs };
      } catch (err) {
        log.warn({ err, node }, 'cannot ask a node for background checkpoints');
      }
    }
    if (newest === undefined) {
      throw new MigrationError(
        'NC_MIGRATION_NO_BACKGROUND_CHECKPOINT',
        `source ${record.source.node} is gone before the hand-over and no node holds a background checkpoint of ${record.source.taskId}`,
        { context: { node: record.source.node, taskId: record.source.taskId, fencedBy } },
      );
    }
    const target = newest.node === record.target.node ? record.target : this.deps.sideOn?.(record, newest.node);
    if (target === undefined) {
      throw new MigrationError(
        'NC_MIGRATION_NO_BACKGROUND_CHECKPOINT',
        `the background checkpoint of ${record.source.taskId} is on ${newest.node}, where this sequence cannot place it`,
        { context: { node: newest.node, taskId: record.source.taskId } },
      );
    }
    const ageMs = Math.max(0, this.deps.clock.now() - newest.createdAtUnixMs);
    log.warn(
      { fencedBy, buddy: newest.node, checkpointId: newest.checkpointId, ageMs, target: target.node },
      'source gone before the hand-over: restoring its newest background checkpoint',
    );
    return this.next(record, 'restoring-from-buddy', {
      ...failure,
      target,
      restoredFromBuddy: {
        node: newest.node,
        checkpointId: newest.checkpointId,
        checkpointAtUnixMs: newest.createdAtUnixMs,
        ageMs,
        fencedBy,
      },
    });
  }

  /** Restores the chosen background checkpoint, at most once: a resumed step first looks for the task. */
  private async restoreFromBuddy(record: MigrationRecord): Promise<MigrationRecord> {
    const buddy = record.restoredFromBuddy;
    if (buddy === undefined) {
      throw new MigrationError('NC_MIGRATION_NO_BACKGROUND_CHECKPOINT', 'no background checkpoint was chosen', {
        context: { migrationId: record.id },
      });
    }
    const target = this.deps.sidecars.sidecar(record.target.node);
    if (!(await this.runs(target, record.target.taskId)))
      await target.restoreTask({
        identity: record.target.identity,
        checkpointId: buddy.checkpointId,
        spec: record.target.spec,
      });
    return this.next(record, 'restored');
  }

  /** The source is frozen and dumped, the target could not restore: bring the source back from its own copy. */
  private async rollBackAfterHandover(
    record: MigrationRecord,
    failure: RecordUpdate,
    log: Logger,
  ): Promise<MigrationRecord> {
    const source = this.deps.sidecars.sidecar(record.source.node);
    try {
      if (!(await this.runs(source, record.source.taskId))) {
        if (record.checkpointId === undefined) throw failureError(failure);
        await source.restoreTask({
          identity: record.source.identity,
          checkpointId: record.checkpointId,
          spec: record.source.spec,
        });
      }
      await this.forgetStaged(record, log);
      await this.deps.router.joinRotation(record.source.instance);
      log.warn({ node: record.source.node }, 'restore on target failed: source restored in place');
      return this.next(record, 'rolled-back', failure);
    } catch (err) {
      log.error({ err }, 'source could not be restored either: the staged checkpoint on the target stays restorable');
      return this.next(record, 'failed', failure);
    }
  }

  /**
   * The target's sidecar answers but the restored task no longer runs there (its node died and came back
   * empty): the source's own copy of the hand-over brings it back, as old as the freeze, rather than losing
   * it. Only a target that answers can say so: one that does not may still run it, and is retried.
   */
  private async reviveSource(record: MigrationRecord, log: Logger): Promise<MigrationRecord> {
    if (record.checkpointId === undefined) {
      throw new MigrationError('NC_MIGRATION_TARGET_LOST', 'the restored task is gone and no checkpoint is known', {
        context: { node: record.target.node, taskId: record.target.taskId },
      });
    }
    await this.deps.sidecars.sidecar(record.source.node).restoreTask({
      identity: record.source.identity,
      checkpointId: record.checkpointId,
      spec: record.source.spec,
    });
    await this.deps.router.leaveRotation(record.target.instance);
    await this.deps.router.joinRotation(record.source.instance);
    log.warn(
      { node: record.target.node, checkpointId: record.checkpointId },
      'restored task lost on the target: source restored from its own copy of the hand-over (state as of the freeze)',
    );
    return this.next(record, 'rolled-back', {
      error: {
        code: 'NC_MIGRATION_TARGET_LOST',
        message: `the task restored on ${record.target.node} is gone; restored on ${record.source.node} from its own copy (state as of the freeze)`,
        step: record.step,
      },
    });
  }

  /** The source runs again: the target's staged copy must never be restored as well (a task runs once). */
  private async forgetStaged(record: MigrationRecord, log: Logger): Promise<void> {
    if (record.checkpointId === undefined) return;
    try {
      await this.deps.sidecars.sidecar(record.target.node).deleteCheckpoint({ checkpointId: record.checkpointId });
    } catch (err) {
      log.warn({ err, node: record.target.node }, 'could not remove the staged copy on the target');
    }
  }
}

/** Failed only because a sidecar did not answer, at a step the sequence can take again. */
function retryable(record: MigrationRecord): boolean {
  return (
    record.step === 'failed' &&
    record.error?.code === 'NC_SIDECAR_UNREACHABLE' &&
    record.error.step !== 'failed' &&
    record.error.step !== 'rolled-back'
  );
}

function failureError(failure: RecordUpdate): MigrationError {
  return new MigrationError(
    failure.error?.code ?? 'NC_MIGRATION_STEP_FAILED',
    failure.error?.message ?? 'migration step failed',
  );
}
