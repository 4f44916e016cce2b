/**
 * The subset of Nomad's HTTP API structs this project reads or writes, with Nomad's own field names
 * (github.com/hashicorp/nomad/api at v1.6.5). Go's time.Time arrives as an RFC 3339 string, time.Duration
 * as integer nanoseconds, and fields Nomad may omit or null are optional here.
 */

export type NodeStatus = 'initializing' | 'ready' | 'down' | 'disconnected';
export type SchedulingEligibility = 'eligible' | 'ineligible';
export type AllocClientStatus = 'pending' | 'running' | 'complete' | 'failed' | 'lost' | 'unknown';
export type AllocDesiredStatus = 'run' | 'stop' | 'evict';

export interface DriverInfo {
  Attributes: Record<string, string> | null;
  Detected: boolean;
  Healthy: boolean;
  HealthDescription: string;
  UpdateTime: string;
}

export interface DrainSpec {
  /** Nanoseconds; < 0 forces the drain now, 0 means no deadline. */
  Deadline: number;
  IgnoreSystemJobs: boolean;
}

export interface DrainStrategy extends DrainSpec {
  ForceDeadline: string;
  StartedAt: string;
}

export interface DrainMetadata {
  StartedAt: string;
  UpdatedAt: string;
  Status: 'draining' | 'complete' | 'canceled';
  AccessorID: string;
  Meta: Record<string, string> | null;
}

export interface NodeEvent {
  Message: string;
  Subsystem: string;
  Details: Record<string, string> | null;
  Timestamp: string;
  CreateIndex: number;
}

export interface NodeListStub {
  Address: string;
  ID: string;
  Attributes?: Record<string, string>;
  Datacenter: string;
  Name: string;
  NodeClass: string;
  NodePool: string;
  Version: string;
  Drain: boolean;
  SchedulingEligibility: SchedulingEligibility;
  Status: NodeStatus;
  StatusDescription: string;
  Drivers: Record<string, DriverInfo> | null;
  LastDrain: DrainMetadata | null;
  CreateIndex: number;
  ModifyIndex: number;
}

export interface Node {
  ID: string;
  Datacenter: string;
  Name: string;
  HTTPAddr: string;
  TLSEnabled: boolean;
  Attributes: Record<string, string> | null;
  Meta: Record<string, string> | null;
  NodeClass: string;
  NodePool: string;
  Drain: boolean;
  DrainStrategy: DrainStrategy | null;
  SchedulingEligibility: SchedulingEligibility;
  Status: NodeStatus;
  StatusDescription: string;
  StatusUpdatedAt: number;
  Events: NodeEvent[] | null;
  Drivers: Record<string, DriverInfo> | null;
  LastDrain: DrainMetadata | null;
  CreateIndex: number;
  ModifyIndex: number;
}

export interface NodeUpdateDrainRequest {
  NodeID: string;
  /** null cancels a drain. */
  DrainSpec: DrainSpec | null;
  MarkEligible: boolean;
  Meta?: Record<string, string>;
}

export interface NodeUpdateEligibilityRequest {
  NodeID: string;
  Eligibility: SchedulingEligibility;
}

/** Answer of the drain and eligibility endpoints (NodeDrainUpdateResponse / NodeEligibilityUpdateResponse). */
export interface NodeUpdateResponse {
  NodeModifyIndex: number;
  EvalIDs: string[] | null;
  EvalCreateIndex: number;
}

export interface DesiredTransition {
  Migrate?: boolean | null;
  Reschedule?: boolean | null;
}

export interface TaskEvent {
  Type: string;
  Time: number;
  DisplayMessage: string;
  Details: Record<string, string> | null;
  Message: string;
}

export interface TaskState {
  State: 'pending' | 'running' | 'dead';
  Failed: boolean;
  Restarts: number;
  LastRestart: string | null;
  StartedAt: string | null;
  FinishedAt: string | null;
  Events: TaskEvent[] | null;
}

export interface AllocationListStub {
  ID: string;
  EvalID: string;
  Name: string;
  Namespace: string;
  NodeID: string;
  NodeName: string;
  JobID: string;
  JobType: string;
  JobVersion: number;
  TaskGroup: string;
  DesiredStatus: AllocDesiredStatus;
  DesiredDescription: string;
  ClientStatus: AllocClientStatus;
  ClientDescription: string;
  TaskStates: Record<string, TaskState> | null;
  FollowupEvalID: string;
  NextAllocation: string;
  /** Omitted when empty, like PreemptedByAllocation (Nomad's encoder drops empty fields of allocations). */
  PreemptedAllocations?: string[] | null;
  /** Set with DesiredStatus "evict" on an allocation that a higher-priority one preempted. */
  PreemptedByAllocation?: string;
  CreateIndex: number;
  ModifyIndex: number;
  CreateTime: number;
  ModifyTime: number;
}

