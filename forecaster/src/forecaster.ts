import type { Clock } from '../../common/clock';
import { errorCode } from '../../common/errors';
import type { Logger } from '../../common/logging';
import type { ActionExecutor } from './actions/action-executor';
import type { Reservation } from './actions/scheduler-actions';
import type { SchedulerEvent } from './events/scheduler-events';
import type { FeatureBuilder } from './features/feature-builder';
import type { IngestBatch, TelemetrySink } from './ingest/telemetry-sink';
import type { ServingModel } from './model/serving-model';
import type { Decision } from './policy/decision';
import { isTerminalNotice, type DrainPolicy, type NodePhase, type NodeRisk } from './policy/drain-policy';
import type { Thresholds } from './policy/policy-thresholds';
import type { ClusterWindows } from './windows/cluster-windows';
import type { ActiveSignal } from './windows/node-window';

/** One node as the risk API shows it. */
export interface NodeRiskReport {
  readonly node: string;
  readonly pool: string;
  readonly nodeClass: string;
  /** Probability of draining within the model's horizon; null before the first scored tick. */
  readonly risk: number | null;
  readonly scoredAtMs: number | null;
  readonly phase: NodePhase;
  readonly prepared: boolean;
  readonly notices: readonly ActiveSignal[];
  readonly reservation: Reservation | null;
  /** The levels that apply to the node now, and where they came from (the model's card or the config). */
  readonly thresholds: Thresholds;
  /** The node's recent decisions, oldest first, each with its reasons. */
  readonly decisions: readonly Decision[];
}

export interface TickStats {
  ticks: number;
  lastTickMs: number;
  lastNodes: number;
  lastFeaturesMs: number;
  lastScoreMs: number;
  scoreFailures: number;
  decisions: number;
}

export interface ForecasterDeps {
  readonly clock: Clock;
  readonly windows: ClusterWindows;
  readonly features: FeatureBuilder;
  readonly model: ServingModel;
  readonly policy: DrainPolicy;
  /** Absent = observe only: decisions are recorded, never carried out. */
  readonly executor: ActionExecutor | undefined;
  readonly log: Logger;
}

/**
 * The forecaster's loop: every tick it builds every alive node's feature row, scores them all in one batched
 * model call, lets the policy decide, and hands decisions to the executor. Telemetry and scheduler events
 * arrive in between and only touch the windows.
 */
export class Forecaster implements TelemetrySink {
  readonly stats: TickStats = {
    ticks: 0,
    lastTickMs: 0,
    lastNodes: 0,
    lastFeaturesMs: 0,
    lastScoreMs: 0,
    scoreFailures: 0,
    decisions: 0,
  };
  private readonly risks = new Map<string, { risk: number; atMs: number }>();
  private buffer = new Float32Array(0);
  private readonly pending = new Set<Promise<unknown>>();
  /** Ends the run loop's wait for the next tick early (set while it waits). */
  private wake: (() => void) | undefined;

  constructor(private readonly deps: ForecasterDeps) {}

  ingest(batch: IngestBatch): void {
    const known = this.deps.windows.store.get(batch.node)?.activeSignals() ?? [];
    this.deps.windows.ingest(batch);
    // A node that is leaving cannot wait for the next tick: with a two-minute notice and one-minute ticks, half
    // the notice could go by before the drain even starts.
    const fresh = batch.signals.some(
      (s) => isTerminalNotice(s.kind) && !known.some((k) => k.source === s.source && k.kind === s.kind),
    );
    if (fresh) this.wake?.();
  }

  onSchedulerEvent(event: SchedulerEvent): void {
    const { windows, policy } = this.deps;
    switch (event.type) {
      case 'node-joined':
        windows.event(event.node, 'join', event.timeMs, 'scheduler', { pool: event.pool, nodeClass: event.nodeClass });
        return;
      case 'node-left':
        windows.event(event.node, event.preempted ? 'preempted' : 'leave', event.timeMs, event.detail);
        policy.forget(event.node);
        this.risks.delete(event.node);
        this.track(this.deps.executor?.drainEnded(event.node));
        return;
      case 'drain-started': {
        windows.event(event.node, 'drain-started', event.timeMs, event.detail);
        const window = windows.store.get(event.node);
        policy.observeDrain(event.node, window?.pool ?? '', window?.nodeClass ?? '', event.timeMs);
        return;
      }
      case 'drain-complete':
      case 'drain-canceled':
        windows.event(event.node, event.type, event.timeMs, 'scheduler');
        policy.observeDrainEnded(event.node, event.timeMs);
        this.track(this.deps.executor?.drainEnded(event.node));
        return;
    }
  }

