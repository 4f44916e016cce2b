import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../../../common/clock';
import { CheckpointError } from '../errors';
import type { Runc } from '../runtime/runc';
import { runCommand, tail } from '../runtime/run-command';
import type { TaskRuntime } from '../runtime/task-runtime';
import type { Dumper } from './dump';
import { criuLogTail } from './dump';
import type { TaskFiles } from './file-tree/task-files';
import { removeCriuNetworkLock } from './iptables';
import type { CheckpointMeta } from './manifest';
import { CHECKPOINT_FORMAT_VERSION, describeImages, imagesDir, writeMeta } from './manifest';
import { StatusChannel } from './status-fd';
import { removeMountedDir } from '../runtime/mounted-dir';

export interface LazyDumpConfig {
  readonly checkpointsDir: string;
  readonly nodeName: string;
  /** Address the target's lazy-pages daemon reaches this node's page server at (runc listens on 0.0.0.0). */
  readonly pageServerHost: string;
  readonly dumpTimeoutMs: number;
  /** How long the frozen source waits for a daemon to connect before it resumes. */
  readonly connectTimeoutMs: number;
  /** How long the page transfer may take once a daemon connected. */
  readonly transferTimeoutMs: number;
}

export interface LazyDumpDeps {
  readonly runtime: TaskRuntime;
  readonly runc: Runc;
  readonly dumper: Dumper;
  readonly files: TaskFiles;
  readonly clock: Clock;
  readonly log: Logger;
}

/** A lazy dump under way: images without memory are on disk; the frozen source serves its pages. */
export interface LazyDump {
  readonly meta: CheckpointMeta;
  readonly dir: string;
  /** From the freeze to the status byte (the images are complete). */
  readonly dumpMs: number;
  /**
   * Waits for a daemon to connect (bounded), then for every page to leave. Resolves when the source is gone;
   * rejects with NC_LAZY_PAGES_TIMEOUT (source resumed) or NC_LAZY_PAGES_FAILED (source held: see held-source.ts).
   */
  finish(): Promise<void>;
  /** Gives up before any daemon connected: the source resumes. */
  abort(): Promise<boolean>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '0.0.0.0', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

async function connectedTo(port: number): Promise<boolean> {
  const result = await runCommand('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], {
    timeoutMs: 10_000,
  });
  return String(result.stdout).trim() !== '';
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/**
 * Post-copy dumps (`runc checkpoint --lazy-pages`). The order that keeps one instance alive: this dump's
 * status byte, then the target daemon's, then the target's restore; the migration is done only when the
 * daemon and this dump have both exited. The dump runs in the sidecar's own network namespace: run inside
 * the task's, CRIU would no longer see the task's namespace as separate and a restore would bind its
 * sockets in the wrong one.
 */
export class LazyDumper {
  constructor(
    private readonly config: LazyDumpConfig,
    private readonly deps: LazyDumpDeps,
  ) {}

