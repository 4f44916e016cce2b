import { spawn } from 'node:child_process';

/**
 * The per-task shim: a detached shell that runs runc in the foreground and copies the task's stdout and
 * stderr into its log files through two `cat`s. Because the shim, not the sidecar, holds the pipes and
 * waits for runc, the sidecar may die and come back without the task noticing; the task's exit status is
 * left in `exitFile` for whichever sidecar is alive then. Stdio stays real pipes (CRIU cannot dump a task
 * whose stdout is a host file), and an empty pipe on stdin gives the task EOF.
 */
const SHIM_SCRIPT = [
  'exit_file=$1; out=$2; err=$3; shift 3',
  '{ { : | "$@"; echo $? >"$exit_file.tmp"; mv -f "$exit_file.tmp" "$exit_file"; } 2>&1 1>&3 3>&- | cat >>"$err"; } 3>&1 | cat >>"$out"',
].join('\n');

export interface ShimLaunch {
  readonly exitFile: string;
  readonly stdoutPath: string;
  readonly stderrPath: string;
  /** The command the shim runs in the foreground: `runc run …` or `runc restore …`. */
  readonly command: readonly string[];
}

/** Starts a shim in its own session and returns its pid; the sidecar keeps no handle on it. */
export function launchShim(launch: ShimLaunch): number {
  const child = spawn(
    '/bin/sh',
    ['-c', SHIM_SCRIPT, 'nomad-chain-shim', launch.exitFile, launch.stdoutPath, launch.stderrPath, ...launch.command],
    { detached: true, stdio: 'ignore' },
  );
  child.unref();
  if (child.pid === undefined) throw new Error('could not spawn /bin/sh for the task shim');
  return child.pid;
}
