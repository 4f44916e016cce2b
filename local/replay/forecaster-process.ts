import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ReplayError } from '../controller/errors';

export interface ForecasterProcessOptions {
  readonly repo: string;
  readonly workDir: string;
  /** The forecaster's config (forecaster/README.md): written to a file and passed with --config. */
  readonly config: Readonly<Record<string, unknown>>;
  /** @default 90000: a cold start compiles TypeScript and loads onnxruntime on a loaded machine. */
  readonly startTimeoutMs?: number;
}

/** One of the forecaster's decisions, as its `decision` log line gives it (forecaster/README.md, Policy). */
export interface LoggedDecision {
  readonly node: string;
  readonly action: 'fence' | 'drain' | 'undo' | 'hold';
  /** The forecaster's clock (trace time plus the replay's epoch shift). */
  readonly atMs: number;
  readonly level?: string;
  readonly threshold?: number;
  readonly thresholdSource?: string;
}

/**
 * The forecaster as its own process (`forecaster/src/main.ts --config FILE`), as in production: the replay
 * talks to it only through its telemetry gRPC port and, through the controller API, it acts on the cluster.
 */
export class ForecasterProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly telemetryPort: number,
    readonly httpPort: number,
    readonly logFile: string,
    /** Every decision it has logged so far, in order: the replay counts the policy from them. */
    readonly decisions: readonly LoggedDecision[],
  ) {}

  static start(options: ForecasterProcessOptions): Promise<ForecasterProcess> {
    const configFile = join(options.workDir, 'forecaster.json');
    const logFile = join(options.workDir, 'forecaster.log');
    writeFileSync(configFile, `${JSON.stringify(options.config, null, 2)}\n`);
    const child = spawn(
      process.execPath,
      ['-r', './scripts/register.js', 'forecaster/src/main.ts', '--config', configFile],
      { cwd: options.repo, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const log = createWriteStream(logFile);
    child.stderr?.pipe(log);
    const decisions: LoggedDecision[] = [];
    return new Promise((resolve, reject) => {
      let pending = '';
      const fail = (why: string): void => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new ReplayError('NC_REPLAY_FORECASTER_FAILED', `forecaster ${why} (log: ${logFile})`));
      };
      const timer = setTimeout(() => fail('not listening in time'), options.startTimeoutMs ?? 90_000);
      child.once('exit', (code) => fail(`exited with ${code ?? 'a signal'} before listening`));
      child.stdout?.on('data', (chunk: Buffer) => {
        log.write(chunk);
        pending += chunk.toString();
        let newline = pending.indexOf('\n');
        while (newline >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          newline = pending.indexOf('\n');
          const entry = parseLine(line);
          const decision = entry?.msg === 'decision' ? asDecision(entry) : undefined;
          if (decision !== undefined) decisions.push(decision);
          if (entry?.msg === 'forecaster listening' && typeof entry.telemetryPort === 'number') {
            clearTimeout(timer);
            child.removeAllListeners('exit');
            resolve(new ForecasterProcess(child, entry.telemetryPort, Number(entry.httpPort), logFile, decisions));
          }
        }
      });
    });
  }

  /** SIGTERM, then SIGKILL if it has not gone within `graceMs`. */
  stop(graceMs = 10_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.kill('SIGTERM');
    });
  }
}

type LogLine = Record<string, unknown>;

function parseLine(line: string): LogLine | undefined {
  try {
    const entry: unknown = JSON.parse(line);
    return typeof entry === 'object' && entry !== null ? (entry as LogLine) : undefined;
  } catch {
    return undefined;
  }
}

const ACTIONS = new Set(['fence', 'drain', 'undo', 'hold']);

function asDecision(entry: LogLine): LoggedDecision | undefined {
  const { node, action, atMs, level, threshold, thresholdSource } = entry;
  if (typeof node !== 'string' || typeof action !== 'string' || !ACTIONS.has(action) || typeof atMs !== 'number')
    return undefined;
  return {
    node,
    action: action as LoggedDecision['action'],
    atMs,
    ...(typeof level === 'string' ? { level } : {}),
    ...(typeof threshold === 'number' ? { threshold } : {}),
    ...(typeof thresholdSource === 'string' ? { thresholdSource } : {}),
  };
}
