/** Where a joining trace node landed: a local node, or none (virtual). */
export type Claim =
  { readonly slot: string; readonly wasDown: boolean } | { readonly slot: undefined; readonly wasDown: false };

/**
 * Maps trace nodes onto the few local nodes. Traces name far more nodes than a laptop runs (every spot add is
 * a new name), so a joining trace node takes any free local node and gives it back when it is pre-empted; with
 * none free it is virtual. Free nodes that never went down are taken first: they need no restart.
 */
export class SlotMap {
  private readonly bySlot = new Map<string, string | undefined>();
  private readonly byNode = new Map<string, string>();
  private readonly down = new Set<string>();

  constructor(slots: readonly string[]) {
    for (const slot of slots) this.bySlot.set(slot, undefined);
  }

  slotOf(node: string): string | undefined {
    return this.byNode.get(node);
  }

  claim(node: string): Claim {
    const existing = this.byNode.get(node);
    if (existing !== undefined) return { slot: existing, wasDown: false };
    const free = [...this.bySlot].filter(([, holder]) => holder === undefined).map(([slot]) => slot);
    const slot = free.find((s) => !this.down.has(s)) ?? free[0];
    if (slot === undefined) return { slot: undefined, wasDown: false };
    const wasDown = this.down.delete(slot);
    this.bySlot.set(slot, node);
    this.byNode.set(node, slot);
    return { slot, wasDown };
  }

  /** The trace node was pre-empted: its local node is down and free for the next join. */
  release(node: string): string | undefined {
    const slot = this.byNode.get(node);
    if (slot === undefined) return undefined;
    this.byNode.delete(node);
    this.bySlot.set(slot, undefined);
    this.down.add(slot);
    return slot;
  }
}
