import { run } from '../../common/exec';

/** Process ids of the processes whose command line holds every one of `parts`. */
export async function processesWith(parts: readonly string[]): Promise<number[]> {
  const out = await run(['ps', '-eo', 'pid=,args='], { allowFailure: true });
  return out.stdout
    .split('\n')
    .filter((line) => parts.every((p) => line.includes(p)))
    .map((line) => Number(line.trim().split(/\s+/)[0]))
    .filter((pid) => pid !== process.pid && Number.isInteger(pid) && pid > 0);
}

/**
 * Polls for a process whose command line holds every one of `parts` until one shows up or `done()` says the
 * moment has passed: the first one seen, or undefined.
 */
export async function whenSeen(parts: readonly string[], done: () => boolean): Promise<number | undefined> {
  for (;;) {
    const [pid] = await processesWith(parts);
    if (pid !== undefined) return pid;
    if (done()) return undefined;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** SIGKILLs a process's whole group (a runc and the CRIU it started), or the process alone when it leads none. */
export function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    killOne(pid);
  }
}

/** SIGKILLs one process. */
export function killOne(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}
