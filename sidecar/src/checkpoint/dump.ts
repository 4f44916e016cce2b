import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../../../common/clock';
import { CheckpointError } from '../errors';
import type { Runc } from '../runtime/runc';
import { runCommand, tail } from '../runtime/run-command';
import type { TaskRuntime } from '../runtime/task-runtime';
import type { TaskFiles } from './file-tree/task-files';
import { removeCriuNetworkLock } from './iptables';
import { liveDumpOf } from './live-dump';
import type { CheckpointMeta } from './manifest';
import { CHECKPOINT_FORMAT_VERSION, describeImages, imagesDir, writeMeta } from './manifest';
import type { StepsMs } from './step-times';
import { StepTimes } from './step-times';
import { removeMountedDir } from '../runtime/mounted-dir';

export interface DumperConfig {
  /** Where new checkpoints are written, one directory each. */
  readonly checkpointsDir: string;
  readonly nodeName: string;
  readonly dumpTimeoutMs: number;
}

export interface DumperDeps {
  readonly runtime: TaskRuntime;
  readonly runc: Runc;
  readonly files: TaskFiles;
  readonly clock: Clock;
  readonly log: Logger;
}

export interface DumpRequest {
  readonly taskId: string;
  /** Keep the task running after the dump (a background checkpoint). */
  readonly leaveRunning: boolean;
  readonly handoverKey: string;
}

export interface DumpResult {
  readonly meta: CheckpointMeta;
  readonly dir: string;
  /** From the dump's start to its end: what the task spent frozen in a stop-and-copy dump. */
  readonly dumpMs: number;
  /** Clock time the task stopped (its freeze began); absent = when the dump began. */
  readonly frozenAtMs?: number;
  /** Where the dump's time went, step by step. */
  readonly stepsMs?: StepsMs;
}

/** Below this, a task's files travel inside the freeze at no cost worth a separate round. */
const FILES_PREROUND_MIN_BYTES = 1024 * 1024;

/** Last error lines CRIU wrote, for messages an operator can act on. */
export async function criuLogTail(logFile: string): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  const errors = text.split('\n').filter((l) => /Error|error|fail/.test(l));
  return tail(errors.join('\n'), 4);
}

/** Stop-and-copy dumps of running tasks through `runc checkpoint`. */
export class Dumper {
  constructor(
    private readonly config: DumperConfig,
    private readonly deps: DumperDeps,
  ) {}

