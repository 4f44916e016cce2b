import { backgroundKey } from '../../../common/checkpoint-keys';
import type { Clock } from '../../../common/clock';
import type { Logger } from '../../../common/logging';
import { shipRunningCopy, type RunningDumper } from '../checkpoint/running-copy';
import type { CheckpointShipper } from '../checkpoint/staging';
import type { Buddy } from './buddy-client';
import type { SentCheckpoint, SentLedger } from './sent-ledger';

/** The running tasks the sidecar owns (TaskRuntime). */
export interface RunningTasks {
  list(): readonly {
    readonly taskId: string;
    readonly phase: string;
    readonly exit?: { readonly exitCode: number };
  }[];
}

/** Serialises everything that dumps one task (a migration and a background checkpoint never overlap). */
export interface TaskLocks {
  withTask<T>(taskId: string, work: () => Promise<T>): Promise<T>;
}

export interface BackgroundCheckpointerDeps {
  readonly tasks: RunningTasks;
  readonly dumper: RunningDumper;
  readonly shipper: CheckpointShipper;
  /** Told to drop the checkpoints of tasks that left this node. */
  readonly buddy: Buddy;
  /** The tasks with a checkpoint on the buddy, kept across restarts so that their forget still reaches it. */
  readonly sent: SentLedger;
  readonly locks: TaskLocks;
  readonly clock: Clock;
  readonly log: Logger;
  /** How often each running task is checkpointed to the buddy. */
  readonly intervalMs: number;
  /** host:port of the buddy node's sidecar (State Transfer Protocol). */
  readonly buddyAddress: string;
}

export type BackgroundStatus = SentCheckpoint;

export { backgroundKey };

/**
 * Incremental background checkpoints: every interval, each running task is dumped without stopping it and
 * shipped to a buddy node. The transfer is content-addressed, so only chunks the buddy lacks travel. A node
 * that disappears without warning loses at most one interval of its tasks' state: the buddy restores the
 * newest checkpoint instead of a cold start. A task that left the node (moved, stopped, destroyed) has its
 * checkpoint dropped on the buddy, which keeps only the newest one of each task still running here.
 */
export class BackgroundCheckpointer {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;

  constructor(private readonly deps: BackgroundCheckpointerDeps) {}

  start(): void {
    this.timer = setInterval(() => {
      this.round ??= this.checkpointAll().finally(() => (this.round = undefined));
    }, this.deps.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.round;
  }

  status(): ReadonlyMap<string, BackgroundStatus> {
    return this.deps.sent.view();
  }

  /**
   * One round over every running task, then the buddy forgets the tasks that left since the last round (moved,
   * ended cleanly or destroyed); a failure on one task is logged and does not stop the others (a forget that
   * fails is tried again next round).
   */
  async checkpointAll(): Promise<void> {
    const running = new Set(
      this.deps.tasks
        .list()
        .filter((t) => t.phase === 'running')
        .map((t) => t.taskId),
    );
    for (const taskId of running) {
      try {
        await this.deps.locks.withTask(taskId, () => this.checkpoint(taskId));
      } catch (err) {
        this.deps.log.warn({ err, taskId, buddy: this.deps.buddyAddress }, 'background checkpoint failed');
      }
    }
    // A task that died (killed, crashed: a non-zero exit) or is held frozen keeps its copy on the buddy: it may be
    // the newest whole state of the task left anywhere, until the task is destroyed.
    const keep = new Set(
      this.deps.tasks
        .list()
        .filter((t) => t.phase === 'held' || (t.phase === 'exited' && (t.exit?.exitCode ?? 0) !== 0))
        .map((t) => t.taskId),
    );
    for (const taskId of [...this.deps.sent.view().keys()].filter((id) => !running.has(id) && !keep.has(id))) {
      try {
        const deleted = await this.deps.buddy.forget(taskId);
        await this.deps.sent.drop(taskId);
        this.deps.log.debug({ taskId, deleted }, 'task left: its background checkpoint forgotten');
      } catch (err) {
        this.deps.log.warn({ err, taskId, buddy: this.deps.buddyAddress }, 'cannot forget background checkpoint');
      }
    }
  }

  private async checkpoint(taskId: string): Promise<void> {
    const copy = await shipRunningCopy(this.deps, {
      taskId,
      handoverKey: backgroundKey(taskId),
      peerAddress: this.deps.buddyAddress,
    });
    const status = {
      checkpointId: copy.meta.checkpointId,
      atUnixMs: this.deps.clock.now(),
      wireBytes: copy.wireBytes,
      dumpMs: copy.dumpMs,
    };
    await this.deps.sent.record(taskId, status);
    this.deps.log.debug({ taskId, ...status }, 'background checkpoint shipped');
  }
}

/** A promise chain per task: the simplest lock that keeps dumps of one task in order. */
export class TaskLockTable implements TaskLocks {
  private readonly tails = new Map<string, Promise<unknown>>();

  async withTask<T>(taskId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(taskId) ?? Promise.resolve();
    const run = previous.then(work, work);
    const tail = run.catch(() => undefined);
    this.tails.set(taskId, tail);
    try {
      return await run;
    } finally {
      if (this.tails.get(taskId) === tail) this.tails.delete(taskId);
    }
  }
}
