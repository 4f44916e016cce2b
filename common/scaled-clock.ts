import type { Clock } from './clock';

/** A stretch of clock time played at its own scale. */
export interface ClockSpan {
  readonly fromMs: number;
  readonly toMs: number;
  readonly scale: number;
}

export interface ScaledClockOptions {
  /** How many clock milliseconds pass per real millisecond (a replay's speed-up). Must be > 0. */
  readonly scale: number;
  /** The clock's reading at the real instant `realOriginMs`. */
  readonly originMs: number;
  /** The real Unix time (ms) at which the clock reads `originMs`. */
  readonly realOriginMs: number;
  /**
   * Stretches after the origin played at their own scale instead (a replay slows down where migrations must
   * fit in real time). Sorted by time and disjoint.
   */
  readonly spans?: readonly ClockSpan[];
}

interface Knot {
  readonly clockMs: number;
  readonly realMs: number;
  /** Scale from this knot to the next. */
  readonly scale: number;
}

function checkScale(scale: number, what: string): void {
  if (!(scale > 0) || !Number.isFinite(scale)) throw new RangeError(`${what} must be a positive number`);
}

/**
 * A clock that runs faster than real time from a chosen origin, piecewise linearly: a trace replayed at speed S
 * is read in trace time (origin + (real - realOrigin) * S), except inside its spans, and a sleep of d trace-ms
 * takes as long as those d ms are played. Every process of one replay builds it from the same options, so all
 * of them read the same trace time.
 */
export class ScaledClock implements Clock {
  private readonly knots: readonly Knot[];

  constructor(
    options: ScaledClockOptions,
    private readonly real: Clock,
  ) {
    checkScale(options.scale, 'scale');
    const knots: Knot[] = [{ clockMs: options.originMs, realMs: options.realOriginMs, scale: options.scale }];
    let last = knots[0] as Knot;
    for (const span of options.spans ?? []) {
      checkScale(span.scale, 'a span scale');
      if (!(span.toMs > span.fromMs)) throw new RangeError('a span must end after it starts');
      if (span.fromMs < last.clockMs) throw new RangeError('spans must be sorted, disjoint and after the origin');
      const start = { clockMs: span.fromMs, realMs: this.realFrom(last, span.fromMs), scale: span.scale };
      const end = { clockMs: span.toMs, realMs: this.realFrom(start, span.toMs), scale: options.scale };
      knots.push(start, end);
      last = end;
    }
    this.knots = knots;
  }

  now(): number {
    return Math.round(this.clockAt(this.real.now()));
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    const now = this.real.now();
    return this.real.sleep(Math.max(0, this.realAt(this.clockAt(now) + ms) - now), signal);
  }

  /** The clock's reading at real Unix ms `realMs`. */
  clockAt(realMs: number): number {
    const knot = this.knotBy((k) => k.realMs <= realMs);
    return knot.clockMs + (realMs - knot.realMs) * knot.scale;
  }

  /** The real Unix ms at which the clock reads `clockMs`. */
  realAt(clockMs: number): number {
    return this.realFrom(
      this.knotBy((k) => k.clockMs <= clockMs),
      clockMs,
    );
  }

  private realFrom(knot: Knot, clockMs: number): number {
    return knot.realMs + (clockMs - knot.clockMs) / knot.scale;
  }

  /** The latest knot satisfying `at` (before the origin, the origin's scale extends backwards). */
  private knotBy(at: (k: Knot) => boolean): Knot {
    let found = this.knots[0] as Knot;
    for (const k of this.knots) {
      if (!at(k)) break;
      found = k;
    }
    return found;
  }
}
