import type { Clock } from '../../common/clock';
import { errorCode } from '../../common/errors';
import type { Logger } from '../../common/logging';
import type { MigrationRecord } from '../migration/migration-record';
import type { ControllerEventLog } from '../controller/controller-events';
import type { DrainOutcome, PreemptionOutcome } from '../controller/local-controller';
import type { ObservedDrain, ObservedPreemption, PolicyEvent } from './replay-tally';
import { SlotMap } from './slot-map';
import type { ReplayEvent, TraceSchedule } from './trace-schedule';

/** What a replay drives: the local controller (LocalController), by role so unit tests can fake it. */
export interface ReplayController {
  readonly events: ControllerEventLog;
  alias(alias: string, node: string): void;
  unalias(alias: string): void;
  nodeReturned(node: string): Promise<void>;
  preempt(node: string): Promise<PreemptionOutcome>;
  drainNode(node: string, reason: string): Promise<DrainOutcome[]>;
  virtualJoined(name: string): void;
  virtualLeft(name: string): void;
  migrations(): MigrationRecord[];
  tasks(): Readonly<Record<string, { readonly node: string }>>;
}

/** Where interruption notices go in the forecaster pass (the forecaster's telemetry ingest). */
export type NoticeSink = (node: string, tMs: number, deadlineMs: number) => void;

/** When each trace instant is played (ScaledClock): the same mapping every process of the replay reads. */
export interface ReplayTimeline {
  /** The real Unix ms at which trace time `clockMs` (plus traceOffsetMs) is played. */
  realAt(clockMs: number): number;
  /** The trace time (plus traceOffsetMs) played at real Unix ms `realMs`. */
  clockAt(realMs: number): number;
}

export interface ReplayRunnerOptions {
  readonly schedule: TraceSchedule;
  readonly slots: readonly string[];
  readonly timeline: ReplayTimeline;
  /** The reactive baseline: drain a node at its trace notice, and only then. */
  readonly reactive: boolean;
  readonly notices?: NoticeSink;
  /** Controller events carry trace time plus this (see replay-command's epoch shift). @default 0 */
  readonly traceOffsetMs?: number;
}

export interface ReplayObservations {
  readonly preemptions: ObservedPreemption[];
  readonly virtualPreemptions: { readonly node: string; readonly t: number }[];
  readonly drains: ObservedDrain[];
  /** Every trace pre-emption by node (mapped or virtual): what a drain is judged against. */
  readonly preemptionTimes: Map<string, number[]>;
  /** Every trace join by node (mapped or virtual): with the pre-emptions, each node's lifetimes. */
  readonly joinTimes: Map<string, number[]>;
  /** The reactive pass's policy: a drain at every notice, mapped or virtual (the forecaster pass logs its own). */
  readonly policy: PolicyEvent[];
  /** How far behind schedule the replay ran at worst (real ms): pre-emptions and returns take real time. */
  readonly maxLagMs: number;
  virtualJoins: number;
  mappedJoins: number;
  /** Local nodes that did not come back for a join (that trace node ran virtual instead). */
  returnFailures: number;
  /** Pre-emptions whose cold starts failed: their caught tasks count as lost. */
  preemptionErrors: number;
}

/**
 * Plays a trace against the local controller at its event times, compressed by its timeline: joining trace nodes
 * take a free local node (else they are virtual), pre-empted ones take it down. It observes what the
 * pre-emptions catch and which migrations finished in time; it decides nothing itself except, in the
 * reactive pass, to drain at the notice.
 */
export class ReplayRunner {
  private readonly slots: SlotMap;
  private readonly joinedAtReal = new Map<string, number>();
  /** When each node's notice was played (real ms), until the node goes. */
  private readonly noticedAtReal = new Map<string, number>();
  private readonly virtual = new Set<string>();
  private readonly drainsInFlight: Promise<void>[] = [];
  private readonly coldStartsInFlight: Promise<void>[] = [];
  private readonly deadlines = new Map<ReplayEvent, number>();

  constructor(
    private readonly controller: ReplayController,
    private readonly options: ReplayRunnerOptions,
    private readonly realClock: Clock,
    private readonly log: Logger,
  ) {
    this.slots = new SlotMap(options.slots);
    const next = new Map<string, number>();
    for (let i = options.schedule.events.length - 1; i >= 0; i--) {
      const e = options.schedule.events[i];
      if (e === undefined) continue;
      if (e.kind === 'preempted') next.set(e.node, e.t);
      if (e.kind === 'notice') this.deadlines.set(e, next.get(e.node) ?? 0);
    }
  }

  async run(signal?: AbortSignal): Promise<ReplayObservations> {
    const { schedule, timeline } = this.options;
    const offset = this.options.traceOffsetMs ?? 0;
    const obs: ReplayObservations = {
      preemptions: [],
      virtualPreemptions: [],
      drains: [],
      preemptionTimes: new Map(),
      joinTimes: new Map(),
      policy: [],
      maxLagMs: 0,
      virtualJoins: 0,
      mappedJoins: 0,
      returnFailures: 0,
      preemptionErrors: 0,
    };
    let maxLagMs = 0;
    const unsubscribe = this.controller.events.subscribe(({ event }) => {
      if (event.type === 'drain-started')
        obs.drains.push({ node: event.node, t: event.timeMs - (this.options.traceOffsetMs ?? 0) });
    });
    try {
      for (const event of schedule.events) {
        signal?.throwIfAborted();
        const due = timeline.realAt(event.t + offset);
        const wait = due - this.realClock.now();
        if (wait > 0) await this.realClock.sleep(wait, signal);
        else maxLagMs = Math.max(maxLagMs, -wait);
        await this.apply(event, obs);
      }
      await Promise.allSettled([...this.drainsInFlight, ...this.coldStartsInFlight]);
    } finally {
      unsubscribe();
    }
    return { ...obs, maxLagMs };
  }

