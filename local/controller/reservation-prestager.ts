import type { Clock } from '../../common/clock';
import { errorCode, errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logging';
import type { NodeSidecars } from '../migration/migration-sequence';

/** One chained task to copy ahead of its drain, to the node its reservation holds room on. */
export interface PrestageItem {
  readonly taskKey: string;
  readonly taskId: string;
  readonly sourceNode: string;
  readonly targetNode: string;
  /** host:port of the target's State Transfer Protocol server; empty when the target is not usable now. */
  readonly targetAddress: string;
}

export type PrestageOutcome =
  | {
      readonly taskKey: string;
      readonly target: string;
      readonly outcome: 'staged';
      readonly checkpointId: string;
      readonly wireBytes: number;
      readonly dumpMs: number;
      readonly shipMs: number;
    }
  | {
      readonly taskKey: string;
      readonly target: string;
      readonly outcome: 'failed';
      readonly code: string;
      readonly error: string;
    };

export interface ReservationPrestagerDeps {
  readonly sidecars: NodeSidecars;
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * Pre-staging for local mode: each chained task of a fenced node is copied, still running, to the node its
 * reservation holds room on, so the drain's final checkpoint sends only what changed since. A pre-stage is an
 * optimisation and never a precondition: a failure is reported per task and the drain moves the task anyway.
 * The copies are never restored; once a task has moved (or its reservation is given back) its copy is deleted.
 */
export class ReservationPrestager {
  /** taskKey → where its pre-staged copy sits. */
  private readonly staged = new Map<string, { readonly node: string; readonly checkpointId: string }>();

  constructor(private readonly deps: ReservationPrestagerDeps) {}

  /** One task after another: the dumps share the node's CPU and disk with the tasks still serving. */
  async prestage(items: readonly PrestageItem[]): Promise<PrestageOutcome[]> {
    const outcomes: PrestageOutcome[] = [];
    for (const item of items) outcomes.push(await this.prestageOne(item));
    return outcomes;
  }

  /** Deletes a task's pre-staged copy, if it has one. Never fails: a copy left behind only waits for the store bound. */
  async discard(taskKey: string): Promise<void> {
    const copy = this.staged.get(taskKey);
    if (copy === undefined) return;
    this.staged.delete(taskKey);
    await this.deleteCopy(taskKey, copy);
  }

  private async prestageOne(item: PrestageItem): Promise<PrestageOutcome> {
    const log = this.deps.log.child({ taskKey: item.taskKey, source: item.sourceNode, target: item.targetNode });
    if (item.targetAddress === '') {
      const error = `reserved target ${item.targetNode} is not healthy or has no transfer address`;
      log.warn({ code: 'NC_PRESTAGE_TARGET_UNAVAILABLE' }, 'pre-stage skipped: the drain moves the task anyway');
      return {
        taskKey: item.taskKey,
        target: item.targetNode,
        outcome: 'failed',
        code: 'NC_PRESTAGE_TARGET_UNAVAILABLE',
        error,
      };
    }
    const started = this.deps.clock.now();
    try {
      const response = await this.deps.sidecars
        .sidecar(item.sourceNode)
        .prestageTask({ taskId: item.taskId, peerAddress: item.targetAddress });
      const checkpointId = response.checkpoint?.checkpointId ?? '';
      const previous = this.staged.get(item.taskKey);
      this.staged.set(item.taskKey, { node: item.targetNode, checkpointId });
      // A repeated pre-stage to the same node replaced its copy there (same key); one elsewhere did not.
      if (previous !== undefined && previous.node !== item.targetNode) await this.deleteCopy(item.taskKey, previous);
      log.info(
        {
          checkpointId,
          wireBytes: response.wireBytes,
          dumpMs: response.dumpMs,
          shipMs: response.shipMs,
          totalMs: this.deps.clock.now() - started,
        },
        'task pre-staged on its reserved target',
      );
      return {
        taskKey: item.taskKey,
        target: item.targetNode,
        outcome: 'staged',
        checkpointId,
        wireBytes: response.wireBytes,
        dumpMs: response.dumpMs,
        shipMs: response.shipMs,
      };
    } catch (err) {
      log.warn({ err }, 'pre-stage failed: the drain moves the task anyway');
      return {
        taskKey: item.taskKey,
        target: item.targetNode,
        outcome: 'failed',
        code: errorCode(err) ?? 'NC_PRESTAGE_FAILED',
        error: errorMessage(err),
      };
    }
  }

  private async deleteCopy(taskKey: string, copy: { readonly node: string; readonly checkpointId: string }) {
    try {
      await this.deps.sidecars.sidecar(copy.node).deleteCheckpoint({ checkpointId: copy.checkpointId });
      this.deps.log.debug({ taskKey, node: copy.node, checkpointId: copy.checkpointId }, 'pre-staged copy deleted');
    } catch (err) {
      this.deps.log.warn({ err, taskKey, node: copy.node }, 'pre-staged copy not deleted: left to the store bound');
    }
  }
}
