import { existsSync } from 'node:fs';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveBinary } from '../../../common/binaries';
import { TaskError } from '../errors';
import type { CommandResult } from './run-command';
import { runCommand, tail } from './run-command';
import { removeMountedDir, unmountBelow } from './mounted-dir';

export type ContainerStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface ContainerState {
  readonly status: ContainerStatus;
  /** Host pid of the container's init; 0 once it stopped. */
  readonly pid: number;
}

/** One sample of a container's cgroup counters, as `runc events --stats` reports them. */
export interface ContainerStats {
  readonly cpuTotalNs: number;
  readonly memoryUsageBytes: number;
  readonly memoryMaxUsageBytes: number;
  readonly memoryRssBytes: number;
}

export interface CheckpointArgs {
  readonly imagePath: string;
  readonly workPath: string;
  readonly leaveRunning: boolean;
  /** Post-copy: write everything but memory, then serve pages from this address until a daemon took them. */
  readonly lazy?: { readonly pageServer: string; readonly statusFd: number };
}

export interface RestoreArgs {
  readonly imagePath: string;
  readonly workPath: string;
  readonly bundle: string;
  readonly lazy: boolean;
}

/** The runc operations the sidecar needs. The real one shells out to the runc binary. */
export interface Runc {
  readonly bin: string;
  version(): Promise<string>;
  state(id: string): Promise<ContainerState | undefined>;
  kill(id: string, signal: string): Promise<void>;
  delete(id: string, force: boolean): Promise<void>;
  /** `env`: the task's process environment (`NAME=value`), as its bundle's config.json holds it. */
  exec(id: string, argv: readonly string[], timeoutMs: number, env: readonly string[]): Promise<CommandResult>;
  stats(id: string): Promise<ContainerStats>;
  pids(id: string): Promise<number[]>;
  /** Arguments of a foreground `runc run` (the task shim runs it, so the sidecar may die meanwhile). */
  runArgs(id: string, bundle: string, logFile: string, pidFile: string): string[];
  /** Arguments of a foreground `runc restore`. */
  restoreArgs(id: string, args: RestoreArgs, logFile: string, pidFile: string): string[];
  checkpointArgs(id: string, args: CheckpointArgs, logFile: string): string[];
  /** Freezes every process of the container (its freezer cgroup); a leave-running checkpoint keeps it so. */
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  /**
   * Makes every CRIU that runc starts for this container run inside `netnsPath` ('' or the sidecar's own
   * namespace: where the sidecar runs). Needed for a task in its own user namespace: CRIU refuses to dump
   * one whose network namespace it cannot enter from that user namespace ("One or more namespaces doesn't
   * belong to the target user namespace"), which a namespace made by the node's root never is, unless CRIU
   * already runs in it and so leaves it out of the image; the restore must then run there too, or the task
   * would inherit the sidecar's namespace.
   */
  setCriuNetworkNamespace(id: string, netnsPath: string): Promise<void>;
  /**
   * Removes what a runc killed before its end left of a container it never finished creating: its state
   * directory, with the rootfs a restore bound there for CRIU.
   */
  forget(id: string): Promise<void>;
}

export interface RuncCliOptions {
  readonly runcBin: string;
  readonly criuBin: string;
  /** runc's state directory; one per sidecar, so nodes sharing a machine never see each other's containers. */
  readonly root: string;
  readonly commandTimeoutMs: number;
}

export class RuncCli implements Runc {
  readonly bin: string;

  constructor(private readonly options: RuncCliOptions) {
    this.bin = options.runcBin;
  }

  private criuLauncher(id: string): string {
    return join(`${this.options.root}.criu`, id);
  }

  private global(logFile?: string, id?: string): string[] {
    const launcher = id === undefined ? undefined : this.criuLauncher(id);
    const criu = launcher !== undefined && existsSync(launcher) ? launcher : this.options.criuBin;
    const args = ['--root', this.options.root, '--criu', criu];
    if (logFile !== undefined) args.push('--log', logFile, '--log-format', 'json');
    return args;
  }

  private async run(args: readonly string[], context: { id: string; op: string }): Promise<CommandResult> {
    const result = await runCommand(this.bin, [...this.global(), ...args], {
      timeoutMs: this.options.commandTimeoutMs,
    });
    if (result.exitCode !== 0) {
      throw new TaskError('NC_RUNC_FAILED', `runc ${context.op} failed: ${tail(result.stderr) || 'no output'}`, {
        context: { taskId: context.id, op: context.op, timedOut: result.timedOut },
      });
    }
    return result;
  }

  async version(): Promise<string> {
    const result = await runCommand(this.bin, ['--version'], { timeoutMs: this.options.commandTimeoutMs });
    return /runc version (\S+)/.exec(String(result.stdout))?.[1] ?? 'unknown';
  }

  async state(id: string): Promise<ContainerState | undefined> {
    const result = await runCommand(this.bin, [...this.global(), 'state', id], {
      timeoutMs: this.options.commandTimeoutMs,
    });
    if (result.exitCode !== 0) {
      if (/does not exist|not exist/.test(String(result.stderr))) return undefined;
      throw new TaskError('NC_RUNC_FAILED', `runc state failed: ${tail(result.stderr)}`, { context: { taskId: id } });
    }
    const parsed = JSON.parse(String(result.stdout)) as { status: ContainerStatus; pid: number };
    return { status: parsed.status, pid: parsed.pid };
  }

