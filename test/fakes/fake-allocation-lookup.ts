import type { AllocationInfo, AllocationLookup } from '../../plugin/src/allocation-lookup';

/** Allocation lineage and node attributes from maps a test fills; unknown ids fail like a 404. */
export class FakeAllocationLookup implements AllocationLookup {
  readonly allocations = new Map<string, AllocationInfo>();
  readonly nodes = new Map<string, Record<string, string>>();
  failure: Error | undefined;

  put(alloc: Partial<AllocationInfo> & { id: string }): void {
    this.allocations.set(alloc.id, {
      nodeId: 'node-a',
      previousAllocation: undefined,
      nextAllocation: undefined,
      migrate: false,
      desiredStatus: 'run',
      ...alloc,
    });
  }

  async allocation(allocId: string): Promise<AllocationInfo> {
    if (this.failure !== undefined) throw this.failure;
    const alloc = this.allocations.get(allocId);
    if (alloc === undefined) throw new Error(`allocation ${allocId} not found`);
    return alloc;
  }

  async nodeAttributes(nodeId: string): Promise<Readonly<Record<string, string>>> {
    if (this.failure !== undefined) throw this.failure;
    return this.nodes.get(nodeId) ?? {};
  }
}
