import type { NomadApi } from '../../common/nomad-api';
import type { AllocationInfo, AllocationLookup } from './allocation-lookup';

/** AllocationLookup over Nomad's HTTP API (GET /v1/allocation/:id and /v1/node/:id). */
export class NomadAllocationLookup implements AllocationLookup {
  constructor(private readonly nomad: NomadApi) {}

  async allocation(allocId: string): Promise<AllocationInfo> {
    const { value } = await this.nomad.getAllocation(allocId);
    return {
      id: value.ID,
      nodeId: value.NodeID,
      previousAllocation: value.PreviousAllocation === '' ? undefined : value.PreviousAllocation,
      nextAllocation: value.NextAllocation === '' ? undefined : value.NextAllocation,
      migrate: value.DesiredTransition?.Migrate === true,
      desiredStatus: value.DesiredStatus,
    };
  }

  async nodeAttributes(nodeId: string): Promise<Readonly<Record<string, string>>> {
    const { value } = await this.nomad.getNode(nodeId);
    return value.Attributes ?? {};
  }
}