  async kill(id: string, signal: string): Promise<void> {
    await this.run(['kill', id, signal.replace(/^SIG/, '')], { id, op: 'kill' });
  }

  async delete(id: string, force: boolean): Promise<void> {
    // A restore killed before its end leaves the rootfs it bound for CRIU mounted in the state directory.
    await unmountBelow(join(this.options.root, id));
    await this.run(['delete', ...(force ? ['--force'] : []), id], { id, op: 'delete' });
  }

  async forget(id: string): Promise<void> {
    await removeMountedDir(join(this.options.root, id));
  }

  async pause(id: string): Promise<void> {
    await this.run(['pause', id], { id, op: 'pause' });
  }

  async resume(id: string): Promise<void> {
    await this.run(['resume', id], { id, op: 'resume' });
  }

  async exec(id: string, argv: readonly string[], timeoutMs: number, env: readonly string[]): Promise<CommandResult> {
    const pid = (await this.state(id))?.pid ?? 0;
    if (pid > 0 && !(await sameNamespace(`/proc/${pid}/ns/user`, '/proc/self/ns/user'))) {
      // runc joins the user namespace first and then cannot enter a network namespace owned by the node's
      // root ("failed to setns into net namespace: Operation not permitted"); nsenter enters the others first.
      const nsenter = ['--target', String(pid), '--all', '--root', '--wdns=/', '--'];
      // nsenter passes on its own environment: the task's, not the sidecar's (runc exec takes the bundle's).
      const taskEnv = Object.fromEntries(
        env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
      return runCommand(resolveBinary('nsenter'), [...nsenter, ...argv], { timeoutMs, env: taskEnv });
    }
    return runCommand(this.bin, [...this.global(), 'exec', id, ...argv], { timeoutMs });
  }

  async stats(id: string): Promise<ContainerStats> {
    const result = await this.run(['events', '--stats', id], { id, op: 'events' });
    const data = (
      JSON.parse(String(result.stdout)) as {
        data?: {
          cpu?: { usage?: { total?: number } };
          memory?: { usage?: { usage?: number; max?: number }; raw?: Record<string, number> };
        };
      }
    ).data;
    const raw = data?.memory?.raw ?? {};
    return {
      cpuTotalNs: data?.cpu?.usage?.total ?? 0,
      memoryUsageBytes: data?.memory?.usage?.usage ?? 0,
      memoryMaxUsageBytes: data?.memory?.usage?.max ?? 0,
      // cgroup v1 reports the hierarchy's total as total_rss; v2 calls resident anonymous memory "anon".
      memoryRssBytes: raw.total_rss ?? raw.rss ?? raw.anon ?? 0,
    };
  }

  async pids(id: string): Promise<number[]> {
    const result = await this.run(['ps', '--format', 'json', id], { id, op: 'ps' });
    return (JSON.parse(String(result.stdout)) as number[] | null) ?? [];
  }

  // runc writes the pid file only once the container runs (after CRIU finished, for a restore).
  runArgs(id: string, bundle: string, logFile: string, pidFile: string): string[] {
    return [...this.global(logFile), 'run', '--bundle', bundle, '--pid-file', pidFile, id];
  }

  restoreArgs(id: string, args: RestoreArgs, logFile: string, pidFile: string): string[] {
    return [
      ...this.global(logFile, id),
      'restore',
      '--bundle',
      args.bundle,
      '--image-path',
      args.imagePath,
      '--work-path',
      args.workPath,
      '--pid-file',
      pidFile,
      ...(args.lazy ? ['--lazy-pages'] : []),
      id,
    ];
  }

  checkpointArgs(id: string, args: CheckpointArgs, logFile: string): string[] {
    const out = [
      ...this.global(logFile, id),
      'checkpoint',
      '--image-path',
      args.imagePath,
      '--work-path',
      args.workPath,
    ];
    if (args.leaveRunning) out.push('--leave-running');
    if (args.lazy) {
      out.push('--lazy-pages', '--page-server', args.lazy.pageServer, '--status-fd', String(args.lazy.statusFd));
    }
    out.push(id);
    return out;
  }

  async setCriuNetworkNamespace(id: string, netnsPath: string): Promise<void> {
    const launcher = this.criuLauncher(id);
    if (netnsPath === '' || (await sameNamespace(netnsPath, '/proc/self/ns/net'))) {
      await rm(launcher, { force: true });
      return;
    }
    await mkdir(join(launcher, '..'), { recursive: true });
    const quote = (word: string): string => `'${word.replace(/'/g, `'\\''`)}'`;
    const script = `#!/bin/sh\nexec ${quote(resolveBinary('nsenter'))} ${quote(`--net=${netnsPath}`)} -- ${quote(this.options.criuBin)} "$@"\n`;
    await writeFile(launcher, script, { mode: 0o755 });
  }
}

async function sameNamespace(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([stat(a), stat(b)]);
  return x.dev === y.dev && x.ino === y.ino;
}
