import type { Clock } from '../../../common/clock';
import type { Logger } from '../../../common/logging';
import type { TaskLocks } from '../background/background-checkpointer';
import { TaskError } from '../errors';
import { shipRunningCopy, type RunningCopy, type RunningDumper } from './running-copy';
import type { CheckpointShipper } from './staging';

export interface PrestagerDeps {
  readonly dumper: RunningDumper;
  readonly shipper: CheckpointShipper;
  /** The same table migrations and background checkpoints take: a pre-stage never overlaps a hand-over. */
  readonly locks: TaskLocks;
  readonly clock: Clock;
  readonly log: Logger;
}

/** The key a task's pre-staged copy is filed under on the target: never a key a migration's restore asks for. */
export function prestageKey(taskId: string): string {
  return `prestage/${taskId}`;
}

/**
 * Pre-staging ahead of a drain: a running task's copy goes to the node that will receive it, while the task
 * keeps running here. The copy is never restored; its chunks let the drain's final checkpoint send only what
 * changed since. A task already handed over fails with NC_TASK_NOT_RUNNING (the dump refuses it), so a
 * pre-stage can never make a task run in two places.
 */
export class TaskPrestager {
  constructor(private readonly deps: PrestagerDeps) {}

  async prestage(taskId: string, peerAddress: string): Promise<RunningCopy> {
    if (taskId === '' || peerAddress === '') {
      throw new TaskError('NC_TASK_SPEC_INVALID', 'a pre-stage needs task_id and peer_address', {
        context: { taskId, peerAddress },
      });
    }
    const copy = await this.deps.locks.withTask(taskId, () =>
      shipRunningCopy(this.deps, { taskId, handoverKey: prestageKey(taskId), peerAddress }),
    );
    this.deps.log.info(
      {
        taskId,
        peer: peerAddress,
        checkpointId: copy.meta.checkpointId,
        wireBytes: copy.wireBytes,
        dumpMs: copy.dumpMs,
        shipMs: copy.shipMs,
      },
      'task pre-staged',
    );
    return copy;
  }
}
