import { backgroundKey, filesAheadKey } from '../../common/checkpoint-keys';
import type { Clock } from '../../common/clock';
import { errorCode, errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logging';
import type { Router } from '../../common/router';
import type { SchedulerAdapter } from '../../common/scheduler/scheduler-adapter';
import type { SidecarApi } from '../../common/sidecar-api/sidecar-api';
import {
  LazyPages,
  MigrationMode,
  TaskState,
  type FeaturesResponse,
  type MigrateToPeerResponse,
  type TakeOverResponse,
  type TaskInfo,
} from '../../proto/gen/chain/v1/sidecar';
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
  /** An automatic mode is post-copy for tasks at least this large (resident memory). @default LAZY_MIN_BYTES */
  readonly lazyMinBytes?: number;
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
    | 'mode'
    | 'modeReason'
    | 'lazyWindowMs'
  >
>;

/** Post-copy's danger window, open: the source's hand-over, which settles once its last page has left. */
interface LazyWindow {
  readonly handover: Promise<MigrateToPeerResponse>;
}

/**
 * Below this resident size a task moves by stop-and-copy even where post-copy is offered: on this machine
 * stop-and-copy freezes a 64 MiB task 3.3-5.7 s (issue #12), a small one about 1 s, where post-copy's freeze
 * is about 1 s at any size but opens a danger window.
 */
export const LAZY_MIN_BYTES = 64 * 1024 * 1024;

/**
 * A target asked to drop a rolled-back hand-over's staged copy while it does not answer is asked again this many
 * times in all, the waits doubling up to the cap: 211 s, the time a supervisor takes to bring a
 * sidecar or a rebooted node back.
 */
const FORGET_ATTEMPTS = 12;
const FORGET_FIRST_DELAY_MS = 1_000;
const FORGET_MAX_DELAY_MS = 30_000;

/**
 * What the source's own sidecar says of the task (held: frozen by a failed post-copy window, its memory the
 * only whole copy), or that the scheduler knows its node is gone.
 */
type SourceState = 'running' | 'held' | 'handed-over' | SourceFence;

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
  /** Post-copy windows open, by migration id: the source's hand-over is still serving pages. */
  private readonly windows = new Map<string, LazyWindow>();

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
        case 'planned': {
          const mode = await this.chooseMode(record);
          await this.deps.router.leaveRotation(record.source.instance);
          return this.next(record, 'left-rotation', mode);
        }
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
    const handover = source.migrateToPeer({
      taskId: record.source.taskId,
      peerAddress: record.targetTransferAddress,
      mode: record.mode,
      handoverKey: record.handoverKey,
    });
    if (record.mode === MigrationMode.MIGRATION_MODE_LAZY) {
      const opened = await this.openWindow(record, handover);
      if (opened !== undefined) return opened;
    }
    const result = await handover;
    return this.next(record, 'handed-over', {
      ...(result.checkpoint !== undefined ? { checkpointId: result.checkpoint.checkpointId } : {}),
      wireBytes: result.wireBytes,
      fileBytes: result.fileBytes,
      checkpointBytes: result.checkpoint?.sizeBytes ?? 0,
      freezeMs: result.freezeMs,
    });
  }

  /**
   * Post-copy: the source's hand-over settles only once the target's restore has pulled every page, so the
   * images are awaited on the target meanwhile. Returns the journaled `handed-over` with the window open, or
   * undefined when the source fell back to a full checkpoint (its hand-over then settles by itself).
   */
  private async openWindow(
    record: MigrationRecord,
    handover: Promise<MigrateToPeerResponse>,
  ): Promise<MigrationRecord | undefined> {
    const settled = handover.then(
      (result) => ({ result }),
      (err: unknown) => ({ err }),
    );
    const target = this.deps.sidecars.sidecar(record.target.node);
    const staged = await Promise.race([
      target.findCheckpoint({ handoverKey: record.handoverKey, waitMs: this.deps.checkpointWaitMs }),
      settled,
    ]);
    if ('err' in staged) throw staged.err;
    if ('result' in staged) {
      if (staged.result.modeUsed !== MigrationMode.MIGRATION_MODE_LAZY) return undefined;
      throw new MigrationError('NC_MIGRATION_NO_CHECKPOINT', 'post-copy hand-over ended before any restore', {
        context: { handoverKey: record.handoverKey, node: record.target.node },
      });
    }
    if (!staged.found || staged.checkpoint === undefined) {
      // The source resumes by itself once no page daemon connects: wait for it before rolling back.
      const ended = await settled;
      if ('result' in ended && ended.result.modeUsed !== MigrationMode.MIGRATION_MODE_LAZY) return undefined;
      throw new MigrationError(
        'NC_MIGRATION_NO_CHECKPOINT',
        `no checkpoint for ${record.handoverKey} on ${record.target.node} within ${this.deps.checkpointWaitMs} ms`,
        { context: { handoverKey: record.handoverKey, node: record.target.node } },
      );
    }
    this.windows.set(record.id, { handover });
    return this.next(record, 'handed-over', { checkpointId: staged.checkpoint.checkpointId });
  }

  /**
   * Inside post-copy's window: the target restores and serves at once while its daemon pulls (and prefetches)
   * the pages; the source stays frozen until the last one left. If the window fails, the target's copy is
   * killed before anything else (it lacks memory), and the failure goes to the rollback.
   */
  private async restoreLazily(record: MigrationRecord, window: LazyWindow): Promise<MigrationRecord> {
    const target = this.deps.sidecars.sidecar(record.target.node);
    const openedAt = this.deps.clock.now();
    let result: MigrateToPeerResponse | undefined;
    try {
      if (!(await this.runs(target, record.target.taskId))) {
        await target.restoreTask({
          identity: record.target.identity,
          checkpointId: record.checkpointId ?? '',
          spec: record.target.spec,
        });
      }
      await this.deps.router.joinRotation(record.target.instance);
      result = await window.handover;
    } catch (err) {
      if (!(await this.keepsTargetCopy(record))) {
        await this.killTargetCopy(record);
        // The source's hand-over has ended (its task held frozen or resumed, or its node gone) before the rollback.
        await window.handover.catch(() => undefined);
        throw err;
      }
      this.deps.log.warn(
        { err, migrationId: record.id, node: record.target.node },
        "post-copy hand-over failed after every page arrived: the target's copy is whole, going forward",
      );
    } finally {
      this.windows.delete(record.id);
    }
    return this.next(record, 'restored', {
      ...(result !== undefined
        ? {
            wireBytes: result.wireBytes,
            fileBytes: result.fileBytes,
            checkpointBytes: result.checkpoint?.sizeBytes ?? 0,
            freezeMs: result.freezeMs,
          }
        : {}),
      lazyWindowMs: this.deps.clock.now() - openedAt,
    });
  }

  /**
   * Whether a failed or interrupted post-copy window leaves the target's copy standing: only once its page
   * daemon pulled every page (waited for while pages still arrive, bounded by checkpointWaitMs), and never
   * while the source runs the task again. A source whose dump ends with every page gone is killed by CRIU,
   * with or without its sidecar (which may have died: the case this exists for); one still dumping is waited
   * for, one that cannot be asked is cleaned up once it answers.
   */
  private async keepsTargetCopy(record: MigrationRecord): Promise<boolean> {
    const source = (): Promise<TaskInfo | undefined> =>
      this.deps.sidecars
        .sidecar(record.source.node)
        .inspectTask(record.source.taskId)
        .catch(() => undefined);
    const runsAgain = (task: TaskInfo | undefined): boolean =>
      task?.state === TaskState.TASK_STATE_RUNNING && !task.checkpointing;
    const target = this.deps.sidecars.sidecar(record.target.node);
    const deadline = this.deps.clock.now() + this.deps.checkpointWaitMs;
    let sourceTask = await source();
    for (;;) {
      if (runsAgain(sourceTask)) return false;
      const task = await target.inspectTask(record.target.taskId).catch(() => undefined);
      if (task?.state !== TaskState.TASK_STATE_RUNNING) return false;
      if (task.lazyPages === LazyPages.LAZY_PAGES_COMPLETE) break;
      // A held source serves no more pages: what is missing now never comes.
      if (task.lazyPages !== LazyPages.LAZY_PAGES_PENDING || sourceTask?.state === TaskState.TASK_STATE_HELD)
        return false;
      if (this.deps.clock.now() > deadline) return false;
      await this.deps.clock.sleep(250);
      sourceTask = await source();
    }
    if (sourceTask?.checkpointing !== true) return true;
    try {
      return (await this.sourceStateAfterDump(record)) !== 'running';
    } catch {
      return true;
    }
  }

  /** Out of rotation and destroyed: a copy restored from a post-copy checkpoint whose pages did not all arrive. */
  private async killTargetCopy(record: MigrationRecord): Promise<void> {
    await this.deps.router.leaveRotation(record.target.instance);
    try {
      await this.deps.sidecars.sidecar(record.target.node).destroyTask({ taskId: record.target.taskId, force: true });
    } catch (err) {
      if (errorCode(err) !== 'NC_TASK_NOT_FOUND') throw err;
    }
  }

  /**
   * The rule for an automatic mode: post-copy where both nodes offer lazy pages for their tasks (userfaultfd:
   * the sidecar's probe) and the task's resident memory is at least `lazyMinBytes`; stop-and-copy otherwise.
   * A mode asked for explicitly (a service's or the controller's override) is kept. Checks the target first:
   * a target that cannot take the task fails the migration while the source serves.
   */
  private async chooseMode(record: MigrationRecord): Promise<RecordUpdate> {
    const target = await this.checkTarget(record);
    if (record.mode !== MigrationMode.MIGRATION_MODE_AUTO) return { modeReason: 'asked for' };
    const source = this.deps.sidecars.sidecar(record.source.node);
    const minBytes = this.deps.lazyMinBytes ?? LAZY_MIN_BYTES;
    const stop = (why: string): RecordUpdate => ({ mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY, modeReason: why });
    if (!target.lazyPages) return stop(`no lazy pages on ${record.target.node}`);
    if (!(await source.features()).lazyPages) return stop(`no lazy pages on ${record.source.node}`);
    let rss: number;
    try {
      rss = (await source.taskStats(record.source.taskId)).memoryRssBytes;
    } catch (err) {
      return stop(`resident size unknown (${errorMessage(err)})`);
    }
    if (rss < minBytes) return stop(`resident ${rss} bytes, under ${minBytes}`);
    return { mode: MigrationMode.MIGRATION_MODE_LAZY, modeReason: `resident ${rss} bytes, at least ${minBytes}` };
  }

  private async restore(record: MigrationRecord): Promise<MigrationRecord> {
    const window = this.windows.get(record.id);
    if (window !== undefined) return this.restoreLazily(record, window);
    if (record.mode === MigrationMode.MIGRATION_MODE_LAZY) return this.resumeLazily(record);
    const target = this.deps.sidecars.sidecar(record.target.node);
    if (await this.runs(target, record.target.taskId)) return this.next(record, 'restored');
    // The target's sidecar takes the task over as in Nomad mode, but never cold: a missing checkpoint rolls back.
    let taken: TakeOverResponse;
    try {
      taken = await target.takeOver({
        identity: record.target.identity,
        spec: record.target.spec,
        handoverKey: record.handoverKey,
        waitMs: this.deps.checkpointWaitMs,
        coldStartFallback: false,
      });
    } catch (err) {
      if (errorCode(err) !== 'NC_CHECKPOINT_NOT_FOUND') throw err;
      throw new MigrationError(
        'NC_MIGRATION_NO_CHECKPOINT',
        `no checkpoint for ${record.handoverKey} on ${record.target.node} within ${this.deps.checkpointWaitMs} ms`,
        { cause: err, context: { handoverKey: record.handoverKey, node: record.target.node } },
      );
    }
    return this.next(record, 'restored', { checkpointId: taken.restoredFrom?.checkpointId ?? '' });
  }

  /**
   * A post-copy window this sequence no longer holds (it restarted): the source's own state says how it
   * ended. Handed over: every page left, the target's copy is whole. Anything else: the target's copy may lack
   * pages and is killed first; the rollback then finds the source running or gone.
   */
  private async resumeLazily(record: MigrationRecord): Promise<MigrationRecord> {
    const target = this.deps.sidecars.sidecar(record.target.node);
    if (await this.keepsTargetCopy(record)) return this.next(record, 'restored');
    if ((await this.sourceStateAfterDump(record)) === 'handed-over') {
      if (!(await this.runs(target, record.target.taskId))) {
        throw new MigrationError('NC_MIGRATION_TARGET_LOST', 'post-copy ended but the target copy does not run', {
          context: { node: record.target.node, taskId: record.target.taskId },
        });
      }
      return this.next(record, 'restored');
    }
    await this.killTargetCopy(record);
    throw new MigrationError('NC_MIGRATION_STEP_FAILED', 'post-copy window interrupted by a restart', {
      context: { migrationId: record.id },
    });
  }

  /** Before anything stops: a target that cannot take the task fails the migration while the source serves. */
  private async checkTarget(record: MigrationRecord): Promise<FeaturesResponse> {
    const target = await this.deps.sidecars.sidecar(record.target.node).features();
    if (!target.healthy) {
      throw new MigrationError('NC_MIGRATION_TARGET_UNHEALTHY', `target ${record.target.node} is not healthy`, {
        context: { node: record.target.node, reason: target.reason },
      });
    }
    return target;
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
      const source = await this.resumedIfHeld(record, await this.sourceState(record), log);
      if (source === 'running') {
        // Serving again comes first: a target that does not answer can hold the first attempt for its deadline.
        await this.deps.router.joinRotation(record.source.instance);
        await this.forgetStaged(record, log);
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
      return stateOf(await this.deps.sidecars.sidecar(record.source.node).inspectTask(record.source.taskId));
    } catch (err) {
      return this.fenceOf(record, err);
    }
  }

  /** A source that cannot be asked is fenced only by its sidecar's word or the scheduler's; else rethrows. */
  private fenceOf(record: MigrationRecord, err: unknown): SourceFence {
    if (errorCode(err) === 'NC_TASK_NOT_FOUND') return 'source-reports-gone';
    if (this.deps.nodeDown?.(record.source.node) === true) return 'node-down';
    throw err;
  }

  /**
   * The source's state once no dump of it is under way. A post-copy hand-over outlives a sequence that
   * restarted: until its page stream ends, the source reports running while it is frozen. The stream ends
   * with every page gone (handed over) or broken (the source held). Bounded by checkpointWaitMs.
   */
  private async sourceStateAfterDump(record: MigrationRecord): Promise<SourceState> {
    const deadline = this.deps.clock.now() + this.deps.checkpointWaitMs;
    for (;;) {
      let task: TaskInfo;
      try {
        task = await this.deps.sidecars.sidecar(record.source.node).inspectTask(record.source.taskId);
      } catch (err) {
        return this.fenceOf(record, err);
      }
      if (task.state !== TaskState.TASK_STATE_RUNNING || !task.checkpointing) return stateOf(task);
      if (this.deps.clock.now() > deadline) {
        throw new MigrationError('NC_MIGRATION_STEP_FAILED', 'the source is still being dumped', {
          context: { node: record.source.node, taskId: record.source.taskId, waitedMs: this.deps.checkpointWaitMs },
        });
      }
      await this.deps.clock.sleep(250);
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
    await this.forgetStaged(record, log);
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
    if (record.mode === MigrationMode.MIGRATION_MODE_LAZY) return this.rollBackLazy(record, failure, log);
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
   * Post-copy's window failed and the target's copy is gone: the source, held frozen until then, runs again
   * (told to, or its dump resumed it before any page left), or its node is gone and the buddy's newest
   * background checkpoint stands in. A post-copy checkpoint holds no memory: the source is never restored
   * from it.
   */
  private async rollBackLazy(record: MigrationRecord, failure: RecordUpdate, log: Logger): Promise<MigrationRecord> {
    try {
      const source = await this.resumedIfHeld(record, await this.sourceStateAfterDump(record), log);
      if (source === 'running') {
        await this.forgetStaged(record, log);
        await this.deps.router.joinRotation(record.source.instance);
        log.warn({ node: record.source.node }, 'post-copy window failed: target copy killed, source runs again');
        return this.next(record, 'rolled-back', failure);
      }
      if (source !== 'handed-over') return await this.chooseBuddyCheckpoint(record, source, failure, log);
    } catch (err) {
      // A source whose sidecar does not answer (it died, or its node went and no one says so yet) may hold its
      // task frozen or be gone: failed as unreachable, the migration is taken up again once the sidecar is back
      // (resumeAll), and its answer then decides between resuming it and the buddy's checkpoint.
      if (errorCode(err) === 'NC_SIDECAR_UNREACHABLE') {
        log.warn({ err }, 'post-copy window failed and the source does not answer: retried once it does');
        return this.next(record, 'failed', this.failure(record, err));
      }
      log.error({ err }, 'post-copy window failed and the source cannot be asked: operator must act');
    }
    return this.next(record, 'failed', failure);
  }

  /**
   * A source held frozen by its failed post-copy window runs again, but only once the copy restored on the
   * target is gone (killed again here: a restarted sequence may not have seen it die): one copy runs, ever.
   */
  private async resumedIfHeld(
    record: MigrationRecord,
    source: SourceState,
    log: Logger,
  ): Promise<Exclude<SourceState, 'held'>> {
    if (source !== 'held') return source;
    await this.killTargetCopy(record);
    const resumed = await this.deps.sidecars.sidecar(record.source.node).resumeTask(record.source.taskId);
    log.warn({ node: record.source.node }, 'source held by the failed post-copy window resumed, the target copy gone');
    return resumed.state === TaskState.TASK_STATE_RUNNING ? 'running' : 'source-reports-gone';
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

  /**
   * The task runs elsewhere (the source again, or from its buddy's background copy): the target's staged copy
   * must never be restored as well (a task runs once), and nothing else would ever remove it or the task's
   * files sent there ahead of the freeze. A target that does not answer now (its sidecar restarting, its node
   * rebooting) is asked again in the background, so the rollback never waits on it.
   */
  private async forgetStaged(record: MigrationRecord, log: Logger): Promise<void> {
    const staged = { node: record.target.node, checkpointId: record.checkpointId, sourceTaskId: record.source.taskId };
    if (await this.deleteStaged(staged, log)) return;
    void this.forgetLater(staged, log);
  }

  private async forgetLater(staged: StagedCopy, log: Logger): Promise<void> {
    let delay = FORGET_FIRST_DELAY_MS;
    for (let attempt = 2; attempt <= FORGET_ATTEMPTS; attempt++) {
      await this.deps.clock.sleep(delay);
      delay = Math.min(2 * delay, FORGET_MAX_DELAY_MS);
      if (await this.deleteStaged(staged, log)) {
        log.info({ ...staged, attempt }, 'staged copy on the target removed once it answered');
        return;
      }
    }
    log.error(
      { ...staged, attempts: FORGET_ATTEMPTS },
      "staged copy left on the target: it never answered; the task runs elsewhere, delete the target's copy by hand",
    );
  }

  private async deleteStaged(staged: StagedCopy, log: Logger): Promise<boolean> {
    const target = this.deps.sidecars.sidecar(staged.node);
    try {
      if (staged.checkpointId !== undefined) await target.deleteCheckpoint({ checkpointId: staged.checkpointId });
      const ahead = await target.findCheckpoint({ handoverKey: filesAheadKey(staged.sourceTaskId), waitMs: 0 });
      if (ahead.found && ahead.checkpoint !== undefined)
        await target.deleteCheckpoint({ checkpointId: ahead.checkpoint.checkpointId });
      return true;
    } catch (err) {
      log.warn({ err, ...staged }, 'could not remove the staged copy on the target');
      return false;
    }
  }
}

/** A hand-over's copy staged on its target, and whose task it was. */
interface StagedCopy {
  readonly node: string;
  /** None when the hand-over never got that far; its files sent ahead may still be there. */
  readonly checkpointId: string | undefined;
  readonly sourceTaskId: string;
}

/** What the source's own sidecar says of its task. */
function stateOf(task: TaskInfo): SourceState {
  if (task.state === TaskState.TASK_STATE_RUNNING) return 'running';
  if (task.state === TaskState.TASK_STATE_HELD) return 'held';
  // Dumped and handed over: its own copy of the hand-over is on the source, and an operator's to use.
  if (task.state === TaskState.TASK_STATE_MIGRATED) return 'handed-over';
  return 'source-reports-gone';
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
