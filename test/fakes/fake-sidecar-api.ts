import { status } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock';
import { errorMessage } from '../../common/errors';
import { SidecarError } from '../../common/sidecar-api/errors';
import type { SidecarApi } from '../../common/sidecar-api/sidecar-api';
import {
  LazyPages,
  MigrationMode,
  TaskState,
  type CheckpointInfo,
  type CheckpointRequest,
  type DeleteCheckpointRequest,
  type DestroyTaskRequest,
  type ExecTaskRequest,
  type ExecTaskResponse,
  type ExitResult,
  type FeaturesResponse,
  type FindCheckpointRequest,
  type FindCheckpointResponse,
  type MigrateToPeerRequest,
  type MigrateToPeerResponse,
  type PrestageTaskRequest,
  type PrestageTaskResponse,
  type RestoreTaskRequest,
  type SignalTaskRequest,
  type StartTaskRequest,
  type StopTaskRequest,
  type TakeOverRequest,
  type TakeOverResponse,
  type TaskInfo,
  type TaskStatsResponse,
} from '../../proto/gen/chain/v1/sidecar';
import { FakeClock } from './fake-clock';

type Method = keyof SidecarApi;

/** Sidecars of several fake nodes that hand checkpoints to each other as the real ones do, without CRIU. */
export class FakeSidecarCluster {
  readonly sidecars = new Map<string, FakeSidecarApi>();
  /** transfer address -> node name */
  readonly addresses = new Map<string, string>();
  restores = 0;

  /** `clock` stamps the tasks' start and end and the checkpoints' making. */
  constructor(readonly clock: Clock = new FakeClock()) {}

  add(node: string, transferAddress: string): FakeSidecarApi {
    const sidecar = new FakeSidecarApi(node, this, transferAddress);
    this.sidecars.set(node, sidecar);
    this.addresses.set(transferAddress, node);
    return sidecar;
  }

  sidecar(node: string): FakeSidecarApi {
    const s = this.sidecars.get(node);
    if (s === undefined) throw new Error(`no fake sidecar ${node}`);
    return s;
  }

  /** Every running copy of a task name across the cluster: the exactly-once invariant counts these. */
  running(taskName: string): TaskInfo[] {
    return [...this.sidecars.values()].flatMap((s) =>
      [...s.tasks.values()].filter(
        (t) => t.identity?.taskName === taskName && t.state === TaskState.TASK_STATE_RUNNING,
      ),
    );
  }
}

/**
 * The one fake of the SidecarApi boundary: a node's sidecar in memory, made by `FakeSidecarCluster.add`. It
 * records every call (`called`), lets a test make any call fail (`failNext`) or the whole sidecar go down
 * (`dead`), and hands checkpoints to its cluster's other sidecars as the real ones do, without CRIU. Its
 * errors are the real client's: `SidecarError` with the gRPC status the sidecar would answer with.
 */
export class FakeSidecarApi implements SidecarApi {
  readonly calls: { method: Method; request: unknown }[] = [];
  readonly tasks = new Map<string, TaskInfo>();
  /** Staged checkpoints by id, and the handover key each is filed under. */
  readonly staged = new Map<string, CheckpointInfo>();
  /** This node's own copies of checkpoints it dumped (what a rollback restores from). */
  readonly ownCopies = new Map<string, CheckpointInfo>();
  /** What `features` answers; a test may change it. */
  featuresResponse: FeaturesResponse;
  dead = false;
  closed = false;
  /** method → errors its next calls throw, in order. */
  private readonly failures = new Map<Method, unknown[]>();
  /** taskId → its exit, for `waitTask`: settled when the task stops or migrates away. */
  private readonly exits = new Map<string, { readonly exited: Promise<ExitResult>; settle: (e: ExitResult) => void }>();
  private nextCheckpoint = 1;

