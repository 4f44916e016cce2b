import type { NomadHttp, QueryOptions, QueryResult } from './http';
import type { AllocStopResponse, Allocation, AllocationListStub } from './types';

export interface ListAllocationsOptions extends QueryOptions {
  /** Namespace, or `*` for all. @default the client's namespace */
  readonly namespace?: string;
  /** Server-side filter expression. @default none */
  readonly filter?: string;
  /** Include task states in the stubs. @default false */
  readonly taskStates?: boolean;
}

/** `GET /v1/allocations`, `GET /v1/allocation/:id`, `PUT /v1/allocation/:id/stop`. */
export class Allocations {
  constructor(private readonly http: NomadHttp) {}

  /** Stubs carry NextAllocation but not PreviousAllocation: read one allocation for its lineage. */
  async list(options: ListAllocationsOptions = {}): Promise<QueryResult<AllocationListStub[]>> {
    return this.http.query<AllocationListStub[]>(
      '/v1/allocations',
      {
        namespace: options.namespace ?? this.http.config.namespace,
        filter: options.filter,
        task_states: options.taskStates === undefined ? undefined : String(options.taskStates),
      },
      options,
    );
  }

  async get(allocId: string, options: QueryOptions = {}): Promise<QueryResult<Allocation>> {
    return this.http.query<Allocation>(
      `/v1/allocation/${encodeURIComponent(allocId)}`,
      { namespace: this.http.config.namespace },
      options,
    );
  }

  /** Stops the allocation; Nomad reschedules it as a replacement with PreviousAllocation set. */
  async stop(allocId: string): Promise<AllocStopResponse> {
    return this.http.write<AllocStopResponse>('PUT', `/v1/allocation/${encodeURIComponent(allocId)}/stop`, undefined, {
      namespace: this.http.config.namespace,
    });
  }
}
