import type { Clock } from './clock';

export interface ScaledClockOptions {
  /** How many clock milliseconds pass per real millisecond (a replay's speed-up). Must be > 0. */
  readonly scale: number;
  /** The clock's reading at the real instant `realOriginMs`. */
  readonly originMs: number;
  /** The real Unix time (ms) at which the clock reads `originMs`. */
  readonly realOriginMs: number;
}

/**
 * A clock that runs `scale` times faster than real time from a chosen origin: a trace replayed at speed S is
 * read in trace time (origin + (real - realOrigin) * S), and a sleep of d trace-ms takes d / S real ms. Every
 * process of one replay builds it from the same three numbers, so all of them read the same trace time.
 */
export class ScaledClock implements Clock {
  constructor(
    private readonly options: ScaledClockOptions,
    private readonly real: Clock,
  ) {
    if (!(options.scale > 0) || !Number.isFinite(options.scale))
      throw new RangeError('scale must be a positive number');
  }

  now(): number {
    return Math.round(this.options.originMs + (this.real.now() - this.options.realOriginMs) * this.options.scale);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.real.sleep(Math.max(0, ms / this.options.scale), signal);
  }
}
