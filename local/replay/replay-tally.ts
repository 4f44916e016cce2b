/** One pre-emption of a trace node that had a local node behind it, as the replay observed it. */
export interface ObservedPreemption {
  readonly node: string;
  /** Trace time of the pre-emption. */
  readonly t: number;
  /** Chained tasks whose migration off the node finished between its join and its pre-emption. */
  readonly movedBefore: number;
  /** Chained tasks still on the node when it went, and where each was cold-started (none: lost). */
  readonly caught: readonly string[];
  readonly restarted: number;
}

/** A drain the controller started (trace time, trace node name). */
export interface ObservedDrain {
  readonly node: string;
  readonly t: number;
}

export interface ReplayCounts {
  /** "held-out 40 %" or "whole trace". */
  readonly scope: string;
  readonly preemptions: number;
  readonly virtualPreemptions: number;
  readonly preemptionsWithChainedTasks: number;
  readonly movedBeforePreemption: number;
  readonly caught: number;
  readonly caughtColdStarted: number;
  readonly caughtLost: number;
  readonly drains: number;
  readonly falseDrains: number;
  /** Drains whose horizon reaches past the trace's end: neither true nor false. */
  readonly drainsUndecided: number;
}

export interface TallyOptions {
  /** Count only what happens at or after this trace time (the held-out part); -Infinity = whole trace. */
  readonly fromMs: number;
  readonly endMs: number;
  /** A drain is false when its node is not pre-empted within this long after it started. */
  readonly horizonMs: number;
  readonly scope: string;
}

/** Counts what a replay pass observed. Pure, so the rules are unit-tested apart from any cluster. */
export function tally(
  preemptions: readonly ObservedPreemption[],
  virtualPreemptions: readonly { readonly t: number }[],
  drains: readonly ObservedDrain[],
  allPreemptionTimes: ReadonlyMap<string, readonly number[]>,
  options: TallyOptions,
): ReplayCounts {
  const counted = preemptions.filter((p) => p.t >= options.fromMs);
  const caught = counted.reduce((n, p) => n + p.caught.length, 0);
  const coldStarted = counted.reduce((n, p) => n + p.restarted, 0);
  let falseDrains = 0;
  let undecided = 0;
  const countedDrains = drains.filter((d) => d.t >= options.fromMs);
  for (const d of countedDrains) {
    const hit = (allPreemptionTimes.get(d.node) ?? []).some((t) => t >= d.t && t <= d.t + options.horizonMs);
    if (hit) continue;
    if (d.t + options.horizonMs > options.endMs) undecided += 1;
    else falseDrains += 1;
  }
  return {
    scope: options.scope,
    preemptions: counted.length,
    virtualPreemptions: virtualPreemptions.filter((p) => p.t >= options.fromMs).length,
    preemptionsWithChainedTasks: counted.filter((p) => p.movedBefore + p.caught.length > 0).length,
    movedBeforePreemption: counted.reduce((n, p) => n + p.movedBefore, 0),
    caught,
    caughtColdStarted: coldStarted,
    caughtLost: caught - coldStarted,
    drains: countedDrains.length,
    falseDrains,
    drainsUndecided: undecided,
  };
}