export interface Allocation {
  ID: string;
  Namespace: string;
  EvalID: string;
  Name: string;
  NodeID: string;
  NodeName: string;
  JobID: string;
  Job?: Job | null;
  TaskGroup: string;
  DesiredStatus: AllocDesiredStatus;
  DesiredDescription: string;
  DesiredTransition: DesiredTransition;
  ClientStatus: AllocClientStatus;
  ClientDescription: string;
  TaskStates: Record<string, TaskState> | null;
  DeploymentID: string;
  FollowupEvalID: string;
  /** Set on a replacement (drain, reschedule, update): the allocation it replaces. */
  PreviousAllocation: string;
  /** Set on a replaced allocation: its replacement. */
  NextAllocation: string;
  /** Omitted when empty, like PreemptedByAllocation (Nomad's encoder drops empty fields of allocations). */
  PreemptedAllocations?: string[] | null;
  /** Set with DesiredStatus "evict" on an allocation that a higher-priority one preempted. */
  PreemptedByAllocation?: string;
  CreateIndex: number;
  ModifyIndex: number;
  AllocModifyIndex: number;
  CreateTime: number;
  ModifyTime: number;
}

export interface AllocStopResponse {
  EvalID: string;
}

/**
 * A job as Nomad's JSON API carries it. Only the fields this project reads are typed; the rest (task
 * groups, tasks, …) pass through untouched from `/v1/jobs/parse` to `/v1/jobs`.
 */
export interface Job {
  ID?: string | null;
  Name?: string | null;
  Namespace?: string | null;
  Type?: string | null;
  Datacenters?: string[] | null;
  Status?: string | null;
  Version?: number | null;
  TaskGroups?: unknown[] | null;
  [field: string]: unknown;
}

export interface JobRegisterRequest {
  Job: Job;
  EnforceIndex?: boolean;
  JobModifyIndex?: number;
  PolicyOverride?: boolean;
  PreserveCounts?: boolean;
}

export interface JobRegisterResponse {
  EvalID: string;
  EvalCreateIndex: number;
  JobModifyIndex: number;
  Warnings: string;
}

export interface JobsParseRequest {
  JobHCL: string;
  Canonicalize: boolean;
}

export interface JobDeregisterResponse {
  EvalID: string;
  EvalCreateIndex: number;
  JobModifyIndex: number;
}

export type Topic = 'Deployment' | 'Evaluation' | 'Allocation' | 'Job' | 'Node' | 'NodePool' | 'Service' | '*';

export interface Event {
  Topic: Topic;
  Type: string;
  Key: string;
  Namespace?: string;
  FilterKeys: string[] | null;
  Index: number;
  /** `{"Node": …}`, `{"Allocation": …}`, `{"Job": …}` … depending on the topic. */
  Payload: Record<string, unknown>;
}

/** One ndjson frame of `/v1/event/stream` (heartbeats `{}` never reach callers). */
export interface Events {
  Index: number;
  Events: Event[];
}

export interface NodeMetaApplyRequest {
  NodeID?: string;
  /** null unsets a key. */
  Meta: Record<string, string | null>;
}

export interface NodeMetaResponse {
  Meta: Record<string, string>;
  Dynamic: Record<string, string | null> | null;
  Static: Record<string, string> | null;
}

/** Scheduler-wide preemption switches, one per scheduler type (Nomad's default: only `system` preempts). */
export interface PreemptionConfig {
  SystemSchedulerEnabled: boolean;
  SysBatchSchedulerEnabled: boolean;
  BatchSchedulerEnabled: boolean;
  ServiceSchedulerEnabled: boolean;
}

/** `/v1/operator/scheduler/configuration`: a PUT replaces all of it, so write back what was read. */
export interface SchedulerConfiguration {
  /** '' reads as binpack. */
  SchedulerAlgorithm: 'binpack' | 'spread' | '';
  PreemptionConfig: PreemptionConfig;
  MemoryOversubscriptionEnabled: boolean;
  RejectJobRegistration: boolean;
  PauseEvalBroker: boolean;
  CreateIndex: number;
  ModifyIndex: number;
}

export interface SchedulerConfigurationResponse {
  /** null until the leader has written the first configuration. */
  SchedulerConfig: SchedulerConfiguration | null;
}

export interface SchedulerSetConfigurationResponse {
  /** Whether the update applied: always without `cas`, only if the index still matched with it. */
  Updated: boolean;
}
