import { spawn } from 'node:child_process';

export interface CommandResult {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly timedOut: boolean;
}

export interface CommandOptions {
  readonly timeoutMs?: number;
  readonly cwd?: string;
  /** The program's whole environment; the caller's when absent. */
  readonly env?: NodeJS.ProcessEnv;
  /** Extra file descriptors beyond stdio, as Node's `stdio` array entries from index 3 on. */
  readonly extraStdio?: readonly ('pipe' | 'ignore')[];
}

/**
 * Runs a program to completion and collects its output. A timeout kills it with SIGKILL: the commands run
 * here (runc, criu, iptables) hold no state a gentler signal would save.
 */
export function runCommand(
  file: string,
  args: readonly string[],
  options: CommandOptions = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe', ...(options.extraStdio ?? [])],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutMs);
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.once('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.once('close', (exitCode, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ exitCode, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr), timedOut });
    });
  });
}

/** The last lines of a command's output, for error messages that must stay short. */
export function tail(text: string | Buffer, lines = 6): string {
  return String(text).trim().split('\n').slice(-lines).join('\n');
}
