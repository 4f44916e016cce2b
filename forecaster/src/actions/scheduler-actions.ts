/**
 * What the forecaster asks of the scheduler, by role. Nomad mode implements it over Nomad's HTTP API
 * (NomadSchedulerActions); local mode's controller implements it over its own placement. Every call carries the
 * decision's reason so the scheduler records why (Nomad: drain Meta and node meta).
 */
export interface SchedulerActions {
  /** Stop new placements on the node (Nomad: eligibility "ineligible"). Idempotent. */
  fence(node: string, reason: string): Promise<void>;
  /** Hold capacity on healthy nodes for the node's chained tasks. Fails (SchedulerActionError) if there is none. */
  reserve(node: string, reason: string): Promise<Reservation>;
  /**
   * Copy the chained tasks' checkpoints to the reserved nodes ahead of the drain. Fails when any task was not
   * copied; the caller goes on to the drain regardless (a pre-stage only shortens the drain's transfer).
   */
  prestage(node: string, reservation: Reservation): Promise<void>;
  /** Start the drain; allocations still there after `deadlineMs` are stopped by the scheduler. */
  drain(node: string, request: DrainRequest): Promise<void>;
  /** Give reserved capacity back. Idempotent. */
  release(reservation: Reservation): Promise<void>;
  /** Undo a fence: the node takes new placements again. Idempotent. */
  unfence(node: string, reason: string): Promise<void>;
}

export interface Reservation {
  /** The adapter's handle (Nomad: the placeholder job's ID). */
  readonly id: string;
  /** The node the capacity is held for. */
  readonly node: string;
  /** Healthy nodes holding the capacity (may be empty when the node runs no chained task). */
  readonly targets: readonly string[];
  /** Chained tasks covered. */
  readonly tasks: number;
  /** Why chained tasks on the node are left without reserved capacity (shown in the risk API). @default none */
  readonly skipped?: string;
}

export interface DrainRequest {
  readonly deadlineMs: number;
  readonly reason: string;
  /** The forecaster decision behind the drain, recorded with it. */
  readonly decisionId: number;
}
