/** An allocation's place in its lineage, as Nomad's HTTP API reports it (GET /v1/allocation/:id). */
export interface AllocationInfo {
  readonly id: string;
  readonly nodeId: string;
  /** The allocation this one replaces; set by the scheduler on replacements, reschedules and drains. */
  readonly previousAllocation: string | undefined;
  /** The allocation that replaces this one. */
  readonly nextAllocation: string | undefined;
  /** DesiredTransition.Migrate: the drainer is moving this allocation. */
  readonly migrate: boolean;
  /** run, stop or evict (evict = preempted). */
  readonly desiredStatus: string;
}

/**
 * How the plugin learns whether a stop is a migration and where a replacement came from: TaskConfig carries
 * only the current allocation, so this is Nomad's HTTP API (NOMAD-FACTS §4). Without one (nomad_address = "")
 * every stop is a plain stop and a start only takes a checkpoint that is already waiting for it.
 */
export interface AllocationLookup {
  allocation(allocId: string): Promise<AllocationInfo>;
  /** A node's attributes, where every chain plugin publishes its sidecar's transfer address. */
  nodeAttributes(nodeId: string): Promise<Readonly<Record<string, string>>>;
}
