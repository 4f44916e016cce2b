/** A node as placement sees it. */
export interface PlacementNode {
  readonly name: string;
  readonly address: string;
  /** host:port of the node's sidecar State Transfer Protocol server. */
  readonly transferAddress: string;
  readonly eligible: boolean;
  readonly draining: boolean;
  readonly healthy: boolean;
  /** Chained tasks running there now, and how many it may hold. */
  readonly tasks: number;
  readonly capacity: number;
}

/**
 * What the migration sequence and the forecaster ask of the scheduler: the local controller in local mode,
 * Nomad's API in Nomad mode. Placement stays the scheduler's; nomad-chain never re-implements it.
 */
export interface SchedulerAdapter {
  nodes(): Promise<PlacementNode[]>;
  /** Fence (ineligible) or re-admit a node, with the reason recorded where operators look. */
  setEligibility(node: string, eligible: boolean, reason: string): Promise<void>;
  /** Start draining a node: its chained tasks move, the rest stop. */
  drain(node: string, options: { readonly deadlineMs: number; readonly reason: string }): Promise<void>;
  /** The scheduler's record of where a task runs now, after a migration finished or rolled back. */
  taskPlaced(taskKey: string, node: string, taskId: string): Promise<void>;
}

/** A healthy, eligible, non-draining node with room, the emptiest first; undefined when none has room. */
export function pickTarget(nodes: readonly PlacementNode[], exclude: string): PlacementNode | undefined {
  return nodes
    .filter((n) => n.name !== exclude && n.healthy && n.eligible && !n.draining && n.tasks < n.capacity)
    .sort((a, b) => a.tasks / a.capacity - b.tasks / b.capacity || a.name.localeCompare(b.name))[0];
}
