import { status } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/logging';
import { TaskState as SidecarTaskState } from '../../proto/gen/chain/v1/sidecar';
import type { TaskIdentity, TaskSpec } from '../../proto/gen/chain/v1/sidecar';
import {
  CPUUsage_Fields,
  DriverCapabilities_FSIsolation,
  DriverCapabilities_MountConfigs,
  MemoryUsage_Fields,
  NetworkIsolationSpec_NetworkIsolationMode as NetworkMode,
  StartTaskResponse_Result,
} from '../../proto/gen/nomad/plugins/drivers/proto/driver';
import type {
  CapabilitiesResponse,
  CreateNetworkResponse,
  DestroyNetworkResponse,
  DestroyTaskRequest,
  DestroyTaskResponse,
  DriverTaskEvent,
  ExecTaskRequest,
  ExecTaskResponse,
  FingerprintResponse,
  InitResponse,
  InspectTaskRequest,
  InspectTaskResponse,
  RecoverTaskRequest,
  RecoverTaskResponse,
  ShutdownResponse,
  SignalTaskRequest,
  SignalTaskResponse,
  StartTaskRequest,
  StartTaskResponse,
  StopTaskRequest,
  StopTaskResponse,
  TaskConfig,
  TaskConfigSchemaResponse,
  TaskStatsRequest,
  TaskStatsResponse,
  WaitTaskRequest,
  WaitTaskResponse,
} from '../../proto/gen/nomad/plugins/drivers/proto/driver';
import type { BasePlugin } from './base-plugin';
import type { Chaining } from './chaining';
import { parseTaskConfig, taskConfigSpec } from './config';
import type { TaskDriverConfig } from './config';
import { SidecarError } from '../../common/sidecar-api/errors';
import { DriverError } from './errors';
import type { Fingerprinter } from './fingerprint';
import type { TaskEventBus } from './task-events';
import { TaskHandle } from './task-handle';
import { decodeTaskState } from './task-state';
import type { TaskStore } from './task-store';
import { durationToMs, timestampFromMs } from './timestamps';

export interface ChainDriverDeps {
  readonly base: BasePlugin;
  readonly store: TaskStore;
  readonly chaining: Chaining;
  readonly fingerprinter: Fingerprinter;
  readonly events: TaskEventBus;
  readonly clock: Clock;
  readonly log: Logger;
}

const CAPABILITIES: CapabilitiesResponse = {
  capabilities: {
    sendSignals: true,
    exec: true,
    // The sidecar binds the allocation's directories at /alloc, /local and /secrets inside the container.
    fsIsolation: DriverCapabilities_FSIsolation.IMAGE,
    networkIsolationModes: [NetworkMode.HOST, NetworkMode.GROUP],
    mustCreateNetwork: false,
    mountConfigs: DriverCapabilities_MountConfigs.NO_MOUNTS,
    // Tasks run on this node; Nomad 1.6's remote-task hand-over is not how chaining works.
    remoteTasks: false,
    disableLogCollection: false,
    dynamicWorkloadUsers: false,
  },
};

const WAIT_RETRY_MIN_MS = 500;
const WAIT_RETRY_MAX_MS = 10_000;

/**
 * hashicorp.nomad.plugins.drivers.proto.Driver: one thin method per RPC. Tasks live in the sidecar; the
 * plugin keeps only handles that lead to them, so tasks outlive the plugin and RecoverTask re-attaches.
 */
export class ChainDriver {
  constructor(private readonly deps: ChainDriverDeps) {}

  taskConfigSchema(): TaskConfigSchemaResponse {
    return { spec: taskConfigSpec() };
  }

  capabilities(): CapabilitiesResponse {
    return CAPABILITIES;
  }

  fingerprint(signal: AbortSignal): AsyncIterable<FingerprintResponse> {
    return this.deps.fingerprinter.stream(signal);
  }

