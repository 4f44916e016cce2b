import { appendFile, mkdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../common/logging';
import type { WindowsObserver } from '../windows/cluster-windows';
import { METRICS } from '../windows/node-window';
import type { HistoryKind, TelemetryPoint } from '../windows/node-window';

/** The live file and the one it rotated into; both are nc-trace/1 (forecaster/training/README.md). */
export const TRACE_FILE = 'observed.ndjson';
export const ROTATED_FILE = 'observed.1.ndjson';
const HEADER = `${JSON.stringify({ format: 'nc-trace/1', source: 'nomad-chain forecaster' })}\n`;

export interface TraceRecorderConfig {
  /** Folder of the two trace files. */
  readonly dir: string;
  /** Both files together stay within this: the live file rotates when it would pass half of it. */
  readonly maxBytes: number;
  /** Lines held in memory while the disk is slow or failing; past it new lines are dropped and counted. @default 4 MiB */
  readonly maxBufferBytes?: number;
  /** Buffered bytes that start a write at once. @default 64 KiB */
  readonly flushBytes?: number;
  /** Longest time a line waits in memory. @default 1000 */
  readonly flushIntervalMs?: number;
}

export interface TraceRecorderStats {
  lines: number;
  dropped: number;
  rotations: number;
  writeFailures: number;
}

/**
 * Appends what the forecaster observes (every history event and telemetry sample its windows take in) to an
 * nc-trace/1 file under its data dir, so local mode can retrain on its own history. Writes are batched and
 * asynchronous, one at a time; the live file rotates into a single older file, so the pair stays within
 * `maxBytes`.
 */
export class TraceRecorder implements WindowsObserver {
  readonly stats: TraceRecorderStats = { lines: 0, dropped: 0, rotations: 0, writeFailures: 0 };
  private pending: string[] = [];
  private pendingBytes = 0;
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly maxBufferBytes: number;
  private readonly flushBytes: number;
  private readonly flushIntervalMs: number;

  private constructor(
    private readonly config: TraceRecorderConfig,
    private size: number,
    private readonly log: Logger,
  ) {
    this.maxBufferBytes = config.maxBufferBytes ?? 4 * 1024 * 1024;
    this.flushBytes = config.flushBytes ?? 64 * 1024;
    this.flushIntervalMs = config.flushIntervalMs ?? 1000;
  }

  /** Opens (or continues) the live file in `config.dir`. */
  static async open(config: TraceRecorderConfig, log: Logger): Promise<TraceRecorder> {
    await mkdir(config.dir, { recursive: true });
    const size = await stat(join(config.dir, TRACE_FILE)).then(
      (s) => s.size,
      () => 0,
    );
    return new TraceRecorder(config, size, log);
  }

  /** The files holding the recorded trace, oldest first. */
  files(): string[] {
    return [join(this.config.dir, ROTATED_FILE), join(this.config.dir, TRACE_FILE)];
  }

  history(node: string, pool: string, kind: HistoryKind, timeMs: number): void {
    this.append({ t: Math.round(timeMs), node, pool, event: kind });
  }

  sample(node: string, point: TelemetryPoint): void {
    const metrics: Record<string, number> = {};
    // A metric the agent could not read stays absent, as the format allows; JSON has no NaN.
    for (const m of METRICS) if (Number.isFinite(point[m])) metrics[m] = point[m];
    this.append({ t: Math.round(point.timeMs), node, metrics });
  }

  /** Resolves once every line appended so far is on disk (or dropped after a failed write). */
  async flush(): Promise<void> {
    this.clearTimer();
    while (this.writing !== undefined || this.pending.length > 0) {
      this.startWrite();
      await this.writing;
    }
  }

  close(): Promise<void> {
    return this.flush();
  }

  private append(line: object): void {
    const text = `${JSON.stringify(line)}\n`;
    const bytes = Buffer.byteLength(text);
    if (this.pendingBytes + bytes > this.maxBufferBytes) {
      this.stats.dropped += 1;
      return;
    }
    this.pending.push(text);
    this.pendingBytes += bytes;
    this.stats.lines += 1;
    if (this.pendingBytes >= this.flushBytes) this.startWrite();
    else this.timer ??= setTimeout(() => this.startWrite(), this.flushIntervalMs).unref();
  }

  private startWrite(): void {
    this.clearTimer();
    if (this.writing !== undefined || this.pending.length === 0) return;
    // One write never exceeds what a fresh file may hold, so rotation alone keeps the pair within maxBytes.
    const limit = Math.min(this.config.maxBytes / 2 - HEADER.length, 1024 * 1024);
    let taken = 0;
    let bytes = 0;
    for (const line of this.pending) {
      const size = Buffer.byteLength(line);
      if (taken > 0 && bytes + size > limit) break;
      taken += 1;
      bytes += size;
    }
    const chunk = this.pending.splice(0, taken).join('');
    this.pendingBytes -= bytes;
    this.writing = this.write(chunk, bytes).finally(() => {
      this.writing = undefined;
      if (this.pendingBytes >= this.flushBytes) this.startWrite();
      else if (this.pending.length > 0)
        this.timer ??= setTimeout(() => this.startWrite(), this.flushIntervalMs).unref();
    });
  }

  private async write(chunk: string, bytes: number): Promise<void> {
    const live = join(this.config.dir, TRACE_FILE);
    try {
      if (this.size > 0 && this.size + bytes > this.config.maxBytes / 2) {
        await rename(live, join(this.config.dir, ROTATED_FILE));
        this.size = 0;
        this.stats.rotations += 1;
      }
      const text = this.size === 0 ? HEADER + chunk : chunk;
      await appendFile(live, text);
      this.size += Buffer.byteLength(text);
    } catch (err) {
      // The trace is for retraining, never for serving: a failed write loses these lines and nothing else.
      this.stats.writeFailures += 1;
      this.stats.dropped += chunk.split('\n').length - 1;
      this.log.warn({ err, path: live }, 'trace write failed; lines dropped');
    }
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
