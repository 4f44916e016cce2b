import type { Instance } from '../../common/router';
import type { MigrationMode, TaskIdentity, TaskSpec } from '../../proto/gen/chain/v1/sidecar';

/**
 * The steps of a chained migration, in order. A record is journaled before the sequence acts on its step,
 * so a crash at any point resumes from the last step known to be done.
 */
export const FORWARD_STEPS = [
  'planned',
  'left-rotation',
  'handed-over',
  'restored',
  'joined-rotation',
  'cleaned-up',
  'done',
] as const;
export type ForwardStep = (typeof FORWARD_STEPS)[number];
/**
 * `restoring-from-buddy`: the source is gone before any hand-over reached the target; the newest background
 * checkpoint of the task, held by the source's buddy, is chosen and about to be restored (then `restored`).
 * `rolled-back`: the source runs and serves again. `failed`: an operator must act; a restorable checkpoint remains.
 */
export type MigrationStep = ForwardStep | 'restoring-from-buddy' | 'rolled-back' | 'failed';

/**
 * How the sequence knew the source's copy cannot run any more (a task runs in exactly one place): its own
 * sidecar answered that the task is not running there (`source-reports-gone`: the node came back empty), or the
 * controller had killed the node itself (`node-down`: a pre-emption it carried out). A source that merely does
 * not answer is never fenced: it may be cut off and still running.
 */
export type SourceFence = 'source-reports-gone' | 'node-down';

/** The background checkpoint a task was brought back from when its source died before the hand-over. */
export interface BuddyRestore {
  /** The node that held the checkpoint (the source's buddy). */
  readonly node: string;
  readonly checkpointId: string;
  readonly checkpointAtUnixMs: number;
  /** How old the checkpoint's state was when it was chosen: what the task lost. */
  readonly ageMs: number;
  readonly fencedBy: SourceFence;
}

export interface MigrationEnd {
  readonly source: TaskSide;
  readonly target: TaskSide;
}

export interface TaskSide {
  readonly node: string;
  readonly taskId: string;
  readonly identity: TaskIdentity;
  /** The task's own directories and network on that node. */
  readonly spec: TaskSpec;
  readonly instance: Instance;
}

export interface MigrationRecord {
  readonly id: string;
  /** The scheduler's stable name for the workload (survives the move; task ids do not). */
  readonly taskKey: string;
  readonly handoverKey: string;
  readonly mode: MigrationMode;
  readonly source: TaskSide;
  readonly target: TaskSide;
  /** host:port of the target sidecar's State Transfer Protocol server. */
  readonly targetTransferAddress: string;
  readonly step: MigrationStep;
  readonly createdAtUnixMs: number;
  readonly updatedAtUnixMs: number;
  readonly checkpointId?: string;
  readonly wireBytes?: number;
  /** Of the checkpoint's size, the bytes of the task's files; the rest is memory and process state. */
  readonly fileBytes?: number;
  readonly checkpointBytes?: number;
  readonly freezeMs?: number;
  /** Why `mode` is the one used: the rule that resolved an automatic choice, or the override that set it. */
  readonly modeReason?: string;
  /**
   * Post-copy's danger window: from the target's restore to the moment the source's last page left it (the
   * source frozen throughout, never killed). A failure inside it kills the target's copy before the source runs.
   */
  readonly lazyWindowMs?: number;
  /** Set when the task was restored from a background checkpoint rather than handed over. */
  readonly restoredFromBuddy?: BuddyRestore;
  /** Wall-clock time of each step's completion, for the operator's timeline. */
  readonly stepsAtUnixMs: Readonly<Partial<Record<MigrationStep, number>>>;
  readonly error?: { readonly code: string; readonly message: string; readonly step: MigrationStep };
}

export function isFinished(record: Pick<MigrationRecord, 'step'>): boolean {
  return record.step === 'done' || record.step === 'rolled-back' || record.step === 'failed';
}
