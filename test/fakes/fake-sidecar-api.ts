import { NomadChainError, errorMessage } from '../../common/errors';
import type { SidecarApi } from '../../common/sidecar-api/sidecar-api';
import {
  MigrationMode,
  TaskState,
  type CheckpointInfo,
  type FeaturesResponse,
  type FindCheckpointResponse,
  type MigrateToPeerResponse,
  type FindCheckpointRequest,
  type MigrateToPeerRequest,
  type PrestageTaskRequest,
  type PrestageTaskResponse,
  type RestoreTaskRequest,
  type StartTaskRequest,
  type TakeOverRequest,
  type TakeOverResponse,
  type TaskInfo,
} from '../../proto/gen/chain/v1/sidecar';

type Method = keyof SidecarApi;

/** Sidecars of several fake nodes that hand checkpoints to each other as the real ones do, without CRIU. */
export class FakeSidecarCluster {
  readonly sidecars = new Map<string, FakeSidecarApi>();
  /** transfer address -> node name */
  readonly addresses = new Map<string, string>();
  restores = 0;

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

export class FakeSidecarApi implements SidecarApi {
  readonly tasks = new Map<string, TaskInfo>();
  /** Staged checkpoints by id, and the handover key each is filed under. */
  readonly staged = new Map<string, CheckpointInfo>();
  /** This node's own copies of checkpoints it dumped (what a rollback restores from). */
  readonly ownCopies = new Map<string, CheckpointInfo>();
  private readonly failures = new Map<Method, Error>();
  dead = false;
  private nextCheckpoint = 1;

  constructor(
    readonly node: string,
    private readonly cluster: FakeSidecarCluster,
    readonly transferAddress = '',
  ) {}

  failNext(method: Method, error: Error = new NomadChainError('NC_FAKE_FAILURE', `${method} failed`)): void {
    this.failures.set(method, error);
  }

  private gate(method: Method): void {
    if (this.dead) throw new NomadChainError('NC_SIDECAR_UNREACHABLE', `sidecar on ${this.node} is down`);
    const failure = this.failures.get(method);
    if (failure !== undefined) {
      this.failures.delete(method);
      throw failure;
    }
  }

  private peerAt(address: string): FakeSidecarApi {
    const peerNode = this.cluster.addresses.get(address);
    const peer = peerNode === undefined ? undefined : this.cluster.sidecar(peerNode);
    if (peer === undefined || peer.dead)
      throw new NomadChainError('NC_TRANSFER_PEER_UNREACHABLE', `peer ${address} unreachable`);
    return peer;
  }

  private checkpointOf(task: TaskInfo, handoverKey: string): CheckpointInfo {
    return {
      checkpointId: `ckpt-${this.node}-${this.nextCheckpoint++}`,
      handoverKey,
      source: task.identity,
      manifestDigest: 'digest',
      sizeBytes: 1024,
      createdAtUnixMs: Date.now(),
      spec: undefined,
      sourceNode: this.node,
    };
  }

  private task(taskId: string): TaskInfo {
    const task = this.tasks.get(taskId);
    if (task === undefined) throw new NomadChainError('NC_TASK_NOT_FOUND', `no task ${taskId} on ${this.node}`);
    return task;
  }

  async features(): Promise<FeaturesResponse> {
    this.gate('features');
    return {
      healthy: true,
      reason: '',
      criuVersion: '4.2.1',
      runcVersion: '1.1.5',
      preCopy: false,
      lazyPages: true,
      nodeName: this.node,
      transferAddress: this.transferAddress,
    };
  }

  async startTask(request: StartTaskRequest): Promise<TaskInfo> {
    this.gate('startTask');
    const taskId = request.identity?.taskId ?? '';
    const info: TaskInfo = {
      identity: request.identity,
      state: TaskState.TASK_STATE_RUNNING,
      pid: 100 + this.tasks.size,
      startedAtUnixMs: Date.now(),
      completedAtUnixMs: 0,
      exit: undefined,
      nodeName: this.node,
      restoredFromCheckpoint: '',
    };
    this.tasks.set(taskId, info);
    return info;
  }

  async waitTask(): Promise<never> {
    throw new Error('not used');
  }

  async stopTask(request: { taskId: string }): Promise<TaskInfo> {
    this.gate('stopTask');
    const task = { ...this.task(request.taskId), state: TaskState.TASK_STATE_EXITED };
    this.tasks.set(request.taskId, task);
    return task;
  }

  async destroyTask(request: { taskId: string }): Promise<TaskInfo> {
    this.gate('destroyTask');
    const task = this.task(request.taskId);
    this.tasks.delete(request.taskId);
    return task;
  }

