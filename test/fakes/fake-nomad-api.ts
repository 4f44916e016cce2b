import type {
  Allocation,
  AllocationListStub,
  Job,
  JobRegisterResponse,
  Node,
  NodeListStub,
  NodeUpdateResponse,
  NomadApi,
  QueryResult,
  SchedulerConfigurationResponse,
} from '../../common/nomad-api';

/**
 * Nomad's API as the forecaster's scheduler actions call it, in memory: one node list, the allocations each node
 * runs, the scheduler configuration, and a placeholder job's groups that Nomad places on `placeOn` once it has
 * been looked at more than `placedAfter` times. It serves only those calls; any other is missing and fails the
 * test loudly (`api` hands it over as the whole interface).
 */
export class FakeNomadApi implements Partial<NomadApi> {
  /** What listNodes answers, or the error it fails with. */
  nodes: NodeListStub[] | Error = [{ ID: 'id-a', Name: 'a' } as NodeListStub];
  /** What every node runs (nodeAllocations). */
  allocs: Allocation[] = [];
  /** What schedulerConfiguration answers, or the error it fails with. @default service-job preemption on */
  config: SchedulerConfigurationResponse | Error = {
    SchedulerConfig: { PreemptionConfig: { ServiceSchedulerEnabled: true } },
  } as SchedulerConfigurationResponse;
  readonly registered: Job[] = [];
  /** node ID → its driver.chain.transfer_address (getNode); a node not here publishes none. */
  addresses: Record<string, string | undefined> = {};
  /** listAllocations calls so far. */
  looks = 0;
  /** How many looks see nothing placed yet. @default 0 */
  placedAfter = 0;
  /** Places only this many of the placeholder's groups. @default all */
  placeOnly: number | undefined;
  /** Where the placeholder's groups land. */
  placeOn = { id: 'id-b', name: 'b' };

  get api(): NomadApi {
    return this as unknown as NomadApi;
  }

  listNodes(): Promise<QueryResult<NodeListStub[]>> {
    if (this.nodes instanceof Error) return Promise.reject(this.nodes);
    return Promise.resolve({ value: this.nodes, lastIndex: 1 });
  }

  nodeAllocations(): Promise<QueryResult<Allocation[]>> {
    return Promise.resolve({ value: this.allocs, lastIndex: 1 });
  }

  schedulerConfiguration(): Promise<QueryResult<SchedulerConfigurationResponse>> {
    if (this.config instanceof Error) return Promise.reject(this.config);
    return Promise.resolve({ value: this.config, lastIndex: 1 });
  }

  registerJob(job: Job): Promise<JobRegisterResponse> {
    this.registered.push(job);
    return Promise.resolve({ EvalID: 'e', EvalCreateIndex: 2, JobModifyIndex: 2, Warnings: '' });
  }

  listAllocations(): Promise<QueryResult<AllocationListStub[]>> {
    this.looks += 1;
    const groups = (this.registered[0]?.TaskGroups ?? []) as { Name: string }[];
    const placed = this.looks <= this.placedAfter ? [] : groups.slice(0, this.placeOnly ?? groups.length);
    return Promise.resolve({
      value: placed.map(
        (g) =>
          ({
            TaskGroup: g.Name,
            NodeID: this.placeOn.id,
            NodeName: this.placeOn.name,
            DesiredStatus: 'run',
          }) as AllocationListStub,
      ),
      lastIndex: 3,
    });
  }

  getNode(id: string): Promise<QueryResult<Node>> {
    const address = this.addresses[id];
    return Promise.resolve({
      value: {
        ID: id,
        Attributes: address === undefined ? {} : { 'driver.chain.transfer_address': address },
      } as unknown as Node,
      lastIndex: 1,
    });
  }

  setEligibility(): Promise<NodeUpdateResponse> {
    return Promise.resolve({ NodeModifyIndex: 2, EvalIDs: null, EvalCreateIndex: 2 });
  }
}
