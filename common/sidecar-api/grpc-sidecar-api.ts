import { connectivityState, credentials, Metadata, status } from '@grpc/grpc-js';
import type { CallOptions, ClientUnaryCall, ServiceError } from '@grpc/grpc-js';
import { SidecarClient } from '../../proto/gen/chain/v1/sidecar';
import { decodeStatus } from '../grpc/status-codec';
import type {
  CheckpointInfo,
  CheckpointRequest,
  DeleteCheckpointRequest,
  DeleteCheckpointResponse,
  DestroyTaskRequest,
  ExecTaskRequest,
  ExecTaskResponse,
  ExitResult,
  FeaturesResponse,
  FindCheckpointRequest,
  FindCheckpointResponse,
  ListCheckpointsResponse,
  ListTasksResponse,
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
  WaitTaskResponse,
} from '../../proto/gen/chain/v1/sidecar';
import { SidecarError } from './errors';
import type { SidecarApi } from './sidecar-api';

export interface GrpcSidecarApiOptions {
  readonly socketPath: string;
  /** Deadline of short calls; long ones (wait, migrate) get none or their own bound plus this. */
  readonly timeoutMs: number;
}

type Callback<T> = (error: ServiceError | null, response: T) => void;
type Invoke<Res> = (metadata: Metadata, options: Partial<CallOptions>, callback: Callback<Res>) => ClientUnaryCall;

/** chain.v1.Sidecar over the sidecar's unix socket. */
export class GrpcSidecarApi implements SidecarApi {
  private readonly client: SidecarClient;

  constructor(private readonly options: GrpcSidecarApiOptions) {
    this.client = new SidecarClient(`unix:${options.socketPath}`, credentials.createInsecure(), {
      // A sidecar restart must not leave the plugin waiting out a long reconnect backoff.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2000,
    });
  }

  features(): Promise<FeaturesResponse> {
    return this.call('Features', (md, o, cb) => this.client.features({}, md, o, cb), this.options.timeoutMs);
  }

  startTask(request: StartTaskRequest): Promise<TaskInfo> {
    return this.call('StartTask', (md, o, cb) => this.client.startTask(request, md, o, cb), this.options.timeoutMs);
  }

  async waitTask(taskId: string, signal: AbortSignal): Promise<ExitResult> {
    const response = await this.call<WaitTaskResponse>(
      'WaitTask',
      (md, o, cb) => this.client.waitTask({ taskId }, md, o, cb),
      undefined,
      signal,
    );
    return response.exit ?? { exitCode: 0, signal: 0, oomKilled: false };
  }

  stopTask(request: StopTaskRequest): Promise<TaskInfo> {
    return this.call(
      'StopTask',
      (md, o, cb) => this.client.stopTask(request, md, o, cb),
      request.timeoutMs + this.options.timeoutMs,
    );
  }

  destroyTask(request: DestroyTaskRequest): Promise<TaskInfo> {
    return this.call('DestroyTask', (md, o, cb) => this.client.destroyTask(request, md, o, cb), this.options.timeoutMs);
  }

  resumeTask(taskId: string): Promise<TaskInfo> {
    return this.call(
      'ResumeTask',
      (md, o, cb) => this.client.resumeTask({ taskId }, md, o, cb),
      this.options.timeoutMs,
    );
  }

  inspectTask(taskId: string): Promise<TaskInfo> {
    return this.call(
      'InspectTask',
      (md, o, cb) => this.client.inspectTask({ taskId }, md, o, cb),
      this.options.timeoutMs,
    );
  }

  signalTask(request: SignalTaskRequest): Promise<TaskInfo> {
    return this.call('SignalTask', (md, o, cb) => this.client.signalTask(request, md, o, cb), this.options.timeoutMs);
  }

  execTask(request: ExecTaskRequest): Promise<ExecTaskResponse> {
    const deadline = request.timeoutMs === 0 ? undefined : request.timeoutMs + this.options.timeoutMs;
    return this.call('ExecTask', (md, o, cb) => this.client.execTask(request, md, o, cb), deadline);
  }

  taskStats(taskId: string): Promise<TaskStatsResponse> {
    return this.call('TaskStats', (md, o, cb) => this.client.taskStats({ taskId }, md, o, cb), this.options.timeoutMs);
  }

  migrateToPeer(request: MigrateToPeerRequest): Promise<MigrateToPeerResponse> {
    // Bounded by the sidecar's migration sequence, which owns every timeout of a hand-over.
    return this.call('MigrateToPeer', (md, o, cb) => this.client.migrateToPeer(request, md, o, cb), undefined);
  }

  findCheckpoint(request: FindCheckpointRequest): Promise<FindCheckpointResponse> {
    return this.call(
      'FindCheckpoint',
      (md, o, cb) => this.client.findCheckpoint(request, md, o, cb),
      request.waitMs + this.options.timeoutMs,
    );
  }

  restoreTask(request: RestoreTaskRequest): Promise<TaskInfo> {
    return this.call('RestoreTask', (md, o, cb) => this.client.restoreTask(request, md, o, cb), undefined);
  }

  takeOver(request: TakeOverRequest): Promise<TakeOverResponse> {
    // The wait is bounded by the request; a restore, like RestoreTask, by the sidecar's own timeouts.
    return this.call('TakeOver', (md, o, cb) => this.client.takeOver(request, md, o, cb), undefined);
  }

  async listTasks(): Promise<TaskInfo[]> {
    const response = await this.call<ListTasksResponse>(
      'ListTasks',
      (md, o, cb) => this.client.listTasks({}, md, o, cb),
      this.options.timeoutMs,
    );
    return response.tasks;
  }