  async inspectTask(taskId: string): Promise<TaskInfo> {
    this.gate('inspectTask');
    return this.task(taskId);
  }

  async signalTask(): Promise<never> {
    throw new Error('not used');
  }
  async execTask(): Promise<never> {
    throw new Error('not used');
  }
  async taskStats(): Promise<never> {
    throw new Error('not used');
  }
  async listTasks(): Promise<TaskInfo[]> {
    this.gate('listTasks');
    return [...this.tasks.values()];
  }
  async checkpoint(): Promise<never> {
    throw new Error('not used');
  }

  async migrateToPeer(request: MigrateToPeerRequest): Promise<MigrateToPeerResponse> {
    this.gate('migrateToPeer');
    const task = this.task(request.taskId);
    const peer = this.peerAt(request.peerAddress);
    const checkpoint = this.checkpointOf(task, request.handoverKey);
    this.ownCopies.set(checkpoint.checkpointId, checkpoint);
    peer.staged.set(checkpoint.checkpointId, checkpoint);
    this.tasks.set(request.taskId, { ...task, state: TaskState.TASK_STATE_MIGRATED });
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
    this.gate('findCheckpoint');
    const checkpoint = [...this.staged.values()].find((c) => c.handoverKey === request.handoverKey);
    return { found: checkpoint !== undefined, checkpoint };
  }

  /** As the real sidecar's TakeOver: find, then restore or start cold; its restore obeys failNext('restoreTask'). */
  async takeOver(request: TakeOverRequest): Promise<TakeOverResponse> {
    this.gate('takeOver');
    const checkpoint = [...this.staged.values()].find((c) => c.handoverKey === request.handoverKey);
    const cold = async (reason: string, noCheckpoint: boolean): Promise<TakeOverResponse> => ({
      task: await this.startTask({ identity: request.identity, spec: request.spec }),
      restoredFrom: undefined,
      coldReason: reason,
      noCheckpoint,
    });
    if (checkpoint === undefined) {
      const reason = `no checkpoint filed under ${request.handoverKey} within ${request.waitMs} ms`;
      if (!request.coldStartFallback) throw new NomadChainError('NC_CHECKPOINT_NOT_FOUND', reason);
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

  async restoreTask(request: RestoreTaskRequest): Promise<TaskInfo> {
    this.gate('restoreTask');
    const checkpoint = this.staged.get(request.checkpointId) ?? this.ownCopies.get(request.checkpointId);
    if (checkpoint === undefined)
      throw new NomadChainError('NC_CHECKPOINT_NOT_FOUND', `no checkpoint ${request.checkpointId} on ${this.node}`);
    // A checkpoint is consumed by its restore: it can never be restored twice.
    this.staged.delete(request.checkpointId);
    this.ownCopies.delete(request.checkpointId);
    this.cluster.restores += 1;
    const taskId = request.identity?.taskId ?? '';
    const info: TaskInfo = {
      identity: request.identity,
      state: TaskState.TASK_STATE_RUNNING,
      pid: 200,
      startedAtUnixMs: Date.now(),
      completedAtUnixMs: 0,
      exit: undefined,
      nodeName: this.node,
      restoredFromCheckpoint: checkpoint.checkpointId,
    };
    this.tasks.set(taskId, info);
    return info;
  }

  async listCheckpoints(): Promise<CheckpointInfo[]> {
    return [...this.staged.values()];
  }

  /** Files a copy on the peer under "prestage/<task id>"; the task keeps running here. */
  async prestageTask(request: PrestageTaskRequest): Promise<PrestageTaskResponse> {
    this.gate('prestageTask');
    const task = this.task(request.taskId);
    if (task.state !== TaskState.TASK_STATE_RUNNING)
      throw new NomadChainError('NC_TASK_NOT_RUNNING', `task ${request.taskId} on ${this.node} is not running`);
    const peer = this.peerAt(request.peerAddress);
    const checkpoint = this.checkpointOf(task, `prestage/${request.taskId}`);
    for (const [id, staged] of peer.staged) if (staged.handoverKey === checkpoint.handoverKey) peer.staged.delete(id);
    peer.staged.set(checkpoint.checkpointId, checkpoint);
    return { checkpoint, wireBytes: checkpoint.sizeBytes, dumpMs: 3, shipMs: 4 };
  }

  async deleteCheckpoint(request: { checkpointId: string }): Promise<boolean> {
    this.gate('deleteCheckpoint');
    const staged = this.staged.delete(request.checkpointId);
    return this.ownCopies.delete(request.checkpointId) || staged;
  }

  close(): void {}
}