  async startTask(request: StartTaskRequest): Promise<StartTaskResponse> {
    const config = requireTaskConfig(request.task);
    if (this.deps.store.has(config.id)) {
      throw new DriverError('NC_PLUGIN_TASK_EXISTS', `task ${JSON.stringify(config.id)} is already started`);
    }
    const driverConfig = parseTaskConfig(config.msgpackDriverConfig);
    const runtime = this.deps.base.current();
    const identity = identityOf(config);
    const spec = taskSpecOf(config, driverConfig);
    const outcome = await this.deps.chaining.start(runtime, config.id, identity, spec, driverConfig);
    const handle = new TaskHandle(config, driverConfig, {
      sidecarTaskId: identity.taskId,
      startedAtUnixMs: outcome.info.startedAtUnixMs > 0 ? outcome.info.startedAtUnixMs : this.deps.clock.now(),
      restoredFromCheckpoint: outcome.restoredFromCheckpoint,
      msgpackDriverConfig: Buffer.from(config.msgpackDriverConfig),
    });
    this.deps.store.set(handle);
    this.deps.log.info(
      { taskId: config.id, restoredFrom: outcome.restoredFromCheckpoint || undefined },
      'task started',
    );
    return {
      result: StartTaskResponse_Result.SUCCESS,
      driverErrorMsg: '',
      handle: handle.toProto(outcome.info),
      networkOverride: undefined,
    };
  }

  /** Blocks until the task exits; rides out sidecar restarts, as the task itself does. */
  async waitTask(request: WaitTaskRequest, signal: AbortSignal): Promise<WaitTaskResponse> {
    const handle = this.deps.store.get(request.taskId);
    let backoffMs = WAIT_RETRY_MIN_MS;
    for (;;) {
      try {
        const result = await this.deps.base.current().sidecar.waitTask(handle.sidecarTaskId, signal);
        return { result, err: '' };
      } catch (err) {
        if (signal.aborted || !(err instanceof SidecarError) || err.code !== 'NC_SIDECAR_UNREACHABLE') throw err;
        this.deps.log.warn({ err, taskId: handle.id }, 'sidecar unreachable while waiting for task, retrying');
        await this.deps.clock.sleep(backoffMs, signal);
        backoffMs = Math.min(backoffMs * 2, WAIT_RETRY_MAX_MS);
      }
    }
  }

  async stopTask(request: StopTaskRequest): Promise<StopTaskResponse> {
    const handle = this.deps.store.get(request.taskId);
    const runtime = this.deps.base.current();
    if (await this.deps.chaining.migrate(runtime, handle)) return {};
    await runtime.sidecar.stopTask({
      taskId: handle.sidecarTaskId,
      signal: request.signal,
      timeoutMs: durationToMs(request.timeout),
    });
    return {};
  }

  /** Idempotent: Nomad destroys with force after every exit and after a failed recovery. */
  async destroyTask(request: DestroyTaskRequest): Promise<DestroyTaskResponse> {
    const handle = this.deps.store.find(request.taskId);
    const sidecar = this.deps.base.current().sidecar;
    if (handle === undefined) {
      // Nomad destroys with force after a failed recovery: the plugin holds no handle, but the sidecar may
      // still run the task, which would then hold its port against the replacement.
      if (request.force) await this.destroyInSidecar(sidecarTaskIdOf({ id: request.taskId }), true);
      return {};
    }
    if (!request.force) {
      const info = await sidecar.inspectTask(handle.sidecarTaskId);
      if (info.state === SidecarTaskState.TASK_STATE_RUNNING) {
        throw new DriverError(
          'NC_PLUGIN_TASK_RUNNING',
          `task ${JSON.stringify(handle.id)} is running; stop it or destroy with force`,
        );
      }
    }
    await this.destroyInSidecar(handle.sidecarTaskId, request.force);
    this.deps.store.delete(handle.id);
    return {};
  }