  /** Scores every alive node once and acts on the policy's decisions. Returns the decisions made. */
  async tick(): Promise<Decision[]> {
    const { clock, windows, features, model, policy, executor, log } = this.deps;
    const now = clock.now();
    const started = performance.now();
    windows.prune(now);
    const nodes = windows.alive();
    const width = features.width;
    if (this.buffer.length < nodes.length * width)
      this.buffer = new Float32Array(Math.ceil(nodes.length * 1.25) * width);
    nodes.forEach((w, i) => features.row(w, windows.poolOf(w), now, this.buffer, i * width));
    const featuresDone = performance.now();

    let scores: Float32Array | undefined;
    if (model.loaded && nodes.length > 0) {
      try {
        scores = await model.score(this.buffer, nodes.length);
      } catch (err) {
        this.stats.scoreFailures += 1;
        log.error({ err, code: errorCode(err) }, 'scoring failed; risks unchanged this tick');
      }
    }
    const scored = performance.now();
    if (scores !== undefined) nodes.forEach((w, i) => this.risks.set(w.node, { risk: scores[i] ?? 0, atMs: now }));

    const inputs: NodeRisk[] = nodes.map((w) => ({
      node: w.node,
      pool: w.pool,
      nodeClass: w.nodeClass,
      risk: this.risks.get(w.node)?.risk ?? 0,
      notices: w.activeSignals(),
    }));
    const decisions = policy.evaluate(inputs, now);
    this.stats.ticks += 1;
    this.stats.lastNodes = nodes.length;
    this.stats.lastFeaturesMs = featuresDone - started;
    this.stats.lastScoreMs = scored - featuresDone;
    this.stats.lastTickMs = performance.now() - started;
    this.stats.decisions += decisions.length;
    for (const d of decisions) {
      log.info(
        {
          node: d.node,
          decision: d.id,
          action: d.action,
          atMs: d.atMs,
          risk: d.risk,
          level: d.level,
          threshold: d.threshold,
          thresholdSource: d.thresholdSource,
          reasons: d.reasons,
        },
        'decision',
      );
      if (executor !== undefined) this.track(executor.submit(d));
    }
    return decisions;
  }

  /** Carried-out actions still running (tests and shutdown wait on them). */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    await this.deps.executor?.idle();
  }

  /**
   * Runs `tick` every `tickMs` until `signal` aborts, and at once when a new terminal interruption notice comes
   * in; a slow tick delays the next rather than overlapping it.
   */
  async run(tickMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.tick();
      } catch (err) {
        this.deps.log.error({ err }, 'tick failed');
      }
      const early = new AbortController();
      this.wake = () => early.abort();
      await this.deps.clock.sleep(tickMs, AbortSignal.any([signal, early.signal])).catch(() => undefined);
      this.wake = undefined;
    }
  }

  report(): NodeRiskReport[] {
    const { windows, policy } = this.deps;
    const names = new Set([...windows.alive().map((w) => w.node), ...policy.nodes()]);
    return [...names].sort().map((node) => this.reportFor(node));
  }

  reportFor(node: string): NodeRiskReport {
    const { windows, policy, executor } = this.deps;
    const window = windows.store.get(node);
    const state = policy.state(node);
    const risk = this.risks.get(node);
    return {
      node,
      pool: window?.pool ?? '',
      nodeClass: window?.nodeClass ?? '',
      risk: risk?.risk ?? null,
      scoredAtMs: risk?.atMs ?? null,
      phase: state?.phase ?? 'healthy',
      prepared: state?.prepared ?? false,
      notices: window?.activeSignals() ?? [],
      reservation: executor?.reservationFor(node) ?? null,
      thresholds: policy.thresholds(window?.pool ?? '', window?.nodeClass ?? ''),
      decisions: state?.decisions ?? [],
    };
  }

  private track(promise: Promise<unknown> | undefined): void {
    if (promise === undefined) return;
    this.pending.add(promise);
    void promise.finally(() => this.pending.delete(promise));
  }
}