  checkpoint(request: CheckpointRequest): Promise<CheckpointInfo> {
    // Bounded by the sidecar's own dump timeout.
    return this.call('Checkpoint', (md, o, cb) => this.client.checkpoint(request, md, o, cb), undefined);
  }

  async listCheckpoints(): Promise<CheckpointInfo[]> {
    const response = await this.call<ListCheckpointsResponse>(
      'ListCheckpoints',
      (md, o, cb) => this.client.listCheckpoints({}, md, o, cb),
      this.options.timeoutMs,
    );
    return response.checkpoints;
  }

  prestageTask(request: PrestageTaskRequest): Promise<PrestageTaskResponse> {
    // Bounded by the sidecar's own dump timeout and the transfer's call deadlines.
    return this.call('PrestageTask', (md, o, cb) => this.client.prestageTask(request, md, o, cb), undefined);
  }

  async deleteCheckpoint(request: DeleteCheckpointRequest): Promise<boolean> {
    const response = await this.call<DeleteCheckpointResponse>(
      'DeleteCheckpoint',
      (md, o, cb) => this.client.deleteCheckpoint(request, md, o, cb),
      this.options.timeoutMs,
    );
    return response.deleted;
  }

  close(): void {
    this.client.close();
  }

  private async call<Res>(
    rpc: string,
    invoke: Invoke<Res>,
    timeoutMs: number | undefined,
    signal?: AbortSignal,
  ): Promise<Res> {
    // An unbounded call (a take-over waiting for its checkpoint, a dump) cannot wait with waitForReady, which
    // would wait for ever on a sidecar that never comes back; it waits for the channel first, as long as a
    // bounded call would. Without it, a task started just after the sidecar's job restarted failed its start
    // with "No connection established" from the channel's reconnect backoff, the sidecar already serving.
    if (timeoutMs === undefined) await this.connected(rpc);
    return new Promise((resolve, reject) => {
      const options: Partial<CallOptions> = timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
      const onAbort = (): void => call.cancel();
      // A bounded call waits for the channel rather than failing at once while it reconnects: right after the
      // sidecar restarts (its system job restarted or upgraded) the channel is still in its reconnect backoff,
      // and `nomad alloc signal` failed with "No connection established" although the sidecar was back.
      const metadata = new Metadata(timeoutMs === undefined ? {} : { waitForReady: true });
      const call = invoke(metadata, options, (err, response) => {
        signal?.removeEventListener('abort', onAbort);
        if (err === null) resolve(response);
        else {
          // Read at once: whether the channel was up tells a slow answer from an absent sidecar.
          const connected = this.client.getChannel().getConnectivityState(false) === connectivityState.READY;
          reject(sidecarFailure(rpc, this.options.socketPath, err, { connected, timeoutMs }));
        }
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Resolves once the channel is connected, or fails as unreachable after the client's timeout. */
  private connected(rpc: string): Promise<void> {
    const { socketPath, timeoutMs } = this.options;
    return new Promise((resolve, reject) => {
      this.client.waitForReady(Date.now() + timeoutMs, (err) => {
        if (err === undefined || err === null) resolve();
        else
          reject(
            new SidecarError(
              'NC_SIDECAR_UNREACHABLE',
              `sidecar at ${socketPath} unreachable (${rpc}): not connected within ${timeoutMs} ms (${err.message})`,
              status.UNAVAILABLE,
              { cause: err, context: { rpc, socketPath } },
            ),
          );
      });
    });
  }
}

const UNREACHABLE = new Set<number>([status.UNAVAILABLE, status.CANCELLED]);

/** A failed call: the sidecar's own error when it sent its code, else what the channel did (down, slow, foreign). */
function sidecarFailure(
  rpc: string,
  socketPath: string,
  err: ServiceError,
  call: { connected: boolean; timeoutMs: number | undefined },
): SidecarError {
  // The sidecar's own answer first: some of its codes travel as DEADLINE_EXCEEDED (NC_LAZY_PAGES_TIMEOUT), which
  // read as the call's deadline reported a post-copy hand-over that timed out on the sidecar as "did not finish
  // MigrateToPeer within 0 ms".
  const sent = decodeStatus(err, { prefix: `sidecar ${rpc}: `, context: { rpc } });
  if (sent !== undefined) {
    return new SidecarError(sent.code, sent.message, err.code, {
      cause: err,
      context: sent.context,
      recoverable: sent.recoverable,
    });
  }
  // A deadline on a connected channel is a sidecar that answers but had not finished this call (issue #11: a
  // stop reported as "unreachable … Deadline exceeded" while the sidecar was serving every other call).
  if (err.code === status.DEADLINE_EXCEEDED && call.connected) {
    return new SidecarError(
      'NC_SIDECAR_TIMEOUT',
      `sidecar at ${socketPath} is up but did not finish ${rpc} within ${call.timeoutMs ?? 0} ms`,
      err.code,
      { cause: err, context: { rpc, socketPath, timeoutMs: call.timeoutMs } },
    );
  }
  if (UNREACHABLE.has(err.code) || err.code === status.DEADLINE_EXCEEDED) {
    return new SidecarError(
      'NC_SIDECAR_UNREACHABLE',
      `sidecar at ${socketPath} unreachable (${rpc}): ${err.details}`,
      err.code,
      {
        cause: err,
        context: { rpc, socketPath },
      },
    );
  }
  return new SidecarError('NC_SIDECAR_CALL_FAILED', `sidecar ${rpc}: ${err.details}`, err.code, {
    cause: err,
    context: { rpc },
  });
}