  /** A dump whose source-side housekeeping is done when it returns. */
  async dump(request: DumpRequest): Promise<DumpResult> {
    const { released, ...dumped } = await this.dumpReleasingLater(request);
    try {
      return { ...dumped, stepsMs: { ...dumped.stepsMs, ...(await released) } };
    } catch (err) {
      await rm(dumped.dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Returns as soon as the checkpoint is complete. For a task that stopped (`leaveRunning` false), what is
   * left to do about the source (runc's container record, CRIU's network lock, the work directory) runs
   * meanwhile, so that a hand-over ships while it does: `released` settles once it is done, with its steps'
   * times. The caller awaits `released` before it acts on the task again (a restore here reuses the
   * container's id).
   */
  async dumpReleasingLater(request: DumpRequest): Promise<DumpResult & { released: Promise<StepsMs> }> {
    const { taskId } = request;
    const task = this.deps.runtime.beginCheckpoint(taskId);
    const checkpointId = randomUUID();
    const dir = join(this.config.checkpointsDir, checkpointId);
    const workPath = `${dir}.work`;
    const started = this.deps.clock.now();
    const steps = new StepTimes(this.deps.clock);
    let paused = false;
    try {
      // Before the freeze: a task whose files cannot move is refused while it still runs.
      const plan = await steps.time('plan', () => this.deps.files.plan(taskId, task.record.spec));
      await mkdir(imagesDir(dir), { recursive: true });
      await mkdir(workPath, { recursive: true });
      const frozenAtMs = this.deps.clock.now();
      // A task left running would write its files while they are copied after the dump: it stays frozen (the
      // checkpoint keeps a paused container paused) until they are, so memory and files are of one instant.
      if (request.leaveRunning && plan !== undefined) {
        await steps.time('pause', () => this.deps.runc.pause(task.containerId));
        paused = true;
      }
      const args = this.deps.runc.checkpointArgs(
        task.containerId,
        { imagePath: imagesDir(dir), workPath, leaveRunning: request.leaveRunning },
        join(workPath, 'runc.log'),
      );
      const result = await steps.time('runcCheckpoint', () =>
        runCommand(this.deps.runc.bin, args, { timeoutMs: this.config.dumpTimeoutMs }),
      );
      if (result.exitCode !== 0) {
        const sourceRunning = await this.recoverSource(task.containerId, task.networkNamespace);
        throw new CheckpointError(
          'NC_CHECKPOINT_FAILED',
          `dump failed: ${(await criuLogTail(join(workPath, 'dump.log'))) || tail(result.stderr)}`,
          { context: { taskId, sourceRunning, timedOut: result.timedOut } },
        );
      }
      // The task goes on in its namespace: unlocked before it resumes.
      if (request.leaveRunning) await steps.time('networkUnlock', () => removeCriuNetworkLock(task.networkNamespace));
      // Nothing runs now (the processes are gone, or still frozen): the files join the checkpoint as they are.
      const [fileTree, images] = await Promise.all([
        plan === undefined
          ? undefined
          : steps.time('files', () => this.deps.files.take(taskId, plan.roots, dir, !request.leaveRunning)),
        steps.time('hashImages', () => describeImages(dir)),
      ]);
      if (paused) {
        await steps.time('resume', () => this.deps.runc.resume(task.containerId));
        paused = false;
      }
      const meta: CheckpointMeta = {
        version: CHECKPOINT_FORMAT_VERSION,
        checkpointId,
        handoverKey: request.handoverKey,
        source: task.record.identity,
        spec: task.record.spec,
        sourceNode: this.config.nodeName,
        createdAtMs: this.deps.clock.now(),
        mode: 'stop-and-copy',
        files: images,
        ...(fileTree !== undefined ? { fileTree } : {}),
      };
      await steps.time('writeMeta', () => writeMeta(dir, meta));
      let released: Promise<StepsMs> = Promise.resolve({});
      if (request.leaveRunning) {
        await this.deps.runtime.endCheckpoint(taskId, false);
        await removeMountedDir(workPath);
      } else {
        // Once the checkpoint is complete, so that a failure before it finds the task as a failed dump leaves it.
        released = this.release(taskId, task.networkNamespace, workPath);
        released.catch(() => undefined);
      }
      const dumpMs = this.deps.clock.now() - started;
      const stepsMs = steps.ms;
      this.deps.log.info(
        {
          taskId,
          checkpointId,
          dumpMs,
          stepsMs,
          leaveRunning: request.leaveRunning,
          fileBytes: fileTree?.totalBytes ?? 0,
        },
        'task checkpointed',
      );
      return { meta, dir, dumpMs, frozenAtMs, stepsMs, released };
    } catch (err) {
      if (paused) await this.deps.runc.resume(task.containerId).catch(() => undefined);
      await this.deps.runtime.endCheckpoint(taskId, false);
      await rm(dir, { recursive: true, force: true });
      await removeMountedDir(workPath);
      throw err;
    }
  }

  /** What a stopped task leaves to do on its node; on failure the task is left as a failed dump leaves it. */
  private async release(taskId: string, networkNamespace: string, workPath: string): Promise<StepsMs> {
    const steps = new StepTimes(this.deps.clock);
    try {
      await steps.time('networkUnlock', () => removeCriuNetworkLock(networkNamespace));
      await steps.time('endCheckpoint', () => this.deps.runtime.endCheckpoint(taskId, true));
      await steps.time('cleanUp', () => removeMountedDir(workPath));
    } catch (err) {
      await this.deps.runtime.endCheckpoint(taskId, false).catch(() => undefined);
      await removeMountedDir(workPath);
      throw err;
    }
    return steps.ms;
  }

  /**
   * The task's files alone, copied while it runs (no freeze): a pre-round whose chunks the final dump's
   * files mostly share, so that the freeze sends only what changed. Undefined when there is too little to
   * be worth a round, or the task moves memory only.
   */
  async copyFiles(taskId: string, handoverKey: string): Promise<DumpResult | undefined> {
    // The record alone (not `inspect`, which asks runc for the pid): this runs while the task is out of rotation.
    const record =
      this.deps.runtime.list().find((r) => r.identity.taskId === taskId) ??
      (await this.deps.runtime.inspect(taskId)).record;
    const plan = await this.deps.files.plan(taskId, record.spec);
    if (plan === undefined || plan.totalBytes < FILES_PREROUND_MIN_BYTES) return undefined;
    const checkpointId = randomUUID();
    const dir = join(this.config.checkpointsDir, checkpointId);
    const started = this.deps.clock.now();
    try {
      await mkdir(imagesDir(dir), { recursive: true });
      const fileTree = await this.deps.files.take(taskId, plan.roots, dir, false);
      const meta: CheckpointMeta = {
        version: CHECKPOINT_FORMAT_VERSION,
        checkpointId,
        handoverKey,
        source: record.identity,
        spec: record.spec,
        sourceNode: this.config.nodeName,
        createdAtMs: this.deps.clock.now(),
        mode: 'files',
        files: [],
        fileTree,
      };
      await writeMeta(dir, meta);
      return { meta, dir, dumpMs: this.deps.clock.now() - started };
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * After a failed dump CRIU lets the task go on, but the freezer cgroup or the network lock may be left
   * behind: thaw and unlock, then report whether the task runs.
   */
  /**
   * After a restart: thaws every task a dump of the previous sidecar left frozen (paused, CRIU's network lock
   * in place) when it died, a pre-stage's or a background checkpoint's, which must not leave the task stopped.
   */
  async recoverInterrupted(): Promise<void> {
    for (const task of this.deps.runtime.pausedAtAdoption()) {
      const log = this.deps.log.child({ taskId: task.taskId });
      const dump = await liveDumpOf(task.containerId);
      if (dump?.lazy === true) {
        // A post-copy dump outlived its sidecar: a copy elsewhere may run on its pages. Held as the lazy dump
        // holds on a broken stream: frozen until the copy is gone and the task is told to resume.
        try {
          process.kill(-dump.processGroup, 'SIGKILL');
        } catch {
          // Ended meanwhile.
        }
        await this.deps.runtime.hold(task.taskId);
        continue;
      }
      if (dump !== undefined) {
        // A dump that leaves the task running still runs: it thaws the task itself when it ends.
        log.warn('task frozen by a dump that outlived its sidecar; the dump resumes it');
        continue;
      }
      const running = await this.recoverSource(task.containerId, task.networkNamespace);
      if (running) log.warn('task left frozen by an interrupted dump resumed');
      else log.error('task left frozen by an interrupted dump did not run again');
    }
  }

  async recoverSource(containerId: string, networkNamespace: string): Promise<boolean> {
    await removeCriuNetworkLock(networkNamespace).catch((err: unknown) => {
      this.deps.log.error({ err, networkNamespace }, 'could not remove the CRIU network lock');
    });
    const state = await this.deps.runc.state(containerId).catch(() => undefined);
    if (state?.status === 'paused') await this.deps.runc.resume(containerId).catch(() => undefined);
    const after = await this.deps.runc.state(containerId).catch(() => undefined);
    return after?.status === 'running';
  }
}
