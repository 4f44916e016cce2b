import type { NomadHttp } from './http';
import type { NodeUpdateEligibilityRequest, NodeUpdateResponse } from './types';

/** `PUT /v1/node/:id/eligibility`: fence a node from new work, or open it again (refused while draining). */
export class NodeEligibility {
  constructor(private readonly http: NomadHttp) {}

  async set(nodeId: string, eligible: boolean): Promise<NodeUpdateResponse> {
    const request: NodeUpdateEligibilityRequest = {
      NodeID: nodeId,
      Eligibility: eligible ? 'eligible' : 'ineligible',
    };
    return this.http.write<NodeUpdateResponse>('PUT', `/v1/node/${encodeURIComponent(nodeId)}/eligibility`, request);
  }
}
