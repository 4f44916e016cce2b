import type { NomadHttp, QueryOptions, QueryResult } from './http';
import type { NodeMetaApplyRequest, NodeMetaResponse } from './types';

/**
 * `GET|POST /v1/client/metadata`: dynamic node metadata (Nomad >= 1.5). Through a server the node ID is
 * required; against a client agent it may be left out to mean that client.
 */
export class NodeMeta {
  constructor(private readonly http: NomadHttp) {}

  async read(nodeId?: string, options: QueryOptions = {}): Promise<QueryResult<NodeMetaResponse>> {
    return this.http.query<NodeMetaResponse>('/v1/client/metadata', { node_id: nodeId }, options);
  }

  /** Sets keys; a null value unsets one. */
  async apply(meta: Readonly<Record<string, string | null>>, nodeId?: string): Promise<NodeMetaResponse> {
    const request: NodeMetaApplyRequest = { Meta: { ...meta } };
    if (nodeId !== undefined) request.NodeID = nodeId;
    return this.http.write<NodeMetaResponse>('POST', '/v1/client/metadata', request);
  }
}