  private async apply(event: ReplayEvent, obs: ReplayObservations): Promise<void> {
    const { node } = event;
    if (event.kind === 'join') {
      if (this.slots.slotOf(node) !== undefined || this.virtual.has(node)) return;
      // Stamped on the clock its pre-emption will be (see below): a lifetime is measured on one clock.
      obs.joinTimes.set(node, [...(obs.joinTimes.get(node) ?? []), this.stamp(event.t)]);
      const claim = this.slots.claim(node);
      if (claim.slot === undefined) {
        this.virtual.add(node);
        this.controller.virtualJoined(node);
        obs.virtualJoins += 1;
        return;
      }
      this.controller.alias(node, claim.slot);
      try {
        await this.controller.nodeReturned(claim.slot);
      } catch (err) {
        // The trace node still joins the pool (the forecaster counts it), on no local node; the slot stays down.
        this.log.warn({ err, code: errorCode(err), node, slot: claim.slot }, 'local node did not come back');
        this.controller.unalias(node);
        this.slots.release(node);
        this.virtual.add(node);
        this.controller.virtualJoined(node);
        obs.returnFailures += 1;
        obs.virtualJoins += 1;
        return;
      }
      this.joinedAtReal.set(node, this.realClock.now());
      obs.mappedJoins += 1;
      return;
    }
    if (event.kind === 'notice') {
      this.options.notices?.(node, event.t, this.deadlines.get(event) ?? 0);
      if (!this.noticedAtReal.has(node)) this.noticedAtReal.set(node, this.realClock.now());
      if (this.options.reactive) obs.policy.push({ node, t: this.stamp(event.t), action: 'drain', level: 'notice' });
      const slot = this.slots.slotOf(node);
      if (this.options.reactive && slot !== undefined) this.drainAtNotice(node, slot);
      return;
    }
    // Drains are stamped when they happen; when the replay runs behind the trace, so do its pre-emptions, and a
    // drain is judged against when the pre-emption really happened, on the same clock.
    const times = obs.preemptionTimes.get(node) ?? [];
    times.push(this.stamp(event.t));
    obs.preemptionTimes.set(node, times);
    const slot = this.slots.slotOf(node);
    if (slot === undefined) {
      this.noticedAtReal.delete(node);
      this.virtual.delete(node);
      this.controller.virtualLeft(node);
      obs.virtualPreemptions.push({ node, t: event.t });
      return;
    }
    const preemptedAt = this.realClock.now();
    // What is on the node as it goes is what the pre-emption catches, whatever happens to the cold starts.
    const onNode = Object.entries(this.controller.tasks())
      .filter(([, task]) => task.node === slot)
      .map(([key]) => key);
    const moved = this.movedOff(slot, this.joinedAtReal.get(node) ?? 0, preemptedAt);
    // Without a notice, whatever moved moved ahead of the pre-emption.
    const noticedAt = this.noticedAtReal.get(node) ?? preemptedAt;
    const observed = {
      node,
      t: event.t,
      movedBefore: moved.length,
      movedAhead: moved.filter((m) => m.createdAtUnixMs < noticedAt).length,
      caught: onNode,
      restarted: 0,
    };
    obs.preemptions.push(observed);
    // The replay goes on once the node is gone (its node-left told); cold-starting what it caught takes seconds
    // of real time, minutes of trace time, and must not hold up the rest of the trace.
    let stopWatching = (): void => undefined;
    const left = new Promise<void>((resolve) => {
      const off = this.controller.events.subscribe(({ event: e }) => {
        if (e.type === 'node-left' && e.node === node) resolve();
      });
      stopWatching = () => {
        off();
        resolve();
      };
    });
    const preempting = this.controller.preempt(slot).then(
      (outcome) => {
        observed.restarted = Object.keys(outcome.restartedOn).length;
      },
      (err: unknown) => {
        this.log.warn({ err, code: errorCode(err), node, slot }, 'pre-emption did not finish its cold starts');
        obs.preemptionErrors += 1;
      },
    );
    this.coldStartsInFlight.push(preempting);
    await Promise.race([left, preempting]);
    stopWatching();
    this.controller.unalias(node);
    this.slots.release(node);
    this.joinedAtReal.delete(node);
    this.noticedAtReal.delete(node);
  }

  /**
   * When an event of trace time `t` is applied, on the trace's clock: later than `t` when the replay runs behind.
   * Everything the tally compares (joins, notices, drains, decisions, pre-emptions) is stamped on this one clock.
   */
  private stamp(t: number): number {
    return Math.max(t, Math.round(this.traceNow()));
  }

  private traceNow(): number {
    return this.options.timeline.clockAt(this.realClock.now()) - (this.options.traceOffsetMs ?? 0);
  }

  /** Migrations off `slot` that finished while this trace node held it and before it went. */
  private movedOff(slot: string, fromMs: number, toMs: number): MigrationRecord[] {
    return this.controller.migrations().filter((m) => {
      const doneAt = m.stepsAtUnixMs.done ?? m.updatedAtUnixMs;
      return m.source.node === slot && m.step === 'done' && doneAt >= fromMs && doneAt <= toMs;
    });
  }

  private drainAtNotice(node: string, slot: string): void {
    this.drainsInFlight.push(
      this.controller.drainNode(slot, 'interruption notice (reactive baseline)').then(
        (outcomes) => this.log.info({ node, slot, outcomes: outcomes.map((o) => o.outcome) }, 'reactive drain ended'),
        (err: unknown) => this.log.warn({ err, code: errorCode(err), node, slot }, 'reactive drain failed'),
      ),
    );
  }
}
