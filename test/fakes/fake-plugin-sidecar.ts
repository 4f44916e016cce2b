import { status } from '@grpc/grpc-js';
import { TaskState } from '../../proto/gen/chain/v1/sidecar';
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
import { SidecarError } from '../../common/sidecar-api/errors';
import type { SidecarApi } from '../../common/sidecar-api/sidecar-api';

interface FakeTask {
  info: TaskInfo;
  exited: Promise<ExitResult>;
  exit: (result: ExitResult) => void;
}

/** The plugin's SidecarApi in memory: records every call, and lets a test make any call fail. */
export class FakePluginSidecar implements SidecarApi {
  readonly calls: { method: string; request: unknown }[] = [];
  readonly tasks = new Map<string, FakeTask>();
  readonly checkpoints = new Map<string, CheckpointInfo>();
  features_: FeaturesResponse = {
    healthy: true,
    reason: '',
    criuVersion: '4.2.1',
    runcVersion: '1.1.5',
    preCopy: false,
    lazyPages: true,
    nodeName: 'node-a',
    transferAddress: '198.18.0.2:7451',
  };
  /** method → errors thrown by its next calls, in order. */
  readonly failures = new Map<string, unknown[]>();
  closed = false;

  failNext(method: keyof SidecarApi, err: unknown): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), err]);
  }

  called(method: keyof SidecarApi): unknown[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.request);
  }

  private enter(method: keyof SidecarApi, request: unknown): void {
    this.calls.push({ method, request });
    const queued = this.failures.get(method);
    if (queued !== undefined && queued.length > 0) throw queued.shift();
  }

  private task(taskId: string): FakeTask {
    const task = this.tasks.get(taskId);
    if (task === undefined) {
      throw new SidecarError('NC_TASK_NOT_FOUND', `sidecar: task ${taskId} not found`, status.NOT_FOUND);
    }
    return task;
  }

  private add(request: StartTaskRequest, restoredFromCheckpoint: string): TaskInfo {
    let exit: (result: ExitResult) => void = () => undefined;
    const exited = new Promise<ExitResult>((resolve) => (exit = resolve));
    const info: TaskInfo = {
      identity: request.identity,
      state: TaskState.TASK_STATE_RUNNING,
      pid: 100,
      startedAtUnixMs: 1_700_000_000_000,
      completedAtUnixMs: 0,
      exit: undefined,
      nodeName: 'node-a',
      restoredFromCheckpoint,
    };
    this.tasks.set(request.identity?.taskId ?? '', { info, exited, exit });
    return info;
  }

  private finish(task: FakeTask, state: TaskState, exit: ExitResult): void {
    task.info = { ...task.info, state, exit, completedAtUnixMs: 1_700_000_001_000, pid: 0 };
    task.exit(exit);
  }

  async features(): Promise<FeaturesResponse> {
    this.enter('features', {});
    return this.features_;
  }

  async startTask(request: StartTaskRequest): Promise<TaskInfo> {
    this.enter('startTask', request);
    return this.add(request, '');
  }

  async waitTask(taskId: string): Promise<ExitResult> {
    this.enter('waitTask', taskId);
    return this.task(taskId).exited;
  }

  async stopTask(request: StopTaskRequest): Promise<TaskInfo> {
    this.enter('stopTask', request);
    const task = this.task(request.taskId);
    this.finish(task, TaskState.TASK_STATE_EXITED, { exitCode: 0, signal: 15, oomKilled: false });
    return task.info;
  }

  async destroyTask(request: DestroyTaskRequest): Promise<TaskInfo> {
    this.enter('destroyTask', request);
    const task = this.task(request.taskId);
    this.tasks.delete(request.taskId);
    return task.info;
  }

  async inspectTask(taskId: string): Promise<TaskInfo> {
    this.enter('inspectTask', taskId);
    return this.task(taskId).info;
  }

  async signalTask(request: SignalTaskRequest): Promise<TaskInfo> {
    this.enter('signalTask', request);
    return this.task(request.taskId).info;
  }

  async execTask(request: ExecTaskRequest): Promise<ExecTaskResponse> {
    this.enter('execTask', request);
    this.task(request.taskId);
    return { stdout: Buffer.from(request.argv.join(' ')), stderr: Buffer.alloc(0), exitCode: 0 };
  }

  async taskStats(taskId: string): Promise<TaskStatsResponse> {
    this.enter('taskStats', taskId);
    this.task(taskId);
    return {
      timestampUnixMs: 1_700_000_000_500,
      memoryRssBytes: 1024,
      memoryUsageBytes: 2048,
      memoryMaxUsageBytes: 4096,
      cpuPercent: 5,
      cpuTotalNs: 0,
      pids: [100],
    };
  }

  async migrateToPeer(request: MigrateToPeerRequest): Promise<MigrateToPeerResponse> {
    this.enter('migrateToPeer', request);
    const task = this.task(request.taskId);
    const checkpoint: CheckpointInfo = {
      checkpointId: `ckpt-${this.called('migrateToPeer').length}`,
      handoverKey: request.handoverKey,
      source: task.info.identity,
      manifestDigest: '',
      sizeBytes: 10,
      createdAtUnixMs: 0,
      spec: undefined,
      sourceNode: 'node-a',
    };
    this.checkpoints.set(request.handoverKey, checkpoint);
    this.finish(task, TaskState.TASK_STATE_MIGRATED, { exitCode: 0, signal: 0, oomKilled: false });
    return { checkpoint, modeUsed: request.mode, wireBytes: 10, freezeMs: 5, fallbackReason: '', fileBytes: 0 };
  }

  async findCheckpoint(request: FindCheckpointRequest): Promise<FindCheckpointResponse> {
    this.enter('findCheckpoint', request);
    const checkpoint = this.checkpoints.get(request.handoverKey);
    return { found: checkpoint !== undefined, checkpoint };
  }

  /** A restore of a found checkpoint fails with this, and the task starts cold (when the request allows). */
  restoreFailure: Error | undefined;

  async takeOver(request: TakeOverRequest): Promise<TakeOverResponse> {
    this.enter('takeOver', request);
    const checkpoint = this.checkpoints.get(request.handoverKey);
    const cold = (reason: string, noCheckpoint: boolean): TakeOverResponse => ({
      task: this.add({ identity: request.identity, spec: request.spec }, ''),
      restoredFrom: undefined,
      coldReason: reason,
      noCheckpoint,
    });
    if (checkpoint === undefined) {
      const reason = `no checkpoint filed under ${request.handoverKey} within ${request.waitMs} ms`;
      if (!request.coldStartFallback) throw new SidecarError('NC_CHECKPOINT_NOT_FOUND', reason, status.NOT_FOUND);
      return cold(reason, true);
    }
    if (this.restoreFailure !== undefined) {
      const failure = this.restoreFailure;
      this.restoreFailure = undefined;
      if (!request.coldStartFallback) throw failure;
      return cold(`restore of checkpoint ${checkpoint.checkpointId} failed (${failure.message})`, false);
    }
    this.checkpoints.delete(request.handoverKey);
    const task = this.add({ identity: request.identity, spec: request.spec }, checkpoint.checkpointId);
    return { task, restoredFrom: checkpoint, coldReason: '', noCheckpoint: false };
  }

  async restoreTask(request: RestoreTaskRequest): Promise<TaskInfo> {
    this.enter('restoreTask', request);
    return this.add({ identity: request.identity, spec: request.spec }, request.checkpointId);
  }

  async listTasks(): Promise<TaskInfo[]> {
    this.enter('listTasks', {});
    return [...this.tasks.values()].map((t) => t.info);
  }

  async checkpoint(request: CheckpointRequest): Promise<CheckpointInfo> {
    this.enter('checkpoint', request);
    throw new SidecarError(
      'NC_FEATURE_UNAVAILABLE',
      'the plugin never asks for a bare checkpoint',
      status.UNIMPLEMENTED,
    );
  }

  async listCheckpoints(): Promise<CheckpointInfo[]> {
    this.enter('listCheckpoints', {});
    return [];
  }

  async prestageTask(request: PrestageTaskRequest): Promise<PrestageTaskResponse> {
    this.enter('prestageTask', request);
    throw new SidecarError('NC_FEATURE_UNAVAILABLE', 'the plugin never pre-stages', status.UNIMPLEMENTED);
  }

  async deleteCheckpoint(request: DeleteCheckpointRequest): Promise<boolean> {
    this.enter('deleteCheckpoint', request);
    throw new SidecarError('NC_FEATURE_UNAVAILABLE', 'the plugin never deletes checkpoints', status.UNIMPLEMENTED);
  }

  close(): void {
    this.closed = true;
  }
}
