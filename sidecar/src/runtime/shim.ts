import { spawn } from 'node:child_process';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { TaskError } from '../errors';

/**
 * The per-task shim: a detached shell that runs runc in the foreground and copies the task's stdout and
 * stderr into its log files through two `cat`s. Because the shim, not the sidecar, holds the pipes and
 * waits for runc, the sidecar may die and come back without the task noticing; the task's exit status is
 * left in `exitFile` for whichever sidecar is alive then. Stdio stays real pipes (CRIU cannot dump a task
 * whose stdout is a host file), and an empty pipe on stdin gives the task EOF.
 *
 * The shim first waits for one line on its stdin: the sidecar moves it into its own cgroup meanwhile, so
 * that runc and the `cat`s are born outside the sidecar's cgroup. A supervisor stopping the sidecar kills
 * that whole cgroup (Nomad's raw_exec does, on an upgrade or `nomad alloc restart`): a shim left in it
 * died with the sidecar, and with it the task's log pipes and its exit status.
 */
const SHIM_SCRIPT = [
  'read -r _',
  'exit_file=$1; out=$2; err=$3; shift 3',
  '{ { : | "$@"; echo $? >"$exit_file.tmp"; mv -f "$exit_file.tmp" "$exit_file"; } 2>&1 1>&3 3>&- | cat >>"$err"; } 3>&1 | cat >>"$out"',
].join('\n');

const CGROUP_ROOT = '/sys/fs/cgroup';

export interface ShimLaunch {
  readonly exitFile: string;
  readonly stdoutPath: string;
  readonly stderrPath: string;
  /** The command the shim runs in the foreground: `runc run …` or `runc restore …`. */
  readonly command: readonly string[];
  /** The shim's own cgroup, relative to every hierarchy's root (beside the task's, under the cgroup parent). */
  readonly cgroup: string;
}

/**
 * The directories of `cgroup` in every mounted hierarchy: the unified one (cgroup v2, or the `unified` mount
 * of a hybrid host) and each v1 hierarchy. A v1 supervisor may kill by any of them (Nomad 1.6 uses freezer),
 * so the shim leaves all of them.
 */
async function cgroupDirs(cgroup: string): Promise<CgroupDir[]> {
  const seen = new Map<string, CgroupDir>();
  for (const line of (await readFile('/proc/self/mounts', 'utf8')).split('\n')) {
    const [, mountPoint, type] = line.split(' ');
    if (mountPoint === undefined || !mountPoint.startsWith(CGROUP_ROOT)) continue;
    const dir = join(mountPoint, cgroup);
    if (type === 'cgroup' || type === 'cgroup2') seen.set(dir, { root: mountPoint, dir, v1: type === 'cgroup' });
  }
  return [...seen.values()];
}

interface CgroupDir {
  /** The hierarchy's mount point. */
  readonly root: string;
  readonly dir: string;
  readonly v1: boolean;
}

/**
 * Creates `dir` and its missing parents. In a v1 cpuset hierarchy a new cgroup starts with no cpus and no
 * mems, and admits no process (ENOSPC): every empty level from the root down copies its parent's. Not only
 * the levels this call created: a launch beside it may have created the shared parent and not filled it
 * yet (restores at once under one cgroup parent). Walking down from the root, each level is copied from
 * one seen filled, and nothing ever writes an empty set, so concurrent walks agree.
 */
async function makeCgroup({ root, dir, v1 }: CgroupDir): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (!v1) return;
  let parent = root;
  for (const part of relative(root, dir).split('/')) {
    const level = join(parent, part);
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      const own = await readFile(join(level, file), 'utf8').catch(() => undefined);
      if (own === undefined || own.trim() !== '') continue;
      await writeFile(join(level, file), await readFile(join(parent, file), 'utf8'));
    }
    parent = level;
  }
}

/**
 * Starts a shim in its own session and its own cgroup, and returns its pid; the sidecar keeps no handle on
 * it. Fails (and kills the shim before it ran anything) when it cannot leave the sidecar's cgroup.
 */
export async function launchShim(launch: ShimLaunch): Promise<number> {
  const dirs = await cgroupDirs(launch.cgroup);
  const child = spawn(
    '/bin/sh',
    ['-c', SHIM_SCRIPT, 'nomad-chain-shim', launch.exitFile, launch.stdoutPath, launch.stderrPath, ...launch.command],
    { detached: true, stdio: ['pipe', 'ignore', 'ignore'] },
  );
  const pid = child.pid;
  if (pid === undefined) throw new TaskError('NC_TASK_START_FAILED', 'could not spawn /bin/sh for the task shim');
  try {
    for (const cgroupDir of dirs) {
      await makeCgroup(cgroupDir);
      await writeFile(join(cgroupDir.dir, 'cgroup.procs'), String(pid));
    }
  } catch (cause) {
    child.kill('SIGKILL');
    throw new TaskError('NC_TASK_START_FAILED', "could not move the task's shim out of the sidecar's cgroup", {
      cause,
      context: { cgroup: launch.cgroup },
    });
  } finally {
    child.stdin?.end('go\n');
    child.unref();
  }
  return pid;
}

/** Removes the shim's cgroup once its processes are gone; false while one still lives in it. */
export async function removeShimCgroup(cgroup: string): Promise<boolean> {
  let empty = true;
  for (const { dir } of await cgroupDirs(cgroup)) {
    try {
      await rmdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
      empty = false;
    }
  }
  return empty;
}
