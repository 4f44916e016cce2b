import type { Clock } from '../../../common/clock';

/** Wall milliseconds per named step of one dump, hand-over or restore, in the order the steps first ran. */
export type StepsMs = Readonly<Record<string, number>>;

/**
 * Where one checkpoint operation's wall time went, step by step: logged with it, and printed by the
 * benchmarks, so that a slow freeze says which step made it slow. Steps that overlap are each charged
 * their own wall time.
 */
export class StepTimes {
  private readonly steps: Record<string, number> = {};

  constructor(private readonly clock: Clock) {}

  async time<T>(step: string, work: () => Promise<T>): Promise<T> {
    const started = this.clock.now();
    try {
      return await work();
    } finally {
      this.steps[step] = (this.steps[step] ?? 0) + this.clock.now() - started;
    }
  }

  get ms(): StepsMs {
    return { ...this.steps };
  }
}
