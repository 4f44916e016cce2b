import type {
  CheckpointInfo,
  CheckpointRequest,
  DeleteCheckpointRequest,
  DestroyTaskRequest,
  ExecTaskRequest,
  ExecTaskResponse,
  ExitResult,
  FeaturesResponse,
  FindCheckpointRequest,
  FindCheckpointResponse,
  MigrateToPeerRequest,
  MigrateToPeerResponse,
  PrestageTaskRequest,
  PrestageTaskResponse,
  RestoreTaskRequest,
  SignalTaskRequest,
  StartTaskRequest,
  StopTaskRequest,
  TakeOverRequest,
  TakeOverResponse,
  TaskInfo,
  TaskStatsResponse,
} from '../../proto/gen/chain/v1/sidecar';

/**
 * The node sidecar's local API (chain.v1.Sidecar) as its callers see it: the plugin, the local controller
 * and the migration sequence. The sidecar owns every task. The real one speaks gRPC over the node's unix
 * socket (GrpcSidecarApi); unit tests pass fakes.
 */
export interface SidecarApi {
  features(): Promise<FeaturesResponse>;
  startTask(request: StartTaskRequest): Promise<TaskInfo>;
  /** Blocks until the task exits; no deadline, ends early only through `signal`. */
  waitTask(taskId: string, signal: AbortSignal): Promise<ExitResult>;
  stopTask(request: StopTaskRequest): Promise<TaskInfo>;
  destroyTask(request: DestroyTaskRequest): Promise<TaskInfo>;
  inspectTask(taskId: string): Promise<TaskInfo>;
  signalTask(request: SignalTaskRequest): Promise<TaskInfo>;
  execTask(request: ExecTaskRequest): Promise<ExecTaskResponse>;
  taskStats(taskId: string): Promise<TaskStatsResponse>;
  listTasks(): Promise<TaskInfo[]>;
  checkpoint(request: CheckpointRequest): Promise<CheckpointInfo>;
  migrateToPeer(request: MigrateToPeerRequest): Promise<MigrateToPeerResponse>;
  findCheckpoint(request: FindCheckpointRequest): Promise<FindCheckpointResponse>;
  restoreTask(request: RestoreTaskRequest): Promise<TaskInfo>;
  /**
   * The receiving half of a hand-over: waits (bounded) for the checkpoint filed under the request's key,
   * restores it, or starts the task cold when the request allows it (else fails, the checkpoint left as it was).
   */
  takeOver(request: TakeOverRequest): Promise<TakeOverResponse>;
  /** Lets a task held frozen by a failed post-copy window run again; call only once the target's copy is gone. */
  resumeTask(taskId: string): Promise<TaskInfo>;
  listCheckpoints(): Promise<CheckpointInfo[]>;
  /** Copies a running task to the node that will receive it, ahead of a drain; the task keeps running. */
  prestageTask(request: PrestageTaskRequest): Promise<PrestageTaskResponse>;
  /** Removes a staged checkpoint; `false` when there was none (already gone counts as deleted). */
  deleteCheckpoint(request: DeleteCheckpointRequest): Promise<boolean>;
  close(): void;
}
