import type { IngestBatch, TelemetrySink } from '../ingest/telemetry-sink';
import type { HistoryKind, NodeWindow, TelemetryPoint } from './node-window';
import { PoolState } from './pool-state';
import { historyKindOfSignal } from './signal-kind';
import { WindowStore } from './window-store';
import type { WindowStoreConfig } from './window-store';

export const DEFAULT_POOL = 'default';

/** Sees every history event and sample the windows take in, as they take them (the trace recorder). */
export interface WindowsObserver {
  history(node: string, pool: string, kind: HistoryKind, timeMs: number): void;
  sample(node: string, point: TelemetryPoint): void;
}

/**
 * Every node's window and every pool's history, fed by telemetry (samples, cloud signals, history events) and by the
 * scheduler's events. A node joins its pool when it is first seen (or on a join event) and leaves it when it is
 * pre-empted, its drain completes, or it falls silent for `staleAfterMs`.
 */
export class ClusterWindows implements TelemetrySink {
  private readonly pools = new Map<string, PoolState>();
  readonly store: WindowStore;

  constructor(
    config: WindowStoreConfig,
    private readonly poolRetainMs: number,
    private readonly now: () => number,
    private readonly observer?: WindowsObserver,
  ) {
    this.store = new WindowStore(config, now, (window) => this.leave(window));
  }

  ingest(batch: IngestBatch): void {
    const known = this.store.get(batch.node) !== undefined;
    const window = this.store.touch(batch.node);
    if (batch.pool !== '' || window.pool === '') window.pool = batch.pool === '' ? DEFAULT_POOL : batch.pool;
    if (batch.nodeClass !== '') window.nodeClass = batch.nodeClass;
    const pool = this.pool(window.pool);
    const first = batch.points[0]?.timeMs ?? batch.events[0]?.timeMs ?? this.now();
    const joins = batch.events.some((e) => e.kind === 'join');
    // A node's first line joins it (the trace format's rule); so does telemetry from a node that had left,
    // since a node that reports again is back. Events alone never revive a node.
    if (!joins && (!known || (batch.points.length > 0 && !pool.isAlive(batch.node)))) {
      this.record(window, pool, 'join', first, 'first telemetry');
    }
    for (const e of batch.events) this.record(window, pool, e.kind, e.timeMs, e.detail);
    for (const p of batch.points) if (window.push(p)) this.observer?.sample(window.node, p);
    const lastTime = batch.points[batch.points.length - 1]?.timeMs ?? first;
    for (const fresh of window.setSignals(batch.signals, lastTime)) {
      const kind = historyKindOfSignal(fresh.kind);
      // The sidecar also sends a fresh signal as a history event: one record of it.
      if (!batch.events.some((e) => e.kind === kind)) {
        this.record(window, pool, kind, lastTime, `${fresh.source} ${fresh.kind}`);
      }
    }
  }

  /** A history event learnt from the scheduler (join, pre-emption, drain) rather than from the node itself. */
  event(
    node: string,
    kind: HistoryKind,
    timeMs: number,
    detail: string,
    meta: { pool?: string; nodeClass?: string } = {},
  ): void {
    const existing = this.store.get(node);
    // A leaving node the forecaster never tracked needs no window.
    if (existing === undefined && kind !== 'join' && kind !== 'drain-started') return;
    const window = existing ?? this.store.touch(node);
    if (meta.pool !== undefined && meta.pool !== '') window.pool = meta.pool;
    if (window.pool === '') window.pool = DEFAULT_POOL;
    if (meta.nodeClass !== undefined && meta.nodeClass !== '') window.nodeClass = meta.nodeClass;
    const pool = this.pool(window.pool);
    if (kind === 'join' && pool.isAlive(node)) return;
    this.record(window, pool, kind, timeMs, detail);
  }

  isAlive(window: NodeWindow): boolean {
    return this.pools.get(window.pool)?.isAlive(window.node) ?? false;
  }

  poolOf(window: NodeWindow): PoolState {
    return this.pool(window.pool);
  }

  /** Alive, tracked nodes (the ones to score). */
  alive(): NodeWindow[] {
    return this.store.all().filter((w) => this.isAlive(w));
  }

  prune(nowMs: number): void {
    for (const pool of this.pools.values()) pool.prune(nowMs);
  }

  private record(window: NodeWindow, pool: PoolState, kind: HistoryKind, timeMs: number, detail: string): void {
    window.addEvent({ timeMs, kind, detail });
    pool.apply(window.node, kind, timeMs);
    this.observer?.history(window.node, window.pool, kind, timeMs);
  }

  private leave(window: NodeWindow): void {
    const pool = this.pools.get(window.pool);
    if (pool?.isAlive(window.node) !== true) return;
    const now = this.now();
    pool.apply(window.node, 'leave', now);
    this.observer?.history(window.node, window.pool, 'leave', now);
  }

  private pool(name: string): PoolState {
    let pool = this.pools.get(name);
    if (pool === undefined) {
      pool = new PoolState(this.poolRetainMs);
      this.pools.set(name, pool);
    }
    return pool;
  }
}
