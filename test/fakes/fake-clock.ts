import type { Clock } from '../../common/clock';

export interface FakeClockOptions {
  /**
   * What a sleep does. `advances` (default): it moves time by its length and resolves, so code that waits runs
   * straight through. `waits`: it resolves only once the test's `advance` reaches its deadline, so loops built on
   * `Clock.sleep` (ticks, the retrain timer) run exactly as often as the test lets them.
   */
  readonly sleep?: 'advances' | 'waits';
}

/** Time that moves only when the test (or, by default, a sleep) moves it: the one fake of the Clock boundary. */
export class FakeClock implements Clock {
  /** The length of every sleep asked for, in order (a backoff's delays). */
  readonly sleeps: number[] = [];
  private readonly sleepers = new Set<{ due: number; wake: () => void }>();

  constructor(
    private current = 1_700_000_000_000,
    private readonly options: FakeClockOptions = {},
  ) {}

  now(): number {
    return this.current;
  }

  /** Sleeps not yet due (with `sleep: 'waits'`). */
  get waiting(): number {
    return this.sleepers.size;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    if (this.options.sleep !== 'waits') {
      this.advance(ms);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(new Error('aborted'));
        return;
      }
      const sleeper = {
        due: this.current + ms,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.sleepers.delete(sleeper);
        reject(new Error('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.sleepers.add(sleeper);
    });
  }

  advance(ms: number): void {
    this.current += ms;
    for (const s of [...this.sleepers]) {
      if (s.due <= this.current) {
        this.sleepers.delete(s);
        s.wake();
      }
    }
  }
}