  private async destroyInSidecar(sidecarTaskId: string, force: boolean): Promise<void> {
    try {
      await this.deps.base.current().sidecar.destroyTask({ taskId: sidecarTaskId, force });
    } catch (err) {
      if (!(err instanceof SidecarError && err.grpcCode === status.NOT_FOUND)) throw err;
    }
  }

  async inspectTask(request: InspectTaskRequest): Promise<InspectTaskResponse> {
    const handle = this.deps.store.get(request.taskId);
    const info = await this.deps.base.current().sidecar.inspectTask(handle.sidecarTaskId);
    const attributes: Record<string, string> = { sidecar_task_id: handle.sidecarTaskId, node_name: info.nodeName };
    if (info.pid > 0) attributes.pid = String(info.pid);
    const restored = info.restoredFromCheckpoint || handle.state.restoredFromCheckpoint;
    if (restored !== '') attributes.restored_from_checkpoint = restored;
    if (info.state === SidecarTaskState.TASK_STATE_MIGRATED) attributes.migrated = 'true';
    return { task: handle.status(info), driver: { attributes }, networkOverride: undefined };
  }

  /** One sample per collection interval until Nomad closes the stream. */
  async *taskStats(request: TaskStatsRequest, signal: AbortSignal): AsyncGenerator<TaskStatsResponse> {
    const handle = this.deps.store.get(request.taskId);
    const intervalMs = Math.max(durationToMs(request.collectionInterval), 100);
    while (!signal.aborted) {
      const sample = await this.deps.base.current().sidecar.taskStats(handle.sidecarTaskId);
      const usage = {
        cpu: {
          systemMode: 0,
          userMode: 0,
          totalTicks: 0,
          throttledPeriods: 0,
          throttledTime: 0,
          percent: sample.cpuPercent,
          measuredFields: [CPUUsage_Fields.PERCENT],
        },
        memory: {
          rss: sample.memoryRssBytes,
          cache: 0,
          maxUsage: sample.memoryMaxUsageBytes,
          kernelUsage: 0,
          kernelMaxUsage: 0,
          usage: sample.memoryUsageBytes,
          swap: 0,
          measuredFields: [MemoryUsage_Fields.RSS, MemoryUsage_Fields.MAX_USAGE, MemoryUsage_Fields.USAGE],
        },
      };
      yield {
        stats: {
          id: handle.id,
          timestamp: timestampFromMs(sample.timestampUnixMs > 0 ? sample.timestampUnixMs : this.deps.clock.now()),
          aggResourceUsage: usage,
          resourceUsageByPid: {},
        },
      };
      try {
        await this.deps.clock.sleep(intervalMs, signal);
      } catch {
        return;
      }
    }
  }

  taskEvents(signal: AbortSignal): AsyncIterable<DriverTaskEvent> {
    return this.deps.events.subscribe(signal);
  }

  async signalTask(request: SignalTaskRequest): Promise<SignalTaskResponse> {
    const handle = this.deps.store.get(request.taskId);
    await this.deps.base.current().sidecar.signalTask({ taskId: handle.sidecarTaskId, signal: request.signal });
    return {};
  }

  async execTask(request: ExecTaskRequest): Promise<ExecTaskResponse> {
    const handle = this.deps.store.get(request.taskId);
    if (request.command.length === 0) throw new DriverError('NC_PLUGIN_REQUEST_INVALID', 'exec needs a command');
    const result = await this.deps.base.current().sidecar.execTask({
      taskId: handle.sidecarTaskId,
      argv: request.command,
      timeoutMs: durationToMs(request.timeout),
    });
    return {
      stdout: Buffer.from(result.stdout),
      stderr: Buffer.from(result.stderr),
      result: { exitCode: result.exitCode, signal: 0, oomKilled: false },
    };
  }

