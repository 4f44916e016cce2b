/** One telemetry sample as the forecaster keeps it (units as in chain.v1.TelemetrySample). */
export interface TelemetryPoint {
  readonly timeMs: number;
  readonly cpu: number;
  readonly memSomeAvg10: number;
  readonly memFullAvg10: number;
  readonly memUsed: number;
  readonly netRxBps: number;
  readonly netTxBps: number;
  readonly diskReadBps: number;
  readonly diskWriteBps: number;
}

export const METRICS = [
  'cpu',
  'memSomeAvg10',
  'memFullAvg10',
  'memUsed',
  'netRxBps',
  'netTxBps',
  'diskReadBps',
  'diskWriteBps',
] as const;
export type Metric = (typeof METRICS)[number];

/** Node history events, named as in the trace format (forecaster/training/README.md). */
export const HISTORY_KINDS = [
  'join',
  'preempted',
  'notice',
  'advice',
  'drain-started',
  'drain-complete',
  'drain-canceled',
  'leave',
] as const;
export type HistoryKind = (typeof HISTORY_KINDS)[number];

export interface HistoryEvent {
  readonly timeMs: number;
  readonly kind: HistoryKind;
  readonly detail: string;
}

export interface ActiveSignal {
  readonly source: string;
  readonly kind: string;
  /** 0 = the source announced no deadline. */
  readonly deadlineMs: number;
  readonly firstSeenMs: number;
  readonly detail: string;
}

/**
 * A bounded, time-ordered window of one node's samples and history. Samples live in one typed array per metric
 * (a ring), so ten thousand windows cost a few megabytes and no per-sample objects.
 */
export class NodeWindow {
  readonly node: string;
  pool = '';
  nodeClass = '';
  lastSeenMs = 0;
  private readonly times: Float64Array;
  private readonly columns: Float32Array[];
  private head = 0;
  private size = 0;
  private readonly events: HistoryEvent[] = [];
  private signals: ActiveSignal[] = [];

  constructor(
    node: string,
    readonly capacity: number,
    readonly eventCapacity: number,
  ) {
    this.node = node;
    this.times = new Float64Array(capacity);
    // float32 storage; the Python trainer rounds its samples the same way, so features agree bit for bit.
    this.columns = METRICS.map(() => new Float32Array(capacity));
  }

  get length(): number {
    return this.size;
  }

  /** Appends a sample; samples older than the newest are dropped (a reconnecting agent resends). */
  push(point: TelemetryPoint): boolean {
    if (this.size > 0 && point.timeMs <= this.timeAt(this.size - 1)) return false;
    const slot = (this.head + this.size) % this.capacity;
    this.times[slot] = point.timeMs;
    METRICS.forEach((metric, i) => {
      (this.columns[i] as Float32Array)[slot] = point[metric];
    });
    if (this.size < this.capacity) this.size += 1;
    else this.head = (this.head + 1) % this.capacity;
    if (point.timeMs > this.lastSeenMs) this.lastSeenMs = point.timeMs;
    return true;
  }

  /** i-th oldest sample's time (0 = oldest). */
  timeAt(i: number): number {
    return this.times[(this.head + i) % this.capacity] ?? 0;
  }

  valueAt(metric: number, i: number): number {
    return (this.columns[metric] as Float32Array)[(this.head + i) % this.capacity] ?? 0;
  }

  /** Records a history event (time-ordered; the oldest go first when the capacity is reached). */
  addEvent(event: HistoryEvent): void {
    let i = this.events.length;
    while (i > 0 && (this.events[i - 1] as HistoryEvent).timeMs > event.timeMs) i -= 1;
    this.events.splice(i, 0, event);
    if (this.events.length > this.eventCapacity) this.events.splice(0, this.events.length - this.eventCapacity);
  }

  /** Time of the newest `kind` event at or before `atMs`; undefined if none. */
  latest(kind: HistoryKind, atMs: number): number | undefined {
    for (let i = this.events.length - 1; i >= 0; i -= 1) {
      const e = this.events[i] as HistoryEvent;
      if (e.kind === kind && e.timeMs <= atMs) return e.timeMs;
    }
    return undefined;
  }

  /** Number of `kind` events with fromMs < time <= toMs. */
  count(kind: HistoryKind, fromMs: number, toMs: number): number {
    let n = 0;
    for (const e of this.events) if (e.kind === kind && e.timeMs > fromMs && e.timeMs <= toMs) n += 1;
    return n;
  }

  history(): readonly HistoryEvent[] {
    return this.events;
  }

  /** Replaces the active notices with those of the newest sample, keeping when each was first seen. */
  setSignals(signals: readonly Omit<ActiveSignal, 'firstSeenMs'>[], observedMs: number): ActiveSignal[] {
    const fresh: ActiveSignal[] = [];
    const next = signals.map((s) => {
      const before = this.signals.find((o) => o.source === s.source && o.kind === s.kind && o.detail === s.detail);
      if (before === undefined) {
        const created = { ...s, firstSeenMs: observedMs };
        fresh.push(created);
        return created;
      }
      return { ...s, firstSeenMs: before.firstSeenMs };
    });
    this.signals = next;
    return fresh;
  }

  activeSignals(): readonly ActiveSignal[] {
    return this.signals;
  }

  /** Bytes held by this window's arrays (for the memory-per-node figure). */
  arrayBytes(): number {
    return this.times.byteLength + this.columns.reduce((sum, c) => sum + c.byteLength, 0);
  }
}
