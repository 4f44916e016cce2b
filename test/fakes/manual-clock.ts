import type { Clock } from '../../common/clock';

/**
 * Time that moves only when the test calls `advance`; a sleep resolves once time reaches its deadline, so loops
 * built on `Clock.sleep` (ticks, the retrain timer) run exactly as often as the test lets them.
 */
export class ManualClock implements Clock {
  private readonly sleepers = new Set<{ due: number; wake: () => void }>();

  constructor(private current = 1_700_000_000_000) {}

  now(): number {
    return this.current;
  }

  /** Sleeps not yet due. */
  get waiting(): number {
    return this.sleepers.size;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
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
