import { spawn } from 'node:child_process';
import { NomadChainError } from './errors';

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

export interface RunOptions {
  readonly input?: string;
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  /** Resolve with the exit code instead of failing on a non-zero exit. */
  readonly allowFailure?: boolean;
}

/** Runs a command to completion, failing with the command's own stderr when it does not exit 0. */
export function run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [command, ...args] = argv;
  if (command === undefined) return Promise.reject(new Error('run: empty argv'));
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
    const timer =
      options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', (cause) => {
      clearTimeout(timer);
      reject(new NomadChainError('NC_COMMAND_FAILED', `${command}: ${cause.message}`, { cause, context: { command } }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code: code ?? -1 };
      if (result.code === 0 || options.allowFailure === true) {
        resolve(result);
        return;
      }
      const why = signal === null ? `exit ${result.code}` : `signal ${signal}`;
      reject(
        new NomadChainError('NC_COMMAND_FAILED', `${argv.join(' ')}: ${why}: ${result.stderr.trim().slice(-2000)}`, {
          context: { command, code: result.code },
        }),
      );
    });
    if (options.input !== undefined && child.stdin !== null) {
      // A command that exits before reading its input must not crash the caller with EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
}
