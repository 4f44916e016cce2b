import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../../../common/clock';
import type { TaskIdentity, TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { TaskError } from '../errors';
import type { ContainerStats, Runc } from './runc';
import { tail } from './run-command';
import { writeBundle } from './bundle';
import { launchShim, removeShimCgroup } from './shim';
import type { TaskExit, TaskPhase, TaskRecord } from './task-state';
import { TASK_STATE_VERSION, listTaskDirs, loadRecord, saveRecord } from './task-state';
import type { CriuTls } from '../checkpoint/criu';
import { ownDirsByTask } from './task-dirs';
import type { TaskUser } from './task-user';
import { ROOT_USER, readAccountFiles, resolveTaskUser } from './task-user';
import type { IdMapping } from './user-namespace';

export interface TaskRuntimeConfig {
  readonly nodeName: string;
  /** Holds one directory per task: state, bundle, logs, exit status. */
  readonly tasksDir: string;
  /** Network namespace a task joins when its spec names none; '' = the sidecar's own. */
  readonly taskNetworkNamespace: string;
  /** Prefix of every task's cgroup path, so two sidecars on one machine never share a cgroup. */
  readonly cgroupParent: string;
  readonly startTimeoutMs: number;
  readonly exitPollMs: number;
  /** The node's transfer TLS material: lazy dumps then serve their pages over CRIU's TLS. */
  readonly criuTls?: CriuTls;
  /**
   * Each task's user namespace (the same on every node, see IdMapping); undefined runs tasks in the node's
   * own, where a task of another uid cannot be dumped without CAP_SYS_RESOURCE.
   */
  readonly idMapping?: IdMapping;
}

export interface TaskRuntimeDeps {
  readonly runc: Runc;
  readonly clock: Clock;
  readonly log: Logger;
}

/** One task as the runtime sees it. */
export interface TaskView {
  readonly record: TaskRecord;
  readonly pid: number;
  readonly dir: string;
  /** A dump of the task is under way (inspect says so; other views leave it out). */
  readonly checkpointing?: boolean;
}

export interface TaskStats extends ContainerStats {
  readonly timestampMs: number;
  readonly cpuPercent: number;
  readonly pids: number[];
}

/** What a restore launch needs beyond a cold start. */
export interface ImageLaunch {
  readonly imagePath: string;
  readonly workPath: string;
  readonly lazy: boolean;
  readonly checkpointId: string;
  /** Ends the wait for the restore early, as a timeout does: it cannot finish (its lazy-pages daemon died). */
  readonly abandon?: AbortSignal;
}

interface Handle {
  record: TaskRecord;
  readonly dir: string;
  /** While a checkpoint runs, the shim's exit is the dump's doing, not the task's. */
  checkpointing: boolean;
  lastCpu?: { atMs: number; totalNs: number };
  readonly waiters: ((exit: TaskExit) => void)[];
}

const EXIT_FILE = 'exit';
const RUNC_LOG = 'runc.log';
const PID_FILE = 'pid';

/** A container id runc accepts, unique per task id (Nomad ids carry '/', which runc refuses). */
export function containerIdFor(taskId: string): string {
  const safe = taskId.replace(/[^\w.+-]/g, '_').slice(0, 48);
  return `${safe}-${createHash('sha256').update(taskId).digest('hex').slice(0, 10)}`;
}

function exitFromStatus(status: number): TaskExit {
  // runc reports a container killed by a signal as 128 + the signal, like a shell.
  const signal = status > 128 && status < 128 + 65 ? status - 128 : 0;
  return { exitCode: status, signal, oomKilled: false };
}

/** The shim's own cgroup, beside its task's (runc's `${cgroupParent}/${containerId}`). */
function shimCgroup(cgroupParent: string, containerId: string): string {
  return `${cgroupParent}/${containerId}.shim`;
}

/**
 * The sidecar's tasks: OCI containers run by runc through a detached per-task shim. State is persisted per
 * task, so a restarted sidecar adopts containers that kept running without it.
 */
export class TaskRuntime {
  private readonly tasks = new Map<string, Handle>();
  /** Running tasks found frozen at adoption: a dump of the sidecar before this one died with them paused. */
  private readonly foundPaused: { taskId: string; containerId: string; networkNamespace: string }[] = [];
  private poller: NodeJS.Timeout | undefined;
  private polling = false;

  private constructor(
    private readonly config: TaskRuntimeConfig,
    private readonly deps: TaskRuntimeDeps,
  ) {}

  /** Loads persisted tasks and adopts those still running, then starts watching for exits. */
  static async create(config: TaskRuntimeConfig, deps: TaskRuntimeDeps): Promise<TaskRuntime> {
    const runtime = new TaskRuntime(config, deps);
    await runtime.adopt();
    runtime.poller = setInterval(() => void runtime.pollExits(), config.exitPollMs);
    return runtime;
  }

  /** Stops watching; the tasks themselves keep running (a sidecar restart must not touch them). */
  close(): void {
    if (this.poller) clearInterval(this.poller);
    this.poller = undefined;
  }

  private async adopt(): Promise<void> {
    for (const dir of await listTaskDirs(this.config.tasksDir)) {
      let record: TaskRecord;
      try {
        record = await loadRecord(dir);
      } catch (err) {
        this.deps.log.error({ err, dir }, 'task state unreadable; task not adopted');
        continue;
      }
      const handle: Handle = { record, dir, checkpointing: false, waiters: [] };
      this.tasks.set(record.taskId, handle);
      if (record.phase !== 'running') continue;
      const state = await this.deps.runc.state(record.containerId);
      if (state?.status === 'running' || state?.status === 'paused') {
        this.deps.log.info({ taskId: record.taskId, pid: state.pid, status: state.status }, 'task adopted');
        if (state.status === 'paused') {
          this.foundPaused.push({
            taskId: record.taskId,
            containerId: record.containerId,
            networkNamespace: record.spec.networkNamespace || this.config.taskNetworkNamespace,
          });
        }
      } else if (!(await this.collectExit(handle))) {
        // Neither running nor an exit status: the machine rebooted or someone removed the container.
        this.deps.log.warn({ taskId: record.taskId }, 'task vanished while the sidecar was down');
        await this.finish(handle, { exitCode: 255, signal: 0, oomKilled: false });
      }
    }
  }

  private taskDir(containerId: string): string {
    return join(this.config.tasksDir, containerId);
  }

  private handle(taskId: string): Handle {
    const handle = this.tasks.get(taskId);
    if (!handle) throw new TaskError('NC_TASK_NOT_FOUND', 'no such task', { context: { taskId } });
    return handle;
  }

  private running(taskId: string): Handle {
    const handle = this.handle(taskId);
    if (handle.record.phase !== 'running') {
      throw new TaskError('NC_TASK_NOT_RUNNING', `task is ${handle.record.phase}`, { context: { taskId } });
    }
    return handle;
  }

  /** Starts a task cold. */
  async start(identity: TaskIdentity, spec: TaskSpec): Promise<TaskView> {
    return this.launch(identity, spec, undefined);
  }

  /**
   * The spec with the directories the task will get (defaults under its task directory), created: what a
   * restore fills with the checkpoint's files before the processes come back.
   */
  async prepareDirs(identity: TaskIdentity, spec: TaskSpec): Promise<TaskSpec> {
    return withDefaultDirs(spec, this.taskDir(containerIdFor(identity.taskId)));
  }

  /** Starts a task from checkpoint images (restore); the caller has verified them. */
  async startFromImages(identity: TaskIdentity, spec: TaskSpec, image: ImageLaunch): Promise<TaskView> {
    return this.launch(identity, spec, image);
  }

  private async launch(identity: TaskIdentity, requested: TaskSpec, image: ImageLaunch | undefined): Promise<TaskView> {
    validateSpec(identity.taskId, requested);
    const existing = this.tasks.get(identity.taskId);
    if (existing && existing.record.phase === 'running') {
      throw new TaskError('NC_TASK_EXISTS', 'a task with this id is running', { context: { taskId: identity.taskId } });
    }
    const containerId = containerIdFor(identity.taskId);
    const dir = this.taskDir(containerId);
    if (existing) await this.removeLeftovers(containerId, dir);
    const spec = await withDefaultDirs(requested, dir);
    const user = await this.taskUser(identity.taskId, spec);
    const { idMapping } = this.config;
    if (idMapping !== undefined) {
      await ownDirsByTask([spec.allocDir, spec.localDir, spec.secretsDir], idMapping, user);
    }
    const netns = spec.networkNamespace || this.config.taskNetworkNamespace;
    await this.deps.runc.setCriuNetworkNamespace(containerId, idMapping === undefined ? '' : netns);
    const bundle = await writeBundle(join(dir, 'bundle'), {
      spec,
      cgroupsPath: `${this.config.cgroupParent}/${containerId}`,
      defaultNetworkNamespace: this.config.taskNetworkNamespace,
      criuConfigFile: join(dir, 'criu.conf'),
      ...(this.config.criuTls !== undefined ? { criuTls: this.config.criuTls } : {}),
      ...(idMapping !== undefined ? { idMapping } : {}),
      user,
      hostname: identity.taskName === '' ? 'task' : identity.taskName.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63),
    });
    const logFile = join(dir, image ? 'runc-restore.log' : RUNC_LOG);
    const pidFile = join(dir, PID_FILE);
    const command = image
      ? this.deps.runc.restoreArgs(containerId, { bundle, ...image }, logFile, pidFile)
      : this.deps.runc.runArgs(containerId, bundle, logFile, pidFile);
    const shimPid = await launchShim({
      cgroup: shimCgroup(this.config.cgroupParent, containerId),
      exitFile: join(dir, EXIT_FILE),
      stdoutPath: spec.stdoutPath === '' ? join(dir, 'stdout.log') : spec.stdoutPath,
      stderrPath: spec.stderrPath === '' ? join(dir, 'stderr.log') : spec.stderrPath,
      command: [this.deps.runc.bin, ...command],
    });
    const record: TaskRecord = {
      version: TASK_STATE_VERSION,
      taskId: identity.taskId,
      containerId,
      identity,
      spec,
      phase: 'running',
      startedAtMs: this.deps.clock.now(),
      completedAtMs: 0,
      restoredFromCheckpoint: image?.checkpointId ?? '',
      shimPid,
    };
    const handle: Handle = { record, dir, checkpointing: false, waiters: [] };
    // Saved before the container runs, so a sidecar dying right now still finds the task when it returns.
    await saveRecord(dir, record);
    let pid: number;
    try {
      pid = await this.awaitRunning(handle, logFile, image?.abandon);
    } catch (err) {
      if (existing) await saveRecord(dir, existing.record);
      else {
        await this.removeFailedStart(identity.taskId, dir);
        // The shim was killed with its process group or gave up: its cgroup would outlive the task otherwise.
        await this.removeShimCgroup(handle);
      }
      throw err;
    }
    this.tasks.set(identity.taskId, handle);
    this.deps.log.info({ taskId: identity.taskId, pid, restored: image !== undefined }, 'task started');
    return { record, pid, dir };
  }

  /**
   * The directory of a task that never ran. Its shim may still be writing the exit status into it as it gives
   * up (a removal then meets ENOTEMPTY), so the removal is tried again for a while; one left behind is logged,
   * never allowed to hide the start's own error from the caller.
   */
  private async removeFailedStart(taskId: string, dir: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await rm(dir, { recursive: true, force: true });
        return;
      } catch (err) {
        if (attempt >= 50) {
          this.deps.log.warn({ err, taskId, dir }, 'directory of a failed start left in place');
          return;
        }
        await this.deps.clock.sleep(20);
      }
    }
  }

  /** The shim exits just after it wrote the exit status; its cgroup is removed once it is empty. */
  private async removeShimCgroup(handle: Handle): Promise<void> {
    const cgroup = shimCgroup(this.config.cgroupParent, handle.record.containerId);
    for (let attempt = 0; attempt < 50; attempt++) {
      if (await removeShimCgroup(cgroup)) return;
      await this.deps.clock.sleep(20);
    }
    this.deps.log.warn({ taskId: handle.record.taskId, cgroup }, 'shim cgroup still busy; left in place');
  }

  /** The spec's `user`, looked up in the task's own root (the host's for a host root). */
  private async taskUser(taskId: string, spec: TaskSpec): Promise<TaskUser> {
    if (spec.user === '') return ROOT_USER;
    const files = await readAccountFiles(spec.rootfs === '' ? '/' : spec.rootfs);
    const maxId = this.config.idMapping?.size ?? 2 ** 32 - 1;
    return resolveTaskUser(spec.user, files, maxId, taskId);
  }

  /** Clears what a previous run of the same task left; its data directories stay (a rollback needs them). */
  private async removeLeftovers(containerId: string, dir: string): Promise<void> {
    if ((await this.deps.runc.state(containerId)) !== undefined) await this.deps.runc.delete(containerId, true);
    else await this.deps.runc.forget(containerId);
    for (const name of ['bundle', PID_FILE, EXIT_FILE]) await rm(join(dir, name), { recursive: true, force: true });
    await removeShimCgroup(shimCgroup(this.config.cgroupParent, containerId));
  }

  /** Waits until runc wrote the pid file (the container runs, a restore has finished), or the shim gave up. */
  private async awaitRunning(handle: Handle, logFile: string, abandon?: AbortSignal): Promise<number> {
    const { containerId, taskId } = handle.record;
    const deadline = this.deps.clock.now() + this.config.startTimeoutMs;
    for (;;) {
      const pid = await readNumber(join(handle.dir, PID_FILE));
      if (pid !== undefined && pid > 0) return pid;
      const exitStatus = await readExitStatus(handle.dir);
      if (exitStatus !== undefined) {
        const runcError = await runcErrorFrom(logFile);
        if (runcError === undefined && (await readNumber(join(handle.dir, PID_FILE))) !== undefined) return 0;
        if ((await this.deps.runc.state(containerId)) !== undefined) {
          await this.deps.runc.delete(containerId, true).catch(() => undefined);
        }
        throw new TaskError(
          'NC_TASK_START_FAILED',
          `runc could not start the task: ${runcError ?? 'no error logged'}`,
          {
            context: { taskId, exitStatus },
          },
        );
      }
      if (this.deps.clock.now() > deadline || abandon?.aborted === true) {
        await this.deps.runc.kill(containerId, 'KILL').catch(() => undefined);
        // A restore still waiting (its post-copy pages never came) must not finish later, untracked: its runc
        // and CRIU go with the shim's process group, and what they left mounted with them.
        killProcessGroup(handle.record.shimPid);
        if ((await this.deps.runc.state(containerId)) !== undefined)
          await this.deps.runc.delete(containerId, true).catch(() => undefined);
        else await this.deps.runc.forget(containerId).catch(() => undefined);
        if (abandon?.aborted === true) {
          throw new TaskError('NC_TASK_START_FAILED', 'the restore was abandoned before the task ran', {
            cause: abandon.reason,
            context: { taskId },
          });
        }
        throw new TaskError('NC_TASK_START_FAILED', 'the task did not reach running in time', {
          context: { taskId, timeoutMs: this.config.startTimeoutMs },
        });
      }
      await this.deps.clock.sleep(20);
    }
  }

  private async pollExits(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (const handle of this.tasks.values()) {
        if (handle.record.phase === 'running' && !handle.checkpointing) await this.collectExit(handle);
      }
    } catch (err) {
      this.deps.log.warn({ err }, 'exit poll failed');
    } finally {
      this.polling = false;
    }
  }

  /** Records the task's exit if its shim left one; true when it did. */
  private async collectExit(handle: Handle): Promise<boolean> {
    const status = await readExitStatus(handle.dir);
    if (status === undefined) return false;
    // A checkpoint may have begun while the status was being read.
    if (handle.checkpointing || handle.record.phase !== 'running') return false;
    await this.finish(handle, exitFromStatus(status));
    return true;
  }

  private async finish(handle: Handle, exit: TaskExit, phase: TaskPhase = 'exited'): Promise<void> {
    const { containerId, taskId } = handle.record;
    if ((await this.deps.runc.state(containerId)) !== undefined) {
      await this.deps.runc.delete(containerId, true).catch((err: unknown) => {
        this.deps.log.warn({ err, taskId }, 'runc delete failed');
      });
    }
    handle.record = { ...handle.record, phase, exit, completedAtMs: this.deps.clock.now() };
    await saveRecord(handle.dir, handle.record);
    await this.removeShimCgroup(handle);
    this.deps.log.info({ taskId, exitCode: exit.exitCode, phase }, 'task ended');
    for (const waiter of handle.waiters.splice(0)) waiter(exit);
  }

  async inspect(taskId: string): Promise<TaskView> {
    const handle = this.handle(taskId);
    let pid = 0;
    if (handle.record.phase === 'running') pid = (await this.deps.runc.state(handle.record.containerId))?.pid ?? 0;
    return { record: handle.record, pid, dir: handle.dir, checkpointing: handle.checkpointing };
  }

  list(): TaskRecord[] {
    return [...this.tasks.values()].map((h) => h.record);
  }

  /** Resolves with the exit once the task ended (at once if it already has). */
  wait(taskId: string): Promise<TaskExit> {
    const handle = this.handle(taskId);
    if (handle.record.phase !== 'running') {
      return Promise.resolve(handle.record.exit ?? { exitCode: 0, signal: 0, oomKilled: false });
    }
    return new Promise((resolve) => handle.waiters.push(resolve));
  }

  async signal(taskId: string, signal: string): Promise<void> {
    const handle = this.running(taskId);
    await this.deps.runc.kill(handle.record.containerId, signal);
  }

  /** Sends `signal`, waits up to `timeoutMs` for the task to end, then kills it. */
  async stop(taskId: string, signal: string, timeoutMs: number): Promise<TaskRecord> {
    const handle = this.handle(taskId);
    if (handle.record.phase !== 'running') return handle.record;
    const exited = this.wait(taskId);
    await this.deps.runc.kill(handle.record.containerId, signal).catch((err: unknown) => {
      this.deps.log.warn({ err, taskId }, 'stop signal failed');
    });
    const gone = await raceTimeout(exited, timeoutMs, this.deps.clock);
    if (!gone) {
      this.deps.log.warn({ taskId, timeoutMs }, 'task ignored its stop signal; killing it');
      await this.deps.runc.kill(handle.record.containerId, 'KILL').catch(() => undefined);
      await exited;
    }
    return handle.record;
  }

  /** Forgets a task and removes its directory; a running task needs `force` (it is killed first). */
  async destroy(taskId: string, force: boolean): Promise<TaskRecord> {
    const handle = this.handle(taskId);
    if (handle.record.phase === 'running') {
      if (!force)
        throw new TaskError('NC_TASK_NOT_RUNNING', 'task is still running; stop it or force', { context: { taskId } });
      await this.stop(taskId, 'KILL', 10_000);
    }
    await this.removeLeftovers(handle.record.containerId, handle.dir);
    await rm(handle.dir, { recursive: true, force: true });
    this.tasks.delete(taskId);
    return handle.record;
  }

  async exec(
    taskId: string,
    argv: readonly string[],
    timeoutMs: number,
  ): Promise<{ stdout: Buffer; stderr: Buffer; exitCode: number }> {
    const handle = this.running(taskId);
    if (argv.length === 0) throw new TaskError('NC_TASK_SPEC_INVALID', 'exec needs a command', { context: { taskId } });
    const bundle = JSON.parse(await readFile(join(handle.dir, 'bundle', 'config.json'), 'utf8')) as {
      process: { env: string[] };
    };
    const result = await this.deps.runc.exec(handle.record.containerId, argv, timeoutMs, bundle.process.env);
    if (result.timedOut || result.exitCode === null) {
      throw new TaskError('NC_TASK_EXEC_FAILED', 'exec did not finish in time', { context: { taskId, timeoutMs } });
    }
    return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode };
  }

  async stats(taskId: string): Promise<TaskStats> {
    const handle = this.running(taskId);
    const { containerId } = handle.record;
    const [sample, pids] = await Promise.all([this.deps.runc.stats(containerId), this.deps.runc.pids(containerId)]);
    const now = this.deps.clock.now();
    const last = handle.lastCpu;
    const cpuPercent =
      last && now > last.atMs ? ((sample.cpuTotalNs - last.totalNs) / 1e6 / (now - last.atMs)) * 100 : 0;
    handle.lastCpu = { atMs: now, totalNs: sample.cpuTotalNs };
    return { ...sample, timestampMs: now, cpuPercent: Math.max(0, cpuPercent), pids };
  }

  /** The container a checkpoint must dump; exit watching pauses until `endCheckpoint`. */
  beginCheckpoint(taskId: string): TaskView & { containerId: string; networkNamespace: string } {
    const handle = this.running(taskId);
    if (handle.checkpointing) {
      throw new TaskError('NC_TASK_NOT_RUNNING', 'a checkpoint of this task is already under way', {
        context: { taskId },
      });
    }
    handle.checkpointing = true;
    const netns = handle.record.spec.networkNamespace || this.config.taskNetworkNamespace;
    return {
      record: handle.record,
      pid: 0,
      dir: handle.dir,
      containerId: handle.record.containerId,
      networkNamespace: netns,
    };
  }

  /** Ends a checkpoint: `migrated` when the task now lives elsewhere, otherwise it keeps running here. */
  async endCheckpoint(taskId: string, migrated: boolean): Promise<void> {
    const handle = this.handle(taskId);
    // The exit poller skips a checkpointing task: only once the dump's exit is accounted for may it look again,
    // or it records the dumped task as `exited` instead of `migrated`.
    if (migrated) {
      await rm(join(handle.dir, EXIT_FILE), { force: true });
      await this.finish(handle, { exitCode: 0, signal: 0, oomKilled: false }, 'migrated');
    }
    handle.checkpointing = false;
  }

  /**
   * Ends a checkpoint with the task kept frozen (paused if the dump's end let it run): a post-copy window failed
   * and the copy on the target may still run. Persisted, so a restarted sidecar keeps it frozen too.
   */
  async hold(taskId: string): Promise<void> {
    const handle = this.handle(taskId);
    const state = await this.deps.runc.state(handle.record.containerId);
    if (state?.status === 'running') await this.deps.runc.pause(handle.record.containerId);
    handle.record = { ...handle.record, phase: 'held' };
    await saveRecord(handle.dir, handle.record);
    handle.checkpointing = false;
    this.deps.log.warn({ taskId }, 'task held frozen until told to resume');
  }

  /**
   * Adopted tasks whose container was paused: no checkpoint of this sidecar is under way yet, so each is one a
   * dump left frozen when the sidecar before this one died (a held task is not among them: it is not running).
   */
  pausedAtAdoption(): readonly { taskId: string; containerId: string; networkNamespace: string }[] {
    return this.foundPaused;
  }

  /** A held task's container, to resume; undefined when the task already runs (a resume that was repeated). */
  held(taskId: string): { containerId: string; networkNamespace: string } | undefined {
    const handle = this.handle(taskId);
    if (handle.record.phase === 'running') return undefined;
    if (handle.record.phase !== 'held') {
      throw new TaskError('NC_TASK_NOT_HELD', `task is ${handle.record.phase}, not held`, { context: { taskId } });
    }
    return {
      containerId: handle.record.containerId,
      networkNamespace: handle.record.spec.networkNamespace || this.config.taskNetworkNamespace,
    };
  }

  /** The held task runs again (its container was resumed): exits are watched from now on. */
  async released(taskId: string): Promise<void> {
    const handle = this.handle(taskId);
    handle.record = { ...handle.record, phase: 'running' };
    await saveRecord(handle.dir, handle.record);
    this.deps.log.info({ taskId }, 'held task resumed');
  }

  get nodeName(): string {
    return this.config.nodeName;
  }
}

