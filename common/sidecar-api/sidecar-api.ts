import type {
  CheckpointInfo,
  CheckpointRequest,
  DestroyTaskRequest,
  ExecTaskRequest,
  ExecTaskResponse,
  FeaturesResponse,
  FindCheckpointRequest,
  FindCheckpointResponse,
  MigrateToPeerRequest,
  MigrateToPeerResponse,
  RestoreTaskRequest,
  SignalTaskRequest,
  StartTaskRequest,
  StopTaskRequest,
  TaskInfo,
  TaskStatsResponse,
  WaitTaskResponse,
} from '../../proto/gen/chain/v1/sidecar';

/**
 * The sidecar's local API as its callers see it (the plugin, the local controller, the migration sequence).
 * The real one speaks gRPC over the node's unix socket; unit tests pass a fake.
 */
export interface SidecarApi {
  features(): Promise<FeaturesResponse>;
  startTask(request: StartTaskRequest): Promise<TaskInfo>;
  waitTask(taskId: string, signal?: AbortSignal): Promise<WaitTaskResponse>;
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
  listCheckpoints(): Promise<CheckpointInfo[]>;
  close(): void;
}