  /** Re-attaches to a task the sidecar still runs, from the handle Nomad stored (works in a fresh process). */
  async recoverTask(request: RecoverTaskRequest): Promise<RecoverTaskResponse> {
    const stored = request.handle;
    if (stored?.config === undefined) {
      throw new DriverError('NC_PLUGIN_REQUEST_INVALID', 'RecoverTask needs a handle with its task config');
    }
    const config = stored.config;
    if (this.deps.store.has(config.id)) return {};
    const state = decodeTaskState(stored.version, stored.driverState);
    // Nomad v1.6.5 hands back a TaskConfig without its driver config after a client restart.
    const msgpack = config.msgpackDriverConfig.length > 0 ? config.msgpackDriverConfig : state.msgpackDriverConfig;
    const driverConfig = parseTaskConfig(msgpack);
    try {
      await this.deps.base.current().sidecar.inspectTask(state.sidecarTaskId);
    } catch (err) {
      if (err instanceof SidecarError && err.grpcCode === status.NOT_FOUND) {
        throw new DriverError(
          'NC_PLUGIN_TASK_NOT_FOUND',
          `task ${JSON.stringify(config.id)} no longer exists in the sidecar`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
    this.deps.store.set(new TaskHandle(config, driverConfig, state));
    this.deps.log.info({ taskId: config.id }, 'task recovered');
    return {};
  }

  createNetwork(): CreateNetworkResponse {
    throw unsupported('CreateNetwork');
  }

  destroyNetwork(): DestroyNetworkResponse {
    throw unsupported('DestroyNetwork');
  }

  init(): InitResponse {
    return {};
  }

  shutdown(): ShutdownResponse {
    this.deps.log.info({ tasks: this.deps.store.size }, 'driver shutdown notice; tasks keep running in the sidecar');
    return {};
  }
}

function requireTaskConfig(config: TaskConfig | undefined): TaskConfig {
  if (config === undefined || config.id === '') {
    throw new DriverError('NC_PLUGIN_REQUEST_INVALID', 'StartTask needs a task config with an id');
  }
  return config;
}

function unsupported(rpc: string): DriverError {
  return new DriverError('NC_PLUGIN_UNSUPPORTED', `${rpc} is not supported: the chain driver does not create networks`);
}

/** Nomad's ids ("<alloc>/<task>/<hex>") contain slashes; the sidecar names containers after its task ids. */
export function sidecarTaskIdOf(config: Pick<TaskConfig, 'id'>): string {
  return config.id.replace(/[^A-Za-z0-9_.-]/g, '_');
}

function identityOf(config: TaskConfig): TaskIdentity {
  return {
    taskId: sidecarTaskIdOf(config),
    allocId: config.allocId,
    taskName: config.name,
    jobId: config.jobId,
    namespace: config.namespace,
  };
}

/** The allocation's directories on the host, bound at /alloc, /local and /secrets in the container. */
function taskSpecOf(config: TaskConfig, driverConfig: TaskDriverConfig): TaskSpec {
  const linux = config.resources?.linuxResources;
  const network = config.networkIsolationSpec;
  return {
    argv: [driverConfig.command, ...driverConfig.args],
    env: { ...config.env },
    cwd: driverConfig.cwd,
    allocDir: config.allocDir === '' ? '' : `${config.allocDir}/alloc`,
    localDir: config.allocDir === '' ? '' : `${config.allocDir}/${config.name}/local`,
    secretsDir: config.allocDir === '' ? '' : `${config.allocDir}/${config.name}/secrets`,
    memoryLimitBytes: Math.max(linux?.memoryLimitBytes ?? 0, 0),
    cpuShares: Math.max(linux?.cpuShares ?? 0, 0),
    stdoutPath: config.stdoutPath,
    stderrPath: config.stderrPath,
    networkNamespace: network !== undefined && network.mode === NetworkMode.GROUP ? network.path : '',
    rootfs: driverConfig.rootfs,
    binds: {},
    // Nomad's task `user`: the sidecar resolves it inside the task's root and user namespace.
    user: config.user,
  };
}
