/**
 * Where a transfer's time goes: busy time and bytes per named stage, summed over every call. Stages that
 * run concurrently (several chunks stored at once) can add up to more than the wall clock; the bench prints
 * them beside it. Off the hot path when no one asks: client, server and store take one only if given.
 */
export class StageTimes {
  private readonly stages = new Map<string, { ns: bigint; bytes: number; calls: number }>();

  /** Runs `fn`, charging its duration (and `bytes`) to `stage`. */
  time<T>(stage: string, bytes: number, fn: () => T): T {
    const started = process.hrtime.bigint();
    try {
      return fn();
    } finally {
      this.add(stage, process.hrtime.bigint() - started, bytes);
    }
  }

  /** Awaits `fn`, charging the wait (and `bytes`) to `stage`. */
  async timeAsync<T>(stage: string, bytes: number, fn: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    try {
      return await fn();
    } finally {
      this.add(stage, process.hrtime.bigint() - started, bytes);
    }
  }

  add(stage: string, ns: bigint, bytes: number): void {
    const entry = this.stages.get(stage);
    if (entry === undefined) this.stages.set(stage, { ns, bytes, calls: 1 });
    else {
      entry.ns += ns;
      entry.bytes += bytes;
      entry.calls += 1;
    }
  }

  /** Per stage: busy milliseconds, bytes through it and calls; `reset` starts a new account. */
  snapshot(reset = false): Record<string, { ms: number; bytes: number; calls: number }> {
    const out: Record<string, { ms: number; bytes: number; calls: number }> = {};
    for (const [stage, e] of this.stages)
      out[stage] = { ms: +(Number(e.ns) / 1e6).toFixed(1), bytes: e.bytes, calls: e.calls };
    if (reset) this.stages.clear();
    return out;
  }
}

/** Runs `fn` under `stage` when there is an account, as it is otherwise. */
export function timed<T>(stages: StageTimes | undefined, stage: string, bytes: number, fn: () => T): T {
  return stages === undefined ? fn() : stages.time(stage, bytes, fn);
}

export function timedAsync<T>(
  stages: StageTimes | undefined,
  stage: string,
  bytes: number,
  fn: () => Promise<T>,
): Promise<T> {
  return stages === undefined ? fn() : stages.timeAsync(stage, bytes, fn);
}
