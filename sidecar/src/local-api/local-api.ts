import { rm } from 'node:fs/promises';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Clock } from '../../../common/clock';
import { encodeStatus } from '../../../common/grpc/status-codec';
import type {
  ExitResult,
  LazyPages,
  SidecarServer,
  TaskIdentity,
  TaskInfo,
  TaskSpec,
} from '../../../proto/gen/chain/v1/sidecar';
import { TaskState } from '../../../proto/gen/chain/v1/sidecar';
import { TaskError } from '../errors';
import type { Dumper } from '../checkpoint/dump';
import type { Features } from '../checkpoint/features';
import { checkpointInfo } from '../checkpoint/staging';
import type { PeerMigrator } from '../checkpoint/migrate-to-peer';
import type { TaskPrestager } from '../checkpoint/prestager';
import type { Restorer } from '../checkpoint/restore';
import type { RetainedCheckpoints } from '../checkpoint/retained';
import type { StagedCheckpoints } from '../checkpoint/staging';
import { resumeHeldSource } from '../checkpoint/held-source';
import { TakeOver } from '../checkpoint/take-over';
import type { TaskRuntime, TaskView } from '../runtime/task-runtime';

export interface LocalApiConfig {
  readonly nodeName: string;
  /** host:port peers reach this node's State Transfer Protocol server at. */
  readonly transferAddress: string;
  /** Scratch space for restores (staged checkpoints are materialized here). */
  readonly restoreDir: string;
  readonly defaultStopTimeoutMs: number;
}

export interface LocalApiDeps {
  readonly runtime: TaskRuntime;
  readonly dumper: Dumper;
  readonly restorer: Restorer;
  readonly migrator: Pick<PeerMigrator, 'migrate'>;
  readonly prestager: Pick<TaskPrestager, 'prestage'>;
  readonly staged: StagedCheckpoints;
  readonly retained: RetainedCheckpoints;
  readonly features: () => Features;
  readonly clock: Clock;
  readonly log: Logger;
}

const PHASE_STATE = {
  running: TaskState.TASK_STATE_RUNNING,
  exited: TaskState.TASK_STATE_EXITED,
  migrated: TaskState.TASK_STATE_MIGRATED,
  held: TaskState.TASK_STATE_HELD,
};

function taskInfo(view: TaskView, nodeName: string, lazyPages: LazyPages): TaskInfo {
  const { record } = view;
  const exit: ExitResult | undefined = record.exit && {
    exitCode: record.exit.exitCode,
    signal: record.exit.signal,
    oomKilled: record.exit.oomKilled,
  };
  return {
    identity: record.identity,
    state: PHASE_STATE[record.phase],
    pid: view.pid,
    startedAtUnixMs: record.startedAtMs,
    completedAtUnixMs: record.completedAtMs,
    exit,
    nodeName,
    restoredFromCheckpoint: record.restoredFromCheckpoint,
    checkpointing: view.checkpointing ?? false,
    lazyPages,
  };
}

function requireIdentity(identity: TaskIdentity | undefined): TaskIdentity {
  if (!identity || identity.taskId === '') throw new TaskError('NC_TASK_SPEC_INVALID', 'identity.task_id is required');
  return identity;
}

function requireSpec(spec: TaskSpec | undefined): TaskSpec {
  if (!spec) throw new TaskError('NC_TASK_SPEC_INVALID', 'spec is required');
  return spec;
}

/**
 * Adapts one async method to a grpc-js unary handler; every error leaves through the status codec. The method's
 * signal aborts when the call is cancelled (the caller gave up, or its deadline passed), so waits end with it.
 */
function unary<Req, Res>(log: Logger, method: string, fn: (request: Req, cancelled: AbortSignal) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const cancelled = new AbortController();
    call.once('cancelled', () => cancelled.abort());
    fn(call.request, cancelled.signal).then(
      (response) => callback(null, response),
      (err: unknown) => {
        log.warn({ err, method }, 'local API call failed');
        callback(encodeStatus(err), null);
      },
    );
  };
}

/** The sidecar's local API (`chain.v1.Sidecar`): one thin method per RPC. */
export class LocalApi {
  private readonly takeOvers: TakeOver;

  constructor(
    private readonly config: LocalApiConfig,
    private readonly deps: LocalApiDeps,
  ) {
    this.takeOvers = new TakeOver({
      runtime: deps.runtime,
      restorer: deps.restorer,
      staged: deps.staged,
      retained: deps.retained,
      restoreDir: config.restoreDir,
      log: deps.log,
    });
  }

  private info(view: TaskView): TaskInfo {
    return taskInfo(view, this.config.nodeName, this.takeOvers.lazyPagesOf(view.record.identity.taskId));
  }

