import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../../../common/clock';
import { errorCode } from '../../../common/errors';
import type { Logger } from '../../../common/logging';
import { snapshotTrace } from '../record/trace-snapshot';
import type { TraceStats } from '../record/trace-snapshot';
import type { ModelRetrainer, RetrainOutcome } from './model-retrainer';

export interface RetrainTimerConfig {
  readonly intervalMs: number;
  /** The model registry the candidate must win in. */
  readonly registry: string;
  /** Where each run's trace snapshot goes. */
  readonly workDir: string;
  /** Shortest recorded span worth a retrain (it must also exceed the retrainer's holdout). */
  readonly minSpanMs: number;
  /** Fewest recorded pre-emptions worth a retrain (the label needs positives on both sides of the holdout). */
  readonly minPreemptions: number;
  /** The model serving from modelDir while the registry is empty ('' = none). */
  readonly seedModelDir: string;
}

/** The recorded trace, as the timer needs it. */
export interface RecordedTrace {
  flush(): Promise<void>;
  /** Files holding the trace, oldest first. */
  files(): string[];
}

export interface RetrainTimerDeps {
  readonly clock: Clock;
  readonly log: Logger;
  readonly retrainer: ModelRetrainer;
  readonly trace: RecordedTrace;
  /** Called after a promotion: the serving side loads the registry's new current model. */
  readonly promoted: (outcome: RetrainOutcome) => Promise<void>;
}

export type RetrainStatus = 'promoted' | 'kept' | 'skipped' | 'failed';

export type RetrainResult =
  | { readonly status: 'promoted' | 'kept'; readonly outcome: RetrainOutcome; readonly stats: TraceStats }
  | { readonly status: 'skipped'; readonly reason: string; readonly stats?: TraceStats }
  | { readonly status: 'failed'; readonly error: unknown };

export const SNAPSHOT_FILE = 'retrain-trace.ndjson';

/**
 * Local mode's periodic retrain (Nomad mode runs jobs/forecaster-retrain.nomad.hcl instead): every interval,
 * when the recorded trace holds enough, the retrainer trains a candidate on it and the registry promotes it
 * only if it beats the serving model on the trace's recent window. Runs never overlap; a failed run is logged
 * and the serving model keeps serving.
 */
export class RetrainTimer {
  readonly counts: Record<RetrainStatus, number> = { promoted: 0, kept: 0, skipped: 0, failed: 0 };
  private running: Promise<RetrainResult> | undefined;

  constructor(
    private readonly config: RetrainTimerConfig,
    private readonly deps: RetrainTimerDeps,
  ) {}

  /** Runs `runOnce` every interval until `signal` aborts; a long run delays the next rather than overlapping it. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.deps.clock.sleep(this.config.intervalMs, signal).catch(() => undefined);
      if (signal.aborted) return;
      await this.runOnce();
    }
  }

  /** One retrain now (the timer's, or on demand); while one is running, another is skipped, never started. */
  runOnce(): Promise<RetrainResult> {
    if (this.running !== undefined) {
      this.counts.skipped += 1;
      this.deps.log.info({ status: 'skipped' }, 'retrain skipped: one is already running');
      return Promise.resolve({ status: 'skipped', reason: 'a retrain is already running' });
    }
    const run = this.attempt().finally(() => {
      this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async attempt(): Promise<RetrainResult> {
    const { clock, log, retrainer, trace } = this.deps;
    const started = clock.now();
    let stats: TraceStats | undefined;
    try {
      await trace.flush();
      await mkdir(this.config.workDir, { recursive: true });
      const snapshot = join(this.config.workDir, SNAPSHOT_FILE);
      stats = await snapshotTrace(trace.files(), snapshot);
      const lacking = this.lacking(stats, retrainer.holdoutMs);
      if (lacking !== undefined) {
        this.counts.skipped += 1;
        log.info({ status: 'skipped', reason: lacking, ...stats }, 'retrain skipped: not enough recorded data');
        return { status: 'skipped', reason: lacking, stats };
      }
      const outcome = await retrainer.retrain({
        trace: snapshot,
        registry: this.config.registry,
        ...(this.config.seedModelDir === '' ? {} : { seedModelDir: this.config.seedModelDir }),
      });
      const status = outcome.promoted ? 'promoted' : 'kept';
      const fields = { status, ...outcome, traceSpanMs: stats.lastMs - stats.firstMs, tookMs: clock.now() - started };
      if (outcome.promoted) log.info(fields, 'retrain promoted a new model');
      else log.info(fields, 'retrain kept the serving model');
      if (outcome.promoted) await this.load(outcome);
      // Counted once the serving side has had the promoted model: a reader of the counts sees the run finished.
      this.counts[status] += 1;
      return { status, outcome, stats };
    } catch (err) {
      this.counts.failed += 1;
      log.error({ err, code: errorCode(err), status: 'failed' }, 'retrain failed; serving model unchanged');
      return { status: 'failed', error: err };
    }
  }

  /** The registry already promoted; a model the serving side refuses leaves the old one serving (logged there). */
  private async load(outcome: RetrainOutcome): Promise<void> {
    try {
      await this.deps.promoted(outcome);
    } catch (err) {
      this.deps.log.warn(
        { err, code: errorCode(err), candidate: outcome.candidate },
        'promoted model not loaded; serving model unchanged',
      );
    }
  }

  private lacking(stats: TraceStats, holdoutMs: number): string | undefined {
    const spanMs = stats.lastMs - stats.firstMs;
    if (spanMs < this.config.minSpanMs)
      return `recorded span ${spanMs} ms < retrainMinSpan ${this.config.minSpanMs} ms`;
    if (spanMs <= holdoutMs) return `recorded span ${spanMs} ms does not exceed the ${holdoutMs} ms validation window`;
    if (stats.preemptions < this.config.minPreemptions) {
      return `${stats.preemptions} recorded pre-emptions < retrainMinPreemptions ${this.config.minPreemptions}`;
    }
    return undefined;
  }
}
