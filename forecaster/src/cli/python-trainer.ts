import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ForecastCliError, TRAINER_CODES } from './errors';
import type { ForecastCliErrorCode } from './errors';

/** The Python trainer (forecaster/training) run from the project's .venv, one JSON answer per command. */
export class PythonTrainer {
  private constructor(
    readonly python: string,
    private readonly packageDir: string,
  ) {}

  /** Finds ROOT/.venv/bin/python; without it nothing can train, so say how to make it. */
  static locate(root: string): PythonTrainer {
    const python = join(root, '.venv', 'bin', 'python');
    if (!existsSync(python)) {
      throw new ForecastCliError(
        'NC_FORECAST_PYTHON_MISSING',
        `${python} not found: run \`npm run setup\` to create the trainer's .venv`,
        {
          context: { path: python },
        },
      );
    }
    return new PythonTrainer(python, join(root, 'forecaster', 'training'));
  }

  /** Runs `python -m nc_forecast.cli ARGS`; resolves with its JSON stdout, rejects with the trainer's coded error. */
  run(args: readonly string[]): Promise<unknown> {
    const env = {
      ...process.env,
      PYTHONPATH: this.packageDir,
      // One thread each: the cores are shared, and the models are small.
      OMP_NUM_THREADS: '1',
      OPENBLAS_NUM_THREADS: '1',
      MKL_NUM_THREADS: '1',
    };
    return new Promise((resolve, reject) => {
      const child = spawn(this.python, ['-m', 'nc_forecast.cli', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      child.on('error', (cause) =>
        reject(new ForecastCliError('NC_FORECAST_PYTHON_FAILED', `could not start ${this.python}`, { cause })),
      );
      child.on('close', (status, signal) => {
        const stderr = Buffer.concat(err).toString('utf8');
        const command = args[0] ?? '';
        if (status === 0) {
          try {
            resolve(JSON.parse(Buffer.concat(out).toString('utf8')));
          } catch (cause) {
            reject(new ForecastCliError('NC_FORECAST_PYTHON_FAILED', `trainer ${command} printed no JSON`, { cause }));
          }
          return;
        }
        const reported = trainerError(stderr);
        if (status === 2 && reported !== undefined) {
          reject(new ForecastCliError(reported.code, reported.message, { context: { command } }));
          return;
        }
        const tail = stderr.trim().split('\n').slice(-15).join('\n');
        reject(
          new ForecastCliError('NC_FORECAST_PYTHON_FAILED', `trainer ${command} exited ${status ?? signal}:\n${tail}`, {
            context: { command, status: status ?? -1 },
          }),
        );
      });
    });
  }
}

/** The trainer's last stderr line when it is its {"error": {...}} report with a known code. */
function trainerError(stderr: string): { code: ForecastCliErrorCode; message: string } | undefined {
  const last = stderr.trim().split('\n').pop() ?? '';
  try {
    const parsed = JSON.parse(last) as { error?: { code?: unknown; message?: unknown } };
    const code = parsed.error?.code;
    if (typeof code === 'string' && (TRAINER_CODES as readonly string[]).includes(code)) {
      return { code: code as ForecastCliErrorCode, message: String(parsed.error?.message) };
    }
  } catch {
    // Not a report: the caller shows the raw stderr.
  }
  return undefined;
}