  async start(taskId: string, handoverKey: string): Promise<LazyDump> {
    const task = this.deps.runtime.beginCheckpoint(taskId);
    const checkpointId = randomUUID();
    const dir = join(this.config.checkpointsDir, checkpointId);
    const workPath = `${dir}.work`;
    const log = this.deps.log.child({ taskId, checkpointId });
    let child: ChildProcess | undefined;
    let channel: StatusChannel | undefined;
    const cleanupFiles = async (): Promise<void> => {
      channel?.close();
      await removeMountedDir(workPath);
    };
    const resumeSource = async (): Promise<boolean> => {
      if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        // runc and its criu share the process group: both go, and the frozen task is released.
        process.kill(-child.pid, 'SIGKILL');
        await exited(child);
      }
      const running = await this.deps.dumper.recoverSource(task.containerId, task.networkNamespace);
      await this.deps.runtime.endCheckpoint(taskId, false);
      return running;
    };
    const holdSource = async (): Promise<void> => {
      if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        process.kill(-child.pid, 'SIGKILL');
        await exited(child);
      }
      await this.deps.runtime.hold(taskId);
    };
    try {
      const plan = await this.deps.files.plan(taskId, task.record.spec);
      await mkdir(imagesDir(dir), { recursive: true });
      await mkdir(workPath, { recursive: true });
      const port = await freePort();
      const pageServer = `${this.config.pageServerHost}:${port}`;
      channel = await StatusChannel.create(join(workPath, 'status.fifo'));
      const started = this.deps.clock.now();
      child = spawn(
        this.deps.runc.bin,
        this.deps.runc.checkpointArgs(
          task.containerId,
          { imagePath: imagesDir(dir), workPath, leaveRunning: false, lazy: { pageServer, statusFd: 3 } },
          join(workPath, 'runc.log'),
        ),
        { stdio: ['ignore', 'ignore', 'pipe', channel.writeFd], detached: true },
      );
      channel.releaseWriter();
      const stderr: Buffer[] = [];
      child.stderr?.on('data', (c: Buffer) => stderr.push(c));
      if (!(await channel.waitByte(this.config.dumpTimeoutMs))) {
        const why = (await criuLogTail(join(workPath, 'dump.log'))) || tail(Buffer.concat(stderr));
        const sourceRunning = await resumeSource();
        throw new CheckpointError('NC_CHECKPOINT_FAILED', `lazy dump failed: ${why || 'no status from runc'}`, {
          context: { taskId, sourceRunning },
        });
      }
      // The task stays frozen while it serves its pages: its files now are those of the instant of the dump.
      const fileTree = plan === undefined ? undefined : await this.deps.files.take(taskId, plan.roots, dir, true);
      const dumpMs = this.deps.clock.now() - started;
      const meta: CheckpointMeta = {
        version: CHECKPOINT_FORMAT_VERSION,
        checkpointId,
        handoverKey,
        source: task.record.identity,
        spec: task.record.spec,
        sourceNode: this.config.nodeName,
        createdAtMs: this.deps.clock.now(),
        mode: 'lazy',
        pageServer,
        files: await describeImages(dir),
        ...(fileTree !== undefined ? { fileTree } : {}),
      };
      await writeMeta(dir, meta);
      log.info({ pageServer, dumpMs }, 'lazy dump serving pages');
      const dumpChild = child;
      let settled = false;
      return {
        meta,
        dir,
        dumpMs,
        abort: async () => {
          if (settled) return false;
          settled = true;
          const running = await resumeSource();
          await cleanupFiles();
          log.warn({ sourceRunning: running }, 'lazy dump aborted; source resumed');
          return running;
        },
        finish: async () => {
          settled = true;
          const connectDeadline = this.deps.clock.now() + this.config.connectTimeoutMs;
          let connected = false;
          while (!connected && dumpChild.exitCode === null && this.deps.clock.now() < connectDeadline) {
            connected = await connectedTo(port);
            if (!connected) await this.deps.clock.sleep(50);
          }
          if (!connected && dumpChild.exitCode === null) {
            const sourceRunning = await resumeSource();
            await cleanupFiles();
            throw new CheckpointError(
              'NC_LAZY_PAGES_TIMEOUT',
              'no lazy-pages daemon connected in time; source resumed',
              {
                context: { taskId, checkpointId, timeoutMs: this.config.connectTimeoutMs, sourceRunning },
              },
            );
          }
          const timer = new AbortController();
          const code = await Promise.race([
            exited(dumpChild),
            this.deps.clock.sleep(this.config.transferTimeoutMs, timer.signal).then(
              () => 'timeout' as const,
              () => 'timeout' as const,
            ),
          ]).finally(() => timer.abort());
          if (code !== 0) {
            const why = (await criuLogTail(join(workPath, 'dump.log'))) || tail(Buffer.concat(stderr));
            // The danger window: the copy restored on the target may run, lacking pages only this node has. The
            // source stays frozen until the target's copy is gone and it is told to resume (held-source.ts).
            await holdSource();
            await cleanupFiles();
            throw new CheckpointError('NC_LAZY_PAGES_FAILED', `lazy page transfer failed: ${why || String(code)}`, {
              context: { taskId, checkpointId, sourceRunning: false, sourceHeld: true },
            });
          }
          await removeCriuNetworkLock(task.networkNamespace);
          await this.deps.runtime.endCheckpoint(taskId, true);
          await cleanupFiles();
          log.info({}, 'lazy dump finished; every page left');
        },
      };
    } catch (err) {
      // Failing after the status byte (taking the files), before any page left: resume the frozen source.
      if (child !== undefined && child.exitCode === null && child.signalCode === null) await resumeSource();
      else if (child === undefined || child.exitCode !== null) await this.deps.runtime.endCheckpoint(taskId, false);
      await cleanupFiles();
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }
}
