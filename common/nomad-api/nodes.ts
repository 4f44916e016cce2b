import type { NomadHttp, QueryOptions, QueryResult } from './http';
import type { Allocation, Node, NodeListStub } from './types';

export interface ListNodesOptions extends QueryOptions {
  /** Server-side filter expression (`?filter=`). @default none */
  readonly filter?: string;
}

/** `GET /v1/nodes`, `GET /v1/node/:id`, `GET /v1/node/:id/allocations`. */
export class Nodes {
  constructor(private readonly http: NomadHttp) {}

  async list(options: ListNodesOptions = {}): Promise<QueryResult<NodeListStub[]>> {
    return this.http.query<NodeListStub[]>('/v1/nodes', { filter: options.filter }, options);
  }

  async get(nodeId: string, options: QueryOptions = {}): Promise<QueryResult<Node>> {
    return this.http.query<Node>(`/v1/node/${encodeURIComponent(nodeId)}`, {}, options);
  }

  async allocations(nodeId: string, options: QueryOptions = {}): Promise<QueryResult<Allocation[]>> {
    return this.http.query<Allocation[]>(`/v1/node/${encodeURIComponent(nodeId)}/allocations`, {}, options);
  }
}