function killProcessGroup(leader: number): void {
  try {
    process.kill(-leader, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

/**
 * Every task gets all three fixed directories, given or not: a restore needs the same set of bind mounts
 * as the dump, and the node that restores may be given directories the original was not.
 */
async function withDefaultDirs(spec: TaskSpec, dir: string): Promise<TaskSpec> {
  const filled = {
    ...spec,
    allocDir: spec.allocDir || join(dir, 'alloc'),
    localDir: spec.localDir || join(dir, 'local'),
    secretsDir: spec.secretsDir || join(dir, 'secrets'),
  };
  for (const path of [filled.allocDir, filled.localDir, filled.secretsDir]) await mkdir(path, { recursive: true });
  return filled;
}

async function readNumber(path: string): Promise<number | undefined> {
  try {
    const value = Number.parseInt((await readFile(path, 'utf8')).trim(), 10);
    return Number.isNaN(value) ? undefined : value;
  } catch {
    return undefined;
  }
}

function readExitStatus(dir: string): Promise<number | undefined> {
  return readNumber(join(dir, EXIT_FILE));
}

/** runc's own error (its --log, JSON lines), or undefined if it logged none. */
async function runcErrorFrom(logFile: string): Promise<string | undefined> {
  const exists = await stat(logFile).then(
    () => true,
    () => false,
  );
  if (!exists) return undefined;
  const lines = (await readFile(logFile, 'utf8')).split('\n').filter((l) => l.includes('"level":"error"'));
  const last = lines.at(-1);
  if (last === undefined) return undefined;
  try {
    return tail((JSON.parse(last) as { msg?: string }).msg ?? last, 3);
  } catch {
    return last;
  }
}

function raceTimeout(promise: Promise<unknown>, ms: number, clock: Clock): Promise<boolean> {
  const abort = new AbortController();
  return Promise.race([
    promise.then(() => true),
    clock.sleep(ms, abort.signal).then(
      () => false,
      () => false,
    ),
  ]).finally(() => abort.abort());
}

function validateSpec(taskId: string, spec: TaskSpec): void {
  const bad = (problem: string): TaskError => new TaskError('NC_TASK_SPEC_INVALID', problem, { context: { taskId } });
  if (taskId === '') throw bad('task_id is empty');
  if (spec.argv.length === 0 || spec.argv[0] === '') throw bad('argv is empty');
  for (const [field, path] of [
    ['alloc_dir', spec.allocDir],
    ['local_dir', spec.localDir],
    ['secrets_dir', spec.secretsDir],
    ['rootfs', spec.rootfs],
    ['network_namespace', spec.networkNamespace],
  ] as const) {
    if (path !== '' && !path.startsWith('/')) throw bad(`${field} must be an absolute path`);
  }
  for (const [source, destination] of Object.entries(spec.binds)) {
    if (!source.startsWith('/') || !destination.startsWith('/')) throw bad('binds must map absolute paths');
  }
}