  constructor(
    readonly node: string,
    private readonly cluster: FakeSidecarCluster,
    readonly transferAddress = '',
  ) {
    this.featuresResponse = {
      healthy: true,
      reason: '',
      criuVersion: '4.2.1',
      runcVersion: '1.1.5',
      preCopy: false,
      lazyPages: true,
      nodeName: node,
      transferAddress,
    };
  }

  failNext(
    method: Method,
    error: unknown = new SidecarError('NC_FAKE_FAILURE', `${method} failed`, status.INTERNAL),
  ): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), error]);
  }

  /** The requests of every call of `method` so far, in order. */
  called(method: Method): unknown[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.request);
  }

  private enter(method: Method, request: unknown): void {
    this.calls.push({ method, request });
    if (this.dead)
      throw new SidecarError('NC_SIDECAR_UNREACHABLE', `sidecar on ${this.node} is down`, status.UNAVAILABLE);
    const queued = this.failures.get(method);
    if (queued !== undefined && queued.length > 0) throw queued.shift();
  }

  private now(): number {
    return this.cluster.clock.now();
  }

  private peerAt(address: string): FakeSidecarApi {
    const peerNode = this.cluster.addresses.get(address);
    const peer = peerNode === undefined ? undefined : this.cluster.sidecar(peerNode);
    if (peer === undefined || peer.dead)
      throw new SidecarError('NC_TRANSFER_PEER_UNREACHABLE', `peer ${address} unreachable`, status.UNAVAILABLE);
    return peer;
  }

  private checkpointOf(task: TaskInfo, handoverKey: string): CheckpointInfo {
    return {
      checkpointId: `ckpt-${this.node}-${this.nextCheckpoint++}`,
      handoverKey,
      source: task.identity,
      manifestDigest: 'digest',
      sizeBytes: 1024,
      createdAtUnixMs: this.now(),
      spec: undefined,
      sourceNode: this.node,
    };
  }

  private task(taskId: string): TaskInfo {
    const task = this.tasks.get(taskId);
    if (task === undefined)
      throw new SidecarError('NC_TASK_NOT_FOUND', `no task ${taskId} on ${this.node}`, status.NOT_FOUND);
    return task;
  }

  private exitOf(taskId: string): { readonly exited: Promise<ExitResult>; settle: (e: ExitResult) => void } {
    let exit = this.exits.get(taskId);
    if (exit === undefined) {
      let settle: (e: ExitResult) => void = () => undefined;
      const exited = new Promise<ExitResult>((resolve) => (settle = resolve));
      exit = { exited, settle };
      this.exits.set(taskId, exit);
    }
    return exit;
  }

  /** The task ends in `state` (its process gone: no pid); whoever waits on it learns `exit`. */
  private finish(taskId: string, state: TaskState, exit: ExitResult): TaskInfo {
    const task = { ...this.task(taskId), state, exit, completedAtUnixMs: this.now(), pid: 0 };
    this.tasks.set(taskId, task);
    this.exitOf(taskId).settle(exit);
    return task;
  }

  private run(request: StartTaskRequest, pid: number, restoredFromCheckpoint: string): TaskInfo {
    const taskId = request.identity?.taskId ?? '';
    const info: TaskInfo = {
      identity: request.identity,
      state: TaskState.TASK_STATE_RUNNING,
      pid,
      startedAtUnixMs: this.now(),
      completedAtUnixMs: 0,
      exit: undefined,
      nodeName: this.node,
      restoredFromCheckpoint,
      checkpointing: false,
      lazyPages: LazyPages.LAZY_PAGES_NONE,
    };
    this.tasks.set(taskId, info);
    this.exits.delete(taskId);
    return info;
  }

  async features(): Promise<FeaturesResponse> {
    this.enter('features', {});
    return this.featuresResponse;
  }

  async startTask(request: StartTaskRequest): Promise<TaskInfo> {
    this.enter('startTask', request);
    return this.run(request, 100 + this.tasks.size, '');
  }

  async waitTask(taskId: string): Promise<ExitResult> {
    this.enter('waitTask', taskId);
    this.task(taskId);
    return this.exitOf(taskId).exited;
  }

  async stopTask(request: StopTaskRequest): Promise<TaskInfo> {
    this.enter('stopTask', request);
    return this.finish(request.taskId, TaskState.TASK_STATE_EXITED, { exitCode: 0, signal: 15, oomKilled: false });
  }

  async destroyTask(request: DestroyTaskRequest): Promise<TaskInfo> {
    this.enter('destroyTask', request);
    const task = this.task(request.taskId);
    this.tasks.delete(request.taskId);
    return task;
  }

  async inspectTask(taskId: string): Promise<TaskInfo> {
    this.enter('inspectTask', taskId);
    return this.task(taskId);
  }

  /** As the real sidecar: a held task runs again, a running one is left alone, anything else is refused. */
  async resumeTask(taskId: string): Promise<TaskInfo> {
    this.enter('resumeTask', taskId);
    const task = this.task(taskId);
    if (task.state === TaskState.TASK_STATE_RUNNING) return task;
    if (task.state !== TaskState.TASK_STATE_HELD)
      throw new SidecarError(
        'NC_TASK_NOT_HELD',
        `task ${taskId} is not held on ${this.node}`,
        status.FAILED_PRECONDITION,
      );
    const resumed = { ...task, state: TaskState.TASK_STATE_RUNNING };
    this.tasks.set(taskId, resumed);
    return resumed;
  }

  async signalTask(request: SignalTaskRequest): Promise<TaskInfo> {
    this.enter('signalTask', request);
    return this.task(request.taskId);
  }

  /** Echoes the command line as its output. */
  async execTask(request: ExecTaskRequest): Promise<ExecTaskResponse> {
    this.enter('execTask', request);
    this.task(request.taskId);
    return { stdout: Buffer.from(request.argv.join(' ')), stderr: Buffer.alloc(0), exitCode: 0 };
  }

  async taskStats(taskId: string): Promise<TaskStatsResponse> {
    this.enter('taskStats', taskId);
    const task = this.task(taskId);
    return {
      timestampUnixMs: this.now() + 500,
      memoryRssBytes: 1024,
      memoryUsageBytes: 2048,
      memoryMaxUsageBytes: 4096,
      cpuPercent: 5,
      cpuTotalNs: 0,
      pids: [task.pid],
    };
  }

  async listTasks(): Promise<TaskInfo[]> {
    this.enter('listTasks', {});
    return [...this.tasks.values()];
  }

  async checkpoint(request: CheckpointRequest): Promise<CheckpointInfo> {
    this.enter('checkpoint', request);
    throw new SidecarError('NC_FEATURE_UNAVAILABLE', 'the fake takes no bare checkpoints', status.UNIMPLEMENTED);
  }

  /** Stop-and-copy to the peer at `peerAddress`: the checkpoint is filed there, and kept here for a rollback. */
  async migrateToPeer(request: MigrateToPeerRequest): Promise<MigrateToPeerResponse> {
    this.enter('migrateToPeer', request);
    const task = this.task(request.taskId);
    const peer = this.peerAt(request.peerAddress);
    const checkpoint = this.checkpointOf(task, request.handoverKey);
    this.ownCopies.set(checkpoint.checkpointId, checkpoint);
    peer.staged.set(checkpoint.checkpointId, checkpoint);
    this.finish(request.taskId, TaskState.TASK_STATE_MIGRATED, { exitCode: 0, signal: 0, oomKilled: false });
    return {
      checkpoint,
      modeUsed: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
      wireBytes: 1024,
      freezeMs: 5,
      fallbackReason: '',
      fileBytes: 512,
    };
  }

  async findCheckpoint(request: FindCheckpointRequest): Promise<FindCheckpointResponse> {
    this.enter('findCheckpoint', request);
    const checkpoint = [...this.staged.values()].find((c) => c.handoverKey === request.handoverKey);
    return { found: checkpoint !== undefined, checkpoint };
  }

  /**
   * As the real sidecar's TakeOver: find, then restore or start cold. Its restore and cold start go through
   * `restoreTask` and `startTask` (and are recorded as calls of theirs), so `failNext('restoreTask')` fails it.
   */
  async takeOver(request: TakeOverRequest): Promise<TakeOverResponse> {
    this.enter('takeOver', request);
    const checkpoint = [...this.staged.values()].find((c) => c.handoverKey === request.handoverKey);
    const cold = async (reason: string, noCheckpoint: boolean): Promise<TakeOverResponse> => ({
      task: await this.startTask({ identity: request.identity, spec: request.spec }),
      restoredFrom: undefined,
      coldReason: reason,
      noCheckpoint,
    });
    if (checkpoint === undefined) {
      const reason = `no checkpoint filed under ${request.handoverKey} within ${request.waitMs} ms`;
      if (!request.coldStartFallback) throw new SidecarError('NC_CHECKPOINT_NOT_FOUND', reason, status.NOT_FOUND);
      return cold(reason, true);
    }
    try {
      const task = await this.restoreTask({
        identity: request.identity,
        checkpointId: checkpoint.checkpointId,
        spec: request.spec,
      });
      return { task, restoredFrom: checkpoint, coldReason: '', noCheckpoint: false };
    } catch (err) {
      if (!request.coldStartFallback) throw err;
      return cold(`restore of checkpoint ${checkpoint.checkpointId} failed (${errorMessage(err)})`, false);
    }
  }

  /** A checkpoint is consumed by its restore: it can never be restored twice. */
  async restoreTask(request: RestoreTaskRequest): Promise<TaskInfo> {
    this.enter('restoreTask', request);
    const checkpoint = this.staged.get(request.checkpointId) ?? this.ownCopies.get(request.checkpointId);
    if (checkpoint === undefined)
      throw new SidecarError(
        'NC_CHECKPOINT_NOT_FOUND',
        `no checkpoint ${request.checkpointId} on ${this.node}`,
        status.NOT_FOUND,
      );
    this.staged.delete(request.checkpointId);
    this.ownCopies.delete(request.checkpointId);
    this.cluster.restores += 1;
    return this.run({ identity: request.identity, spec: request.spec }, 200, checkpoint.checkpointId);
  }

  async listCheckpoints(): Promise<CheckpointInfo[]> {
    this.enter('listCheckpoints', {});
    return [...this.staged.values()];
  }

  /** Files a copy on the peer under "prestage/<task id>"; the task keeps running here. */
  async prestageTask(request: PrestageTaskRequest): Promise<PrestageTaskResponse> {
    this.enter('prestageTask', request);
    const task = this.task(request.taskId);
    if (task.state !== TaskState.TASK_STATE_RUNNING)
      throw new SidecarError(
        'NC_TASK_NOT_RUNNING',
        `task ${request.taskId} on ${this.node} is not running`,
        status.FAILED_PRECONDITION,
      );
    const peer = this.peerAt(request.peerAddress);
    const checkpoint = this.checkpointOf(task, `prestage/${request.taskId}`);
    for (const [id, staged] of peer.staged) if (staged.handoverKey === checkpoint.handoverKey) peer.staged.delete(id);
    peer.staged.set(checkpoint.checkpointId, checkpoint);
    return { checkpoint, wireBytes: checkpoint.sizeBytes, dumpMs: 3, shipMs: 4 };
  }

  async deleteCheckpoint(request: DeleteCheckpointRequest): Promise<boolean> {
    this.enter('deleteCheckpoint', request);
    const staged = this.staged.delete(request.checkpointId);
    return this.ownCopies.delete(request.checkpointId) || staged;
  }

  close(): void {
    this.closed = true;
  }
}
