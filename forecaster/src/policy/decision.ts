/**
 * What the policy decided for one node on one tick, and why. Decisions are the forecaster's audit trail: the
 * risk API shows them, the actions carry their reasons to the scheduler (drain meta), and tests read them.
 */
export type DecisionAction =
  /** Mark ineligible, reserve capacity for its chained tasks elsewhere, pre-stage their checkpoints. */
  | 'fence'
  /** Start the scheduler's drain, with a deadline. */
  | 'drain'
  /** Risk fell before the drain started: eligible again, reservation released. */
  | 'undo'
  /** Above threshold but held back (budget, cooldown, capacity): nothing is done, the reason is recorded. */
  | 'hold';

export interface Decision {
  readonly id: number;
  readonly node: string;
  readonly pool: string;
  readonly nodeClass: string;
  readonly atMs: number;
  readonly action: DecisionAction;
  readonly risk: number;
  readonly reasons: readonly string[];
  /** Drain only: how long the scheduler has before it stops what is left. */
  readonly deadlineMs?: number;
  /** What acted: a terminal notice, or the level the risk crossed; absent on an undo after a failed action. */
  readonly level?: DecisionLevel;
  /** The level's threshold (not for a notice). */
  readonly threshold?: number;
  /** Where the thresholds came from: "config policy.pools.spot", "model card <version>" or "defaults". */
  readonly thresholdSource?: string;
}

/**
 * notice: a cloud's terminal notice drains at once; prewarn: at or above the pre-warn threshold (fence, or a
 * hold); drain: a fenced node at or above the drain threshold; exit: a fenced node fell below the exit threshold.
 */
export type DecisionLevel = 'notice' | 'prewarn' | 'drain' | 'exit';
