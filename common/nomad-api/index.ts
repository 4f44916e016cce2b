import type { Clock } from '../clock';
import { Allocations } from './allocations';
import type { ListAllocationsOptions } from './allocations';
import { EventStream } from './event-stream';
import type { EventStreamOptions } from './event-stream';
import { NomadHttp } from './http';
import type { NomadHttpOptions, QueryOptions, QueryResult } from './http';
import { Jobs } from './jobs';
import { NodeDrain } from './node-drain';
import type { CancelDrainOptions, DrainNodeOptions } from './node-drain';
import { NodeEligibility } from './node-eligibility';
import { NodeMeta } from './node-meta';
import { Nodes } from './nodes';
import { OperatorScheduler } from './operator-scheduler';
import type { ListNodesOptions } from './nodes';
import type {
  AllocStopResponse,
  Allocation,
  AllocationListStub,
  Events,
  Job,
  JobDeregisterResponse,
  JobRegisterResponse,
  Node,
  NodeListStub,
  NodeMetaResponse,
  NodeUpdateResponse,
  SchedulerConfiguration,
  SchedulerConfigurationResponse,
  SchedulerSetConfigurationResponse,
} from './types';

export { NomadApiError } from './errors';
export type { NomadApiErrorCode } from './errors';
export type { NomadHttpOptions, NomadHttpConfig, NomadTlsOptions, QueryOptions, QueryResult } from './http';
export type { EventStreamOptions } from './event-stream';
export type { DrainNodeOptions, CancelDrainOptions } from './node-drain';
export type { ListAllocationsOptions } from './allocations';
export type { ListNodesOptions } from './nodes';
export type * from './types';

/** What nomad-chain asks of Nomad; the forecaster, the plugin and the tests depend on this, not on HTTP. */
export interface NomadApi {
  listNodes(options?: ListNodesOptions): Promise<QueryResult<NodeListStub[]>>;
  getNode(nodeId: string, options?: QueryOptions): Promise<QueryResult<Node>>;
  nodeAllocations(nodeId: string, options?: QueryOptions): Promise<QueryResult<Allocation[]>>;
  drainNode(nodeId: string, options: DrainNodeOptions): Promise<NodeUpdateResponse>;
  cancelDrain(nodeId: string, options?: CancelDrainOptions): Promise<NodeUpdateResponse>;
  setEligibility(nodeId: string, eligible: boolean): Promise<NodeUpdateResponse>;
  listAllocations(options?: ListAllocationsOptions): Promise<QueryResult<AllocationListStub[]>>;
  getAllocation(allocId: string, options?: QueryOptions): Promise<QueryResult<Allocation>>;
  stopAllocation(allocId: string): Promise<AllocStopResponse>;
  events(options?: EventStreamOptions): AsyncGenerator<Events, void, undefined>;
  parseJob(jobHcl: string): Promise<Job>;
  registerJob(job: Job): Promise<JobRegisterResponse>;
  deregisterJob(jobId: string, options?: { purge?: boolean }): Promise<JobDeregisterResponse>;
  readNodeMeta(nodeId?: string, options?: QueryOptions): Promise<QueryResult<NodeMetaResponse>>;
  applyNodeMeta(meta: Readonly<Record<string, string | null>>, nodeId?: string): Promise<NodeMetaResponse>;
  schedulerConfiguration(options?: QueryOptions): Promise<QueryResult<SchedulerConfigurationResponse>>;
  setSchedulerConfiguration(
    config: SchedulerConfiguration,
    options?: { casIndex?: number },
  ): Promise<SchedulerSetConfigurationResponse>;
}

/** NomadApi over Nomad's HTTP API, one endpoint file per concern (like nomad-driver-podman's API client). */
export class HttpNomadApi implements NomadApi {
  readonly http: NomadHttp;
  private readonly nodes: Nodes;
  private readonly drain: NodeDrain;
  private readonly eligibility: NodeEligibility;
  private readonly allocations: Allocations;
  private readonly eventStream: EventStream;
  private readonly jobs: Jobs;
  private readonly nodeMeta: NodeMeta;
  private readonly operatorScheduler: OperatorScheduler;

  constructor(options: NomadHttpOptions = {}, clock?: Clock) {
    this.http = new NomadHttp(options);
    this.nodes = new Nodes(this.http);
    this.drain = new NodeDrain(this.http);
    this.eligibility = new NodeEligibility(this.http);
    this.allocations = new Allocations(this.http);
    this.eventStream = new EventStream(this.http, clock);
    this.jobs = new Jobs(this.http);
    this.nodeMeta = new NodeMeta(this.http);
    this.operatorScheduler = new OperatorScheduler(this.http);
  }

  listNodes(options?: ListNodesOptions): Promise<QueryResult<NodeListStub[]>> {
    return this.nodes.list(options);
  }

  getNode(nodeId: string, options?: QueryOptions): Promise<QueryResult<Node>> {
    return this.nodes.get(nodeId, options);
  }

  nodeAllocations(nodeId: string, options?: QueryOptions): Promise<QueryResult<Allocation[]>> {
    return this.nodes.allocations(nodeId, options);
  }

  drainNode(nodeId: string, options: DrainNodeOptions): Promise<NodeUpdateResponse> {
    return this.drain.drain(nodeId, options);
  }

  cancelDrain(nodeId: string, options?: CancelDrainOptions): Promise<NodeUpdateResponse> {
    return this.drain.cancel(nodeId, options);
  }

  setEligibility(nodeId: string, eligible: boolean): Promise<NodeUpdateResponse> {
    return this.eligibility.set(nodeId, eligible);
  }

  listAllocations(options?: ListAllocationsOptions): Promise<QueryResult<AllocationListStub[]>> {
    return this.allocations.list(options);
  }

  getAllocation(allocId: string, options?: QueryOptions): Promise<QueryResult<Allocation>> {
    return this.allocations.get(allocId, options);
  }

  stopAllocation(allocId: string): Promise<AllocStopResponse> {
    return this.allocations.stop(allocId);
  }

  events(options?: EventStreamOptions): AsyncGenerator<Events, void, undefined> {
    return this.eventStream.subscribe(options);
  }

  parseJob(jobHcl: string): Promise<Job> {
    return this.jobs.parse(jobHcl);
  }

  registerJob(job: Job): Promise<JobRegisterResponse> {
    return this.jobs.register(job);
  }

  deregisterJob(jobId: string, options?: { purge?: boolean }): Promise<JobDeregisterResponse> {
    return this.jobs.deregister(jobId, options);
  }

  readNodeMeta(nodeId?: string, options?: QueryOptions): Promise<QueryResult<NodeMetaResponse>> {
    return this.nodeMeta.read(nodeId, options);
  }

  applyNodeMeta(meta: Readonly<Record<string, string | null>>, nodeId?: string): Promise<NodeMetaResponse> {
    return this.nodeMeta.apply(meta, nodeId);
  }

  schedulerConfiguration(options?: QueryOptions): Promise<QueryResult<SchedulerConfigurationResponse>> {
    return this.operatorScheduler.get(options);
  }

  setSchedulerConfiguration(
    config: SchedulerConfiguration,
    options?: { casIndex?: number },
  ): Promise<SchedulerSetConfigurationResponse> {
    return this.operatorScheduler.set(config, options);
  }
}
