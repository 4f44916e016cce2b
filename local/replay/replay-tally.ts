/** One pre-emption of a trace node that had a local node behind it, as the replay observed it. */
export interface ObservedPreemption {
  readonly node: string;
  /** Trace time of the pre-emption. */
  readonly t: number;
  /** Chained tasks whose migration off the node finished between its join and its pre-emption. */
  readonly movedBefore: number;
  /** Of those, the moves that started before the node's interruption notice: time the notice did not give. */
  readonly movedAhead: number;
  /** Chained tasks still on the node when it went, and where each was cold-started (none: lost). */
  readonly caught: readonly string[];
  readonly restarted: number;
}

/** A drain the controller started (trace time, trace node name). */
export interface ObservedDrain {
  readonly node: string;
  readonly t: number;
}

/**
 * One decision of the pass's policy, in trace time: the forecaster's (from its decision log) or, in the reactive
 * pass, the drain at each notice. Kept for every trace node, local or virtual, as the policy made them.
 */
export interface PolicyEvent {
  readonly node: string;
  readonly t: number;
  readonly action: 'fence' | 'drain' | 'undo';
  /** The decision's level (notice, prewarn, drain, exit); absent on an undo after a failed action. */
  readonly level?: string;
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
  /** Of movedBeforePreemption: moves started before the node's notice (warned ahead) and after it (caught). */
  readonly movedBeforeNotice: number;
  readonly movedAfterNotice: number;
  /** Chained tasks on their node when it went: their state is lost, cold-started or not (= caught). */
  readonly lost: number;
  /** The two-level policy's pre-warns (fences), and those undone when risk fell below the exit level. */
  readonly prewarns: number;
  readonly prewarnsUndone: number;
  /** Drains decided at the drain level (before any notice), of the policy's drains of every trace node. */
  readonly predictiveDrains: number;
  /** Node-time fenced or draining (from a fence or drain to its undo or the node's end), every trace node. */
  readonly fencedNodeMs: number;
  /** Node-time of every trace node, join to pre-emption or the trace's end: what fencedNodeMs is a share of. */
  readonly nodeMs: number;
}

export interface TallyOptions {
  /** Count only what happens at or after this trace time (the held-out part); -Infinity = whole trace. */
  readonly fromMs: number;
  readonly endMs: number;
  /** A drain is false when its node is not pre-empted within this long after it started. */
  readonly horizonMs: number;
  readonly scope: string;
}

/** What a pass observed, as `tally` reads it. */
export interface TallyInput {
  readonly preemptions: readonly ObservedPreemption[];
  readonly virtualPreemptions: readonly { readonly t: number }[];
  readonly drains: readonly ObservedDrain[];
  /** Every trace pre-emption by node (mapped or virtual). */
  readonly preemptionTimes: ReadonlyMap<string, readonly number[]>;
  /** The policy's decisions, any order. */
  readonly policy: readonly PolicyEvent[];
  /** Each trace node's joins (trace time): with its pre-emptions, its lifetimes. */
  readonly joinTimes: ReadonlyMap<string, readonly number[]>;
}

/** Counts what a replay pass observed. Pure, so the rules are unit-tested apart from any cluster. */
export function tally(input: TallyInput, options: TallyOptions): ReplayCounts {
  const { preemptions, virtualPreemptions, drains, preemptionTimes: allPreemptionTimes } = input;
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
    movedBeforeNotice: counted.reduce((n, p) => n + p.movedAhead, 0),
    movedAfterNotice: counted.reduce((n, p) => n + p.movedBefore - p.movedAhead, 0),
    lost: caught,
    ...tallyPolicy(input, options),
  };
}

/** A node's lifetimes: each join to the pre-emption after it, else to the trace's end. */
function lifetimes(joins: readonly number[], preemptions: readonly number[], endMs: number): [number, number][] {
  return [...joins]
    .sort((a, b) => a - b)
    .map((from) => [from, Math.min(...preemptions.filter((t) => t >= from), endMs)]);
}

const overlap = (from: number, to: number, options: TallyOptions): number =>
  Math.max(0, Math.min(to, options.endMs) - Math.max(from, options.fromMs));

/**
 * The policy's side: pre-warns, how they ended, and node-time fenced or draining. A node is out of service from
 * its fence (or a drain straight from healthy) until an undo, or until it goes (its next pre-emption; the trace's
 * end when it never does).
 */
function tallyPolicy(
  input: TallyInput,
  options: TallyOptions,
): Pick<ReplayCounts, 'prewarns' | 'prewarnsUndone' | 'predictiveDrains' | 'fencedNodeMs' | 'nodeMs'> {
  const counted = input.policy.filter((e) => e.t >= options.fromMs);
  const byNode = new Map<string, PolicyEvent[]>();
  for (const e of input.policy) byNode.set(e.node, [...(byNode.get(e.node) ?? []), e]);
  let fencedNodeMs = 0;
  let prewarnsUndone = 0;
  for (const [node, events] of byNode) {
    const gone = input.preemptionTimes.get(node) ?? [];
    // The instant the node went, at or after `from`, but not after `until`.
    const wentBetween = (from: number, until: number): number | undefined => gone.find((t) => t >= from && t <= until);
    let since: number | undefined;
    for (const e of [...events].sort((a, b) => a.t - b.t)) {
      const went = since === undefined ? undefined : wentBetween(since, e.t);
      if (since !== undefined && went !== undefined) {
        fencedNodeMs += overlap(since, went, options);
        since = undefined;
      }
      if (e.action !== 'undo') {
        since ??= e.t;
        continue;
      }
      if (since === undefined) continue;
      fencedNodeMs += overlap(since, e.t, options);
      if (e.level === 'exit' && e.t >= options.fromMs) prewarnsUndone += 1;
      since = undefined;
    }
    if (since !== undefined) fencedNodeMs += overlap(since, wentBetween(since, Infinity) ?? options.endMs, options);
  }
  let nodeMs = 0;
  for (const [node, joins] of input.joinTimes) {
    for (const [from, to] of lifetimes(joins, input.preemptionTimes.get(node) ?? [], options.endMs))
      nodeMs += overlap(from, to, options);
  }
  return {
    prewarns: counted.filter((e) => e.action === 'fence').length,
    prewarnsUndone,
    predictiveDrains: counted.filter((e) => e.action === 'drain' && e.level === 'drain').length,
    fencedNodeMs,
    nodeMs,
  };
}
