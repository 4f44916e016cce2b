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
import type { CheckpointMeta } from './manifest';
import { CHECKPOINT_FORMAT_VERSION, describeImages, imagesDir, writeMeta } from './manifest';

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

  async dump(request: DumpRequest): Promise<DumpResult> {
    const { taskId } = request;
    const task = this.deps.runtime.beginCheckpoint(taskId);
    const checkpointId = randomUUID();
    const dir = join(this.config.checkpointsDir, checkpointId);
    const workPath = `${dir}.work`;
    const started = this.deps.clock.now();
    let paused = false;
    try {
      // Before the freeze: a task whose files cannot move is refused while it still runs.
      const plan = await this.deps.files.plan(taskId, task.record.spec);
      await mkdir(imagesDir(dir), { recursive: true });
      await mkdir(workPath, { recursive: true });
      // A task left running would write its files while they are copied after the dump: it stays frozen (the
      // checkpoint keeps a paused container paused) until they are, so memory and files are of one instant.
      if (request.leaveRunning && plan !== undefined) {
        await this.deps.runc.pause(task.containerId);
        paused = true;
      }
      const args = this.deps.runc.checkpointArgs(
        task.containerId,
        { imagePath: imagesDir(dir), workPath, leaveRunning: request.leaveRunning },
        join(workPath, 'runc.log'),
      );
      const result = await runCommand(this.deps.runc.bin, args, { timeoutMs: this.config.dumpTimeoutMs });
      if (result.exitCode !== 0) {
        const sourceRunning = await this.recoverSource(task.containerId, task.networkNamespace);
        throw new CheckpointError(
          'NC_CHECKPOINT_FAILED',
          `dump failed: ${(await criuLogTail(join(workPath, 'dump.log'))) || tail(result.stderr)}`,
          { context: { taskId, sourceRunning, timedOut: result.timedOut } },
        );
      }
      await removeCriuNetworkLock(task.networkNamespace);
      // Nothing runs now (the processes are gone, or still frozen): the files join the checkpoint as they are.
      const fileTree =
        plan === undefined ? undefined : await this.deps.files.take(taskId, plan.roots, dir, !request.leaveRunning);
      if (paused) {
        await this.deps.runc.resume(task.containerId);
        paused = false;
      }
      const dumpMs = this.deps.clock.now() - started;
      const meta: CheckpointMeta = {
        version: CHECKPOINT_FORMAT_VERSION,
        checkpointId,
        handoverKey: request.handoverKey,
        source: task.record.identity,
        spec: task.record.spec,
        sourceNode: this.config.nodeName,
        createdAtMs: this.deps.clock.now(),
        mode: 'stop-and-copy',
        files: await describeImages(dir),
        ...(fileTree !== undefined ? { fileTree } : {}),
      };
      await writeMeta(dir, meta);
      await this.deps.runtime.endCheckpoint(taskId, !request.leaveRunning);
      await rm(workPath, { recursive: true, force: true });
      this.deps.log.info(
        { taskId, checkpointId, dumpMs, leaveRunning: request.leaveRunning, fileBytes: fileTree?.totalBytes ?? 0 },
        'task checkpointed',
      );
      return { meta, dir, dumpMs };
    } catch (err) {
      if (paused) await this.deps.runc.resume(task.containerId).catch(() => undefined);
      await this.deps.runtime.endCheckpoint(taskId, false);
      await rm(dir, { recursive: true, force: true });
      await rm(workPath, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * The task's files alone, copied while it runs (no freeze): a pre-round whose chunks the final dump's
   * files mostly share, so that the freeze sends only what changed. Undefined when there is too little to
   * be worth a round, or the task moves memory only.
   */
  async copyFiles(taskId: string, handoverKey: string): Promise<DumpResult | undefined> {
    const { record } = await this.deps.runtime.inspect(taskId);
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
