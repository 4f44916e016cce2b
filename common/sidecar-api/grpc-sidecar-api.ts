import {
  credentials,
  Metadata,
  status,
  type CallOptions,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { NomadChainError } from '../errors';
import {
  SidecarClient,
  type CheckpointInfo,
  type CheckpointRequest,
  type DestroyTaskRequest,
  type ExecTaskRequest,
  type ExecTaskResponse,
  type FeaturesResponse,
  type FindCheckpointRequest,
  type FindCheckpointResponse,
  type ListCheckpointsResponse,
  type ListTasksResponse,
  type MigrateToPeerRequest,
  type MigrateToPeerResponse,
  type RestoreTaskRequest,
  type SignalTaskRequest,
  type StartTaskRequest,
  type StopTaskRequest,
  type TaskInfo,
  type TaskStatsResponse,
  type WaitTaskResponse,
} from '../../proto/gen/chain/v1/sidecar';
import type { SidecarApi } from './sidecar-api';

/** Metadata key under which the sidecar sends its error's stable code, so callers keep it across the boundary. */
export const ERROR_CODE_METADATA = 'nc-error-code';

/** Turns a gRPC failure back into a coded error; the sidecar's own code wins over the gRPC status. */
export function fromServiceError(err: ServiceError, method: string, socketPath: string): NomadChainError {
  const sent = err.metadata?.get(ERROR_CODE_METADATA)[0];
  const code =
    typeof sent === 'string' && sent.startsWith('NC_')
      ? sent
      : err.code === status.UNAVAILABLE
        ? 'NC_SIDECAR_UNREACHABLE'
        : 'NC_SIDECAR_CALL_FAILED';
  return new NomadChainError(code, `sidecar ${method}: ${err.details || err.message}`, {
    cause: err,
    context: { method, socketPath, grpcCode: err.code },
    recoverable: err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED,
  });
}

/** One unary call, started with the options and callback the wrapper supplies. */
type Start<Res> = (
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** chain.v1.Sidecar over the node's unix socket. */
export class GrpcSidecarApi implements SidecarApi {
  private readonly client: SidecarClient;

  constructor(
    readonly socketPath: string,
    private readonly callTimeoutMs = 120_000,
  ) {
    this.client = new SidecarClient(`unix://${socketPath}`, credentials.createInsecure());
  }

  private call<Res>(
    method: string,
    start: Start<Res>,
    timeoutMs = this.callTimeoutMs,
    signal?: AbortSignal,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      const options: Partial<CallOptions> = timeoutMs > 0 ? { deadline: Date.now() + timeoutMs } : {};
      const call = start(new Metadata(), options, (err, response) => {
        signal?.removeEventListener('abort', cancel);
        if (err) reject(fromServiceError(err, method, this.socketPath));
        else resolve(response);
      });
      const cancel = (): void => call.cancel();
      signal?.addEventListener('abort', cancel, { once: true });
    });
  }

  features(): Promise<FeaturesResponse> {
    return this.call('Features', (md, o, cb) => this.client.features({}, md, o, cb), 10_000);
  }
  startTask(request: StartTaskRequest): Promise<TaskInfo> {
    return this.call('StartTask', (md, o, cb) => this.client.startTask(request, md, o, cb));
  }
  waitTask(taskId: string, signal?: AbortSignal): Promise<WaitTaskResponse> {
    return this.call('WaitTask', (md, o, cb) => this.client.waitTask({ taskId }, md, o, cb), 0, signal);
  }
  stopTask(request: StopTaskRequest): Promise<TaskInfo> {
    return this.call('StopTask', (md, o, cb) => this.client.stopTask(request, md, o, cb));
  }
  destroyTask(request: DestroyTaskRequest): Promise<TaskInfo> {
    return this.call('DestroyTask', (md, o, cb) => this.client.destroyTask(request, md, o, cb));
  }
  inspectTask(taskId: string): Promise<TaskInfo> {
    return this.call('InspectTask', (md, o, cb) => this.client.inspectTask({ taskId }, md, o, cb));
  }
  signalTask(request: SignalTaskRequest): Promise<TaskInfo> {
    return this.call('SignalTask', (md, o, cb) => this.client.signalTask(request, md, o, cb));
  }
  execTask(request: ExecTaskRequest): Promise<ExecTaskResponse> {
    return this.call('ExecTask', (md, o, cb) => this.client.execTask(request, md, o, cb));
  }
  taskStats(taskId: string): Promise<TaskStatsResponse> {
    return this.call('TaskStats', (md, o, cb) => this.client.taskStats({ taskId }, md, o, cb));
  }
  async listTasks(): Promise<TaskInfo[]> {
    const response = await this.call<ListTasksResponse>('ListTasks', (md, o, cb) =>
      this.client.listTasks({}, md, o, cb),
    );
    return response.tasks;
  }
  checkpoint(request: CheckpointRequest): Promise<CheckpointInfo> {
    return this.call('Checkpoint', (md, o, cb) => this.client.checkpoint(request, md, o, cb));
  }
  migrateToPeer(request: MigrateToPeerRequest): Promise<MigrateToPeerResponse> {
    return this.call('MigrateToPeer', (md, o, cb) => this.client.migrateToPeer(request, md, o, cb), 600_000);
  }
  findCheckpoint(request: FindCheckpointRequest): Promise<FindCheckpointResponse> {
    return this.call(
      'FindCheckpoint',
      (md, o, cb) => this.client.findCheckpoint(request, md, o, cb),
      request.waitMs + 30_000,
    );
  }
  restoreTask(request: RestoreTaskRequest): Promise<TaskInfo> {
    return this.call('RestoreTask', (md, o, cb) => this.client.restoreTask(request, md, o, cb), 600_000);
  }
  async listCheckpoints(): Promise<CheckpointInfo[]> {
    const response = await this.call<ListCheckpointsResponse>('ListCheckpoints', (md, o, cb) =>
      this.client.listCheckpoints({}, md, o, cb),
    );
    return response.checkpoints;
  }
  close(): void {
    this.client.close();
  }
}