  handlers(): SidecarServer {
    const log = this.deps.log;
    const { runtime } = this.deps;
    return {
      features: unary(log, 'Features', () => {
        const f = this.deps.features();
        return Promise.resolve({
          healthy: true,
          reason: '',
          criuVersion: f.criuVersion,
          runcVersion: f.runcVersion,
          preCopy: f.preCopy,
          lazyPages: f.lazyPages,
          nodeName: this.config.nodeName,
          transferAddress: this.config.transferAddress,
        });
      }),
      startTask: unary(log, 'StartTask', async (req) =>
        this.info(await runtime.start(requireIdentity(req.identity), requireSpec(req.spec))),
      ),
      waitTask: unary(log, 'WaitTask', async (req) => ({ exit: await runtime.wait(req.taskId) })),
      stopTask: unary(log, 'StopTask', async (req) => {
        await runtime.stop(req.taskId, req.signal || 'SIGTERM', req.timeoutMs || this.config.defaultStopTimeoutMs);
        return this.info(await runtime.inspect(req.taskId));
      }),
      destroyTask: unary(log, 'DestroyTask', async (req) =>
        this.info({ record: await runtime.destroy(req.taskId, req.force), pid: 0, dir: '' }),
      ),
      inspectTask: unary(log, 'InspectTask', async (req) => this.info(await runtime.inspect(req.taskId))),
      signalTask: unary(log, 'SignalTask', async (req) => {
        await runtime.signal(req.taskId, req.signal || 'SIGTERM');
        return this.info(await runtime.inspect(req.taskId));
      }),
      execTask: unary(log, 'ExecTask', async (req) => runtime.exec(req.taskId, req.argv, req.timeoutMs || 30_000)),
      taskStats: unary(log, 'TaskStats', async (req) => {
        const s = await runtime.stats(req.taskId);
        return {
          timestampUnixMs: s.timestampMs,
          memoryRssBytes: s.memoryRssBytes,
          memoryUsageBytes: s.memoryUsageBytes,
          memoryMaxUsageBytes: s.memoryMaxUsageBytes,
          cpuPercent: s.cpuPercent,
          cpuTotalNs: s.cpuTotalNs,
          pids: s.pids,
        };
      }),
      listTasks: unary(log, 'ListTasks', async () => ({
        tasks: await Promise.all(runtime.list().map(async (r) => this.info(await runtime.inspect(r.taskId)))),
      })),
      checkpoint: unary(log, 'Checkpoint', async (req) => {
        const dumped = await this.deps.dumper.dump({
          taskId: req.taskId,
          leaveRunning: req.leaveRunning,
          handoverKey: req.handoverKey || req.taskId,
        });
        try {
          return await this.deps.staged.adopt(dumped.dir, dumped.meta);
        } finally {
          await rm(dumped.dir, { recursive: true, force: true });
        }
      }),
      migrateToPeer: unary(log, 'MigrateToPeer', async (req) => {
        const result = await this.deps.migrator.migrate({
          taskId: req.taskId,
          peerAddress: req.peerAddress,
          mode: req.mode,
          handoverKey: req.handoverKey || req.taskId,
        });
        return {
          checkpoint: checkpointInfo(result.meta),
          modeUsed: result.modeUsed,
          wireBytes: result.wireBytes,
          freezeMs: result.freezeMs,
          fallbackReason: result.fallbackReason,
          fileBytes: result.meta.fileTree?.totalBytes ?? 0,
        };
      }),
      findCheckpoint: unary(log, 'FindCheckpoint', async (req, cancelled) => {
        const info = await this.deps.staged.find(req.handoverKey, req.waitMs, cancelled);
        return { found: info !== undefined, checkpoint: info };
      }),
      restoreTask: unary(log, 'RestoreTask', async (req) =>
        this.info(await this.takeOvers.restore(requireIdentity(req.identity), req.checkpointId, requireSpec(req.spec))),
      ),
      takeOver: unary(log, 'TakeOver', async (req, cancelled) => {
        const outcome = await this.takeOvers.takeOver(
          {
            identity: requireIdentity(req.identity),
            spec: requireSpec(req.spec),
            handoverKey: req.handoverKey,
            waitMs: req.waitMs,
            coldStartFallback: req.coldStartFallback,
          },
          cancelled,
        );
        return {
          task: this.info(outcome.view),
          restoredFrom: outcome.restoredFrom,
          coldReason: outcome.coldReason,
          noCheckpoint: outcome.noCheckpoint,
        };
      }),
      resumeTask: unary(log, 'ResumeTask', async (req) => {
        await resumeHeldSource({ runtime, dumper: this.deps.dumper }, req.taskId);
        return this.info(await runtime.inspect(req.taskId));
      }),
      listCheckpoints: unary(log, 'ListCheckpoints', async () => ({
        checkpoints: await this.deps.staged.list(),
      })),
      prestageTask: unary(log, 'PrestageTask', async (req) => {
        const copy = await this.deps.prestager.prestage(req.taskId, req.peerAddress);
        return {
          checkpoint: checkpointInfo(copy.meta),
          wireBytes: copy.wireBytes,
          dumpMs: copy.dumpMs,
          shipMs: copy.shipMs,
        };
      }),
      deleteCheckpoint: unary(log, 'DeleteCheckpoint', async (req) => {
        const staged = await this.deps.staged.get(req.checkpointId);
        if (staged !== undefined) await this.deps.staged.delete(req.checkpointId);
        const retained = await this.deps.retained.release(req.checkpointId);
        return { deleted: staged !== undefined || retained };
      }),
    };
  }
}
