import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Clock } from '../../../common/clock';
import { SystemClock } from '../../../common/clock';
import type { TaskIdentity, TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { errorMessage } from '../../../common/errors';
import { FileTreeError, RestoreError } from '../errors';
import type { SearchGrant } from '../runtime/search-grant';
import type { TaskRuntime, TaskView } from '../runtime/task-runtime';
import type { Criu } from './criu';
import { criuLogTail } from './dump';
import type { EnvironmentReport, EnvironmentRewrite } from './environ/environment-rewriter';
import { EnvironmentRewriter } from './environ/environment-rewriter';
import type { CheckpointMeta } from './manifest';
import { imagesDir, readMeta, verifyCheckpoint } from './manifest';
import { restoreTaskFiles } from './file-tree/task-files';
import { StatusChannel } from './status-fd';
import type { StepsMs } from './step-times';
import { StepTimes } from './step-times';
import { removeMountedDir } from '../runtime/mounted-dir';

export interface RestorerDeps {
  readonly runtime: TaskRuntime;
  readonly log: Logger;
  /** Needed for lazy checkpoints only: runs the lazy-pages daemon that feeds the restored task. */
  readonly criu?: Criu;
  /** Network namespace the lazy-pages daemon runs in ('' = the sidecar's); never the restored task's. */
  readonly lazyPagesNetns?: string;
  readonly daemonStartTimeoutMs?: number;
  /** Times each step of a restore for its log line; the system clock when absent. */
  readonly clock?: Clock;
  /** Set when tasks run in their own user namespace: lets its root reach the task's directories for CRIU. */
  readonly searchGrant?: SearchGrant;
}

export interface RestoreResult {
  readonly view: TaskView;
  readonly meta: CheckpointMeta;
  /** Which variables the restored processes now hold with the new value, and which kept the checkpoint's;
   * `undefined` when the images could not be rewritten (every process kept the checkpoint's environment). */
  readonly environment: EnvironmentReport | undefined;
  /**
   * Settles when the restored task no longer depends on the source: at once for a full checkpoint; for a lazy
   * one when the daemon has pulled every page (and rejects if it failed: the task then lacks memory).
   */
  readonly complete: Promise<void>;
  /** Where the restore's time went, step by step (verify, files, environment, runc restore). */
  readonly stepsMs: StepsMs;
}

/**
 * The restored task's spec: program and working directory are the checkpoint's (the process already runs
 * them); environment, directories, network, logs and limits are the new allocation's. The bundle's environment
 * is what `runc exec` (and so `nomad alloc exec`) gives commands run in the task; the restored processes get it
 * from the images' rewrite (EnvironmentRewriter), where it fits in place.
 */
export function restoredSpec(meta: CheckpointMeta, local: TaskSpec): TaskSpec {
  return { ...local, argv: meta.spec.argv, cwd: meta.spec.cwd, binds: meta.spec.binds };
}

export interface RestoreRequest {
  readonly identity: TaskIdentity;
  readonly checkpointDir: string;
  readonly spec: TaskSpec;
  /**
   * The checkpoint store laid this directory down (StagedCheckpoints.materializesVerified): every chunk's sha256
   * checked when the store took it in, sealed under that digest, authenticated again as it was read back. Its
   * images are then not hashed a second time. Any other directory (a dump or retained copy on this node's disk,
   * a plain staged directory) is verified against its metadata before CRIU reads it.
   */
  readonly verifiedByStore?: boolean;
}

const SYSTEM_CLOCK = new SystemClock();

/** Restores verified checkpoints as new tasks; each checkpoint at most once per sidecar. */
export class Restorer {
  private readonly used = new Set<string>();
  private readonly environment = new EnvironmentRewriter();

  constructor(private readonly deps: RestorerDeps) {}

  async restore(request: RestoreRequest): Promise<RestoreResult> {
    const steps = new StepTimes(this.deps.clock ?? SYSTEM_CLOCK);
    const meta = await steps.time('verify', () =>
      request.verifiedByStore === true ? readMeta(request.checkpointDir) : verifyCheckpoint(request.checkpointDir),
    );
    const { checkpointId } = meta;
    const taskId = request.identity.taskId;
    if (this.used.has(checkpointId)) {
      throw new RestoreError('NC_CHECKPOINT_ALREADY_RESTORED', 'this checkpoint was already restored', {
        context: { checkpointId, taskId },
      });
    }
    if (meta.mode === 'files') {
      throw new RestoreError('NC_RESTORE_FAILED', 'a files-only pre-round holds no process to restore', {
        context: { checkpointId, taskId },
      });
    }
    this.used.add(checkpointId);
    // CRIU keeps mounts (and the lazy-pages socket) in its work directory until the restore ends: it lives
    // beside the checkpoint and is removed only once nothing uses it.
    const workPath = `${request.checkpointDir}.restore-work`;
    await mkdir(workPath, { recursive: true });
    let daemon: LazyDaemon | undefined;
    let rewrite: EnvironmentRewrite | undefined;
    try {
      const spec = await steps.time('prepareDirs', () =>
        this.deps.runtime.prepareDirs(request.identity, restoredSpec(meta, request.spec)),
      );
      const granted = await steps.time('searchGrant', async () =>
        this.deps.searchGrant?.allow([spec.allocDir, spec.localDir, spec.secretsDir, ...Object.keys(spec.binds)]),
      );
      if (granted !== undefined && granted.length > 0)
        this.deps.log.info({ taskId, dirs: granted }, "granted the task's root search on directories above its binds");
      const placed = await steps.time('files', () => restoreTaskFiles(request.checkpointDir, meta.fileTree, spec));
      if (placed !== undefined) this.deps.log.info({ taskId, checkpointId, ...placed }, 'task files restored');
      // The checkpoint's content is known intact (above); from here its pages image holds the new environment until undone.
      rewrite = await steps.time('environment', () => this.rewriteEnvironment(meta, request));
      if (meta.mode === 'lazy')
        daemon = await steps.time('pageDaemon', () => this.startDaemon(meta, request.checkpointDir, workPath));
      // A daemon that dies before the task runs (the source's page server gone) leaves the restore waiting for
      // pages that will never come: give it up at once rather than at the start timeout.
      const abandon = new AbortController();
      daemon?.done.catch((err: unknown) => abandon.abort(err));
      const view = await steps.time('runcRestore', () =>
        this.deps.runtime.startFromImages(request.identity, spec, {
          imagePath: imagesDir(request.checkpointDir),
          workPath,
          lazy: daemon !== undefined,
          checkpointId,
          abandon: abandon.signal,
        }),
      );
      const stepsMs = steps.ms;
      this.deps.log.info({ taskId, checkpointId, pid: view.pid, lazy: daemon !== undefined, stepsMs }, 'task restored');
      const complete = (daemon ? daemon.done : Promise.resolve()).finally(() => removeMountedDir(workPath));
      // Callers that do not wait still must not see an unhandled rejection; the failure is logged here.
      complete.catch((err: unknown) =>
        this.deps.log.error({ err, taskId, checkpointId }, 'lazy pages did not all arrive'),
      );
      return { view, meta, environment: rewrite?.report, complete, stepsMs };
    } catch (cause) {
      // Nothing runs from it: the checkpoint may be tried again (here, or on another node).
      this.used.delete(checkpointId);
      daemon?.kill();
      await rewrite
        ?.undo()
        .catch((err: unknown) =>
          this.deps.log.warn(
            { err, taskId, checkpointId },
            'environment rewrite not undone; the checkpoint fails its digests',
          ),
        );
      const criu = await criuLogTail(`${workPath}/restore.log`);
      await removeMountedDir(workPath).catch(() => undefined);
      // The files could not be laid down (corrupt content, full disk): their own code says which, and no
      // process was started.
      if (cause instanceof FileTreeError) throw cause;
      throw new RestoreError('NC_RESTORE_FAILED', `restore failed: ${criu || errorMessage(cause)}`, {
        cause,
        context: { checkpointId, taskId },
      });
    }
  }

  /**
   * Rewrites the checkpoint's environment to the new allocation's where it fits in place. Names are logged,
   * never values (they may be secrets). Images that cannot be rewritten do not stop the restore: the task then
   * runs with the environment it had.
   */
  private async rewriteEnvironment(
    meta: CheckpointMeta,
    request: RestoreRequest,
  ): Promise<EnvironmentRewrite | undefined> {
    const context = { taskId: request.identity.taskId, checkpointId: meta.checkpointId };
    let rewrite: EnvironmentRewrite;
    try {
      rewrite = await this.environment.rewrite(imagesDir(request.checkpointDir), meta.spec.env, request.spec.env);
    } catch (err) {
      this.deps.log.warn({ err, ...context }, 'environment not rewritten; the task keeps its checkpoint environment');
      return undefined;
    }
    const { rewritten, kept, processes } = rewrite.report;
    if (kept.length > 0) {
      this.deps.log.warn({ ...context, processes, rewritten, kept }, 'environment variables kept their old values');
    } else if (rewritten.length > 0) {
      this.deps.log.info({ ...context, processes, rewritten }, 'environment rewritten');
    }
    return rewrite;
  }

  /** Starts the lazy-pages daemon and waits for its status byte: only then may the restore begin. */
  private async startDaemon(meta: CheckpointMeta, checkpointDir: string, workPath: string): Promise<LazyDaemon> {
    const { criu } = this.deps;
    const match = /^(.*):(\d+)$/.exec(meta.pageServer ?? '');
    if (!criu || !match?.[1] || !match[2]) {
      throw new RestoreError('NC_RESTORE_FAILED', 'lazy checkpoint without a page server or a CRIU to fetch pages', {
        context: { checkpointId: meta.checkpointId },
      });
    }
    const channel = await StatusChannel.create(`${workPath}/daemon-status.fifo`);
    const child = criu.spawnLazyPages({
      address: match[1],
      port: Number(match[2]),
      imagesDir: imagesDir(checkpointDir),
      workDir: workPath,
      logFile: `${workPath}/lazy-pages.log`,
      statusWriteFd: channel.writeFd,
      netnsPath: this.deps.lazyPagesNetns ?? '',
    });
    channel.releaseWriter();
    const done = new Promise<void>((resolve, reject) =>
      child.once('exit', (code) =>
        code === 0
          ? resolve()
          : reject(
              new RestoreError('NC_RESTORE_FAILED', `lazy-pages daemon exited with ${String(code)}`, {
                context: { checkpointId: meta.checkpointId },
              }),
            ),
      ),
    );
    done.catch(() => undefined);
    const ready = await channel.waitByte(this.deps.daemonStartTimeoutMs ?? 30_000);
    channel.close();
    const kill = (): void => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, 'SIGKILL');
    };
    if (!ready) {
      kill();
      throw new RestoreError('NC_RESTORE_FAILED', `lazy-pages daemon could not reach ${meta.pageServer ?? ''}`, {
        context: { checkpointId: meta.checkpointId },
      });
    }
    return { done, kill };
  }
}

interface LazyDaemon {
  readonly done: Promise<void>;
  kill(): void;
}
