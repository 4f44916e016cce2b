import type { HistoryKind } from './node-window';

interface PoolEvent {
  readonly timeMs: number;
  readonly kind: HistoryKind;
}

/** Events that end a node's life in its pool (forecaster/training/README.md: "alive"). */
const ENDS_LIFE: ReadonlySet<HistoryKind> = new Set(['preempted', 'drain-complete', 'leave']);

/**
 * One node pool's history as the pool-scope features read it: the alive set, every node's events within the
 * longest pool window, the newest event of each kind, and the steps of the alive count.
 */
export class PoolState {
  private readonly alive = new Set<string>();
  private events: PoolEvent[] = [];
  private readonly newest = new Map<HistoryKind, number>();
  /** Alive count after all events at each time; `base` is the count before the first step kept. */
  private steps: { timeMs: number; count: number }[] = [];
  private base = 0;
  /** Bumped on every change, so per-tick caches of pool features know when they are stale. */
  version = 0;

  constructor(private readonly retainMs: number) {}

  isAlive(node: string): boolean {
    return this.alive.has(node);
  }

  get aliveCount(): number {
    return this.alive.size;
  }

  /** Applies one node event; events are expected in time order (late ones are still counted). */
  apply(node: string, kind: HistoryKind, timeMs: number): void {
    this.version += 1;
    let i = this.events.length;
    while (i > 0 && (this.events[i - 1] as PoolEvent).timeMs > timeMs) i -= 1;
    this.events.splice(i, 0, { timeMs, kind });
    if ((this.newest.get(kind) ?? -Infinity) < timeMs) this.newest.set(kind, timeMs);
    const before = this.alive.size;
    if (kind === 'join') this.alive.add(node);
    else if (ENDS_LIFE.has(kind)) this.alive.delete(node);
    if (this.alive.size !== before || this.steps.length === 0) this.step(timeMs);
  }

  latest(kind: HistoryKind): number | undefined {
    return this.newest.get(kind);
  }

  count(kind: HistoryKind, fromMs: number, toMs: number): number {
    let n = 0;
    for (let i = this.events.length - 1; i >= 0; i -= 1) {
      const e = this.events[i] as PoolEvent;
      if (e.timeMs <= fromMs) break;
      if (e.kind === kind && e.timeMs <= toMs) n += 1;
    }
    return n;
  }

  /** Max alive count over (fromMs, toMs]: the count at fromMs and after every step inside. */
  aliveMax(fromMs: number, toMs: number): number {
    let max = this.base;
    let i = 0;
    for (; i < this.steps.length && (this.steps[i] as { timeMs: number }).timeMs <= fromMs; i += 1) {
      max = (this.steps[i] as { count: number }).count;
    }
    for (; i < this.steps.length; i += 1) {
      const s = this.steps[i] as { timeMs: number; count: number };
      if (s.timeMs > toMs) break;
      if (s.count > max) max = s.count;
    }
    return max;
  }

  /** Forgets what no window can reach any more. */
  prune(nowMs: number): void {
    this.version += 1;
    const cutoff = nowMs - this.retainMs;
    const firstKept = this.events.findIndex((e) => e.timeMs > cutoff);
    this.events = firstKept < 0 ? [] : this.events.slice(firstKept);
    // Steps at or before the cutoff collapse into the base, except the newest of them (the count at the cutoff).
    let k = 0;
    while (k + 1 < this.steps.length && (this.steps[k + 1] as { timeMs: number }).timeMs <= cutoff) {
      this.base = (this.steps[k] as { count: number }).count;
      k += 1;
    }
    if (k > 0) this.steps = this.steps.slice(k);
  }

  private step(timeMs: number): void {
    const last = this.steps[this.steps.length - 1];
    if (last !== undefined && last.timeMs === timeMs) {
      last.count = this.alive.size;
      return;
    }
    if (last !== undefined && last.timeMs > timeMs) {
      // A late event: the recorded steps after it are approximations; keep the order by re-sorting.
      this.steps.push({ timeMs, count: this.alive.size });
      this.steps.sort((a, b) => a.timeMs - b.timeMs);
      return;
    }
    this.steps.push({ timeMs, count: this.alive.size });
  }
}
