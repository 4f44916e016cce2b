import { ruleFor } from '../config';
import type { PolicyConfig, PolicyRule } from '../config';
import type { Decision, DecisionAction, DecisionLevel } from './decision';
import { thresholdsFor, type ServingPolicy, type Thresholds } from './policy-thresholds';

/** healthy → fenced (reserving, pre-staging) → draining; fenced → healthy again when risk falls (undo). */
export type NodePhase = 'healthy' | 'fenced' | 'draining';

/** The cloud's own announcement that a node goes away, as the telemetry agent saw it. */
export interface Notice {
  readonly source: string;
  readonly kind: string;
  /** Absolute time the node goes; 0 = unannounced. */
  readonly deadlineMs: number;
}

export interface NodeRisk {
  readonly node: string;
  readonly pool: string;
  readonly nodeClass: string;
  readonly risk: number;
  readonly notices: readonly Notice[];
}

export interface NodePolicyState {
  readonly phase: NodePhase;
  readonly sinceMs: number;
  readonly cooldownUntilMs: number;
  /** Fence, reservation and pre-staging have all completed. */
  readonly prepared: boolean;
  readonly risk: number;
  readonly decisions: readonly Decision[];
}

interface MutableState {
  phase: NodePhase;
  sinceMs: number;
  cooldownUntilMs: number;
  prepared: boolean;
  risk: number;
  pool: string;
  nodeClass: string;
  decisions: Decision[];
  /** Reasons of the last hold, so an unchanged hold is not recorded again every tick. */
  lastHold: string;
  /** The notice (source/kind) the node was last drained for: one drain per notice. */
  drainedFor: string;
}

/** Notice kinds that mean the node is leaving (as opposed to advice such as a rebalance recommendation). */
const TERMINAL_NOTICES = new Set([
  'spot-interruption',
  'preempted',
  'maintenance-terminate',
  'preempt',
  'terminate',
  'scheduled-maintenance',
]);

export function isTerminalNotice(kind: string): boolean {
  return TERMINAL_NOTICES.has(kind);
}

const fmt = (x: number): string => x.toFixed(3);

/** What a decision records beside its action and reasons. */
interface Acted {
  readonly level?: DecisionLevel;
  readonly threshold?: number;
  /** Where the thresholds came from. */
  readonly source?: string;
  readonly deadlineMs?: number;
}

export interface DrainPolicyOptions {
  /**
   * The serving model's card, read on every tick so a promotion swaps its thresholds at once; undefined before
   * a model serves. @default none: the config's thresholds everywhere
   */
  readonly servingModel?: () => ServingPolicy | undefined;
  /** Decisions kept per node for the risk API. @default 20 */
  readonly historyPerNode?: number;
}

/**
 * The decision rules, two levels below the notice. At the pre-warn threshold a node is fenced (ineligible,
 * capacity reserved, checkpoints pre-staged: cheap, and undone when risk falls below the exit threshold); a
 * fenced node whose risk is at or above the drain threshold is drained once its fence is prepared and has held
 * for `drainAfter`. The thresholds come from the serving model's card unless the operator's config sets them
 * for the pool or class (policy-thresholds.ts). A cooldown follows every undo or drain, and a budget per pool (at
 * most `maxConcurrentDrains` nodes fenced or draining, never fewer than `minHealthyNodes` schedulable nodes
 * left) keeps somewhere for chained tasks to go. A terminal interruption notice drains at once, whatever the
 * budget or the thresholds: the node leaves either way. Pure state machine: the caller carries decisions out
 * and reports back.
 */
export class DrainPolicy {
  private readonly states = new Map<string, MutableState>();
  private nextId = 1;
  private readonly historyPerNode: number;

  constructor(
    private readonly config: PolicyConfig,
    private readonly options: DrainPolicyOptions = {},
  ) {
    this.historyPerNode = options.historyPerNode ?? 20;
  }

  /** The levels that apply to a node of this pool and class now. */
  thresholds(pool: string, nodeClass: string): Thresholds {
    return thresholdsFor(ruleFor(this.config, pool, nodeClass), this.options.servingModel?.());
  }

  /** The levels in force for the defaults and each configured pool and class (logged when the model changes). */
  describe(): Record<string, Thresholds> {
    const model = this.options.servingModel?.();
    const out: Record<string, Thresholds> = { defaults: thresholdsFor(this.config.defaults, model) };
    for (const [name, rule] of Object.entries(this.config.pools)) out[`pool ${name}`] = thresholdsFor(rule, model);
    for (const [name, rule] of Object.entries(this.config.classes)) out[`class ${name}`] = thresholdsFor(rule, model);
    return out;
  }

  /** One tick: every tracked node's current risk in, the decisions that change something (or hold) out. */
  evaluate(risks: readonly NodeRisk[], nowMs: number): Decision[] {
    const decisions: Decision[] = [];
    const seen = new Set<string>();
    const ordered = [...risks].sort((a, b) => b.risk - a.risk);
    const pools = new Map<string, { total: number; active: number }>();
    for (const r of ordered) {
      seen.add(r.node);
      const state = this.stateOf(r, nowMs);
      const pool = pools.get(r.pool) ?? { total: 0, active: 0 };
      pool.total += 1;
      if (state.phase !== 'healthy') pool.active += 1;
      pools.set(r.pool, pool);
    }
    for (const [node, state] of this.states) {
      // Nodes without telemetry this tick still hold budget while fenced or draining.
      if (seen.has(node) || state.phase === 'healthy') continue;
      const pool = pools.get(state.pool) ?? { total: 0, active: 0 };
      pool.total += 1;
      pool.active += 1;
      pools.set(state.pool, pool);
    }

    for (const r of ordered) {
      const state = this.stateOf(r, nowMs);
      state.risk = r.risk;
      const rule = ruleFor(this.config, r.pool, r.nodeClass);
      const budget = pools.get(r.pool) ?? { total: 0, active: 0 };
      const decision = this.decide(r, state, rule, budget, nowMs);
      if (decision !== undefined) decisions.push(decision);
    }
    return decisions;
  }

  private decide(
    r: NodeRisk,
    state: MutableState,
    rule: PolicyRule,
    budget: { total: number; active: number },
    nowMs: number,
  ): Decision | undefined {
    if (state.phase === 'draining') return undefined;
    const notice = r.notices.find((n) => TERMINAL_NOTICES.has(n.kind));
    if (notice !== undefined) {
      // Nomad leaves a drained node ineligible: a second drain for the same notice would only repeat the first
      // (and undo an operator's cancel), once per tick for as long as the node lingers.
      const key = `${notice.source}/${notice.kind}`;
      if (state.drainedFor === key) return undefined;
      state.drainedFor = key;
      const left = notice.deadlineMs > 0 ? Math.max(0, notice.deadlineMs - nowMs) : rule.drainDeadlineMs;
      const reasons = [
        `interruption notice from ${notice.source}: ${notice.kind}` +
          (notice.deadlineMs > 0 ? ` at ${new Date(notice.deadlineMs).toISOString()}` : ''),
        'a node that is leaving is drained whatever the budget',
      ];
      if (state.phase === 'healthy') budget.active += 1;
      return this.transition(r, state, 'drain', reasons, nowMs, {
        level: 'notice',
        deadlineMs: Math.min(rule.drainDeadlineMs, left),
      });
    }

    const t = thresholdsFor(rule, this.options.servingModel?.());
    const from = `thresholds from ${t.source}`;
    if (state.phase === 'fenced') {
      if (r.risk < t.exit) {
        budget.active -= 1;
        return this.transition(
          r,
          state,
          'undo',
          [`risk ${fmt(r.risk)} fell below exit threshold ${fmt(t.exit)} before the drain started`, from],
          nowMs,
          { level: 'exit', source: t.source, threshold: t.exit },
        );
      }
      const fencedForMs = nowMs - state.sinceMs;
      if (r.risk >= t.drain && state.prepared && fencedForMs >= rule.drainAfterMs) {
        return this.transition(
          r,
          state,
          'drain',
          [
            `risk ${fmt(r.risk)} >= drain threshold ${fmt(t.drain)} after ${Math.round(fencedForMs / 1000)} s fenced`,
            'capacity reserved and checkpoints pre-staged',
            from,
          ],
          nowMs,
          { level: 'drain', source: t.source, threshold: t.drain, deadlineMs: rule.drainDeadlineMs },
        );
      }
      return undefined;
    }

    if (r.risk < t.prewarn) {
      state.lastHold = '';
      return undefined;
    }
    const above = `risk ${fmt(r.risk)} >= pre-warn threshold ${fmt(t.prewarn)} (pool ${r.pool || '-'}, class ${r.nodeClass || '-'})`;
    const acted: Acted = { level: 'prewarn', source: t.source, threshold: t.prewarn };
    if (nowMs < state.cooldownUntilMs) {
      return this.hold(
        r,
        state,
        [above, `cooling down until ${new Date(state.cooldownUntilMs).toISOString()}`, from],
        nowMs,
        acted,
      );
    }
    if (budget.active >= this.config.maxConcurrentDrains) {
      return this.hold(
        r,
        state,
        [
          above,
          `drain budget spent: ${budget.active} of ${this.config.maxConcurrentDrains} nodes in the pool fenced or draining`,
          from,
        ],
        nowMs,
        acted,
      );
    }
    const schedulableAfter = budget.total - budget.active - 1;
    if (schedulableAfter < this.config.minHealthyNodes) {
      return this.hold(
        r,
        state,
        [
          above,
          `fencing would leave ${schedulableAfter} schedulable nodes in the pool, minimum ${this.config.minHealthyNodes}`,
          from,
        ],
        nowMs,
        acted,
      );
    }
    budget.active += 1;
    return this.transition(r, state, 'fence', [above, from], nowMs, acted);
  }

  /** The actions for a fence all completed: the node may be drained once `drainAfter` has passed. */
  markPrepared(node: string): void {
    const state = this.states.get(node);
    if (state !== undefined && state.phase === 'fenced') state.prepared = true;
  }

  /**
   * A fence or our drain could not be completed (no capacity to reserve, scheduler refused): back to healthy,
   * cooling down; a notice's drain is decided again on the next tick.
   */
  abandon(node: string, reason: string, nowMs: number): Decision | undefined {
    const state = this.states.get(node);
    if (state === undefined || state.phase === 'healthy') return undefined;
    state.drainedFor = '';
    return this.transition(
      { node, pool: state.pool, nodeClass: state.nodeClass, risk: state.risk, notices: [] },
      state,
      'undo',
      [reason],
      nowMs,
    );
  }

  /** The scheduler reports a drain on this node (ours or an operator's): it counts against the budget. */
  observeDrain(node: string, pool: string, nodeClass: string, nowMs: number): void {
    const state = this.stateOf({ node, pool, nodeClass }, nowMs);
    if (state.phase !== 'draining') {
      state.phase = 'draining';
      state.sinceMs = nowMs;
    }
  }

  /** The node's drain finished, or the node left: it no longer holds budget. */
  observeDrainEnded(node: string, nowMs: number): void {
    const state = this.states.get(node);
    if (state === undefined) return;
    const rule = ruleFor(this.config, state.pool, state.nodeClass);
    state.phase = 'healthy';
    state.prepared = false;
    state.sinceMs = nowMs;
    state.cooldownUntilMs = nowMs + rule.cooldownMs;
  }

  forget(node: string): void {
    this.states.delete(node);
  }

  state(node: string): NodePolicyState | undefined {
    const s = this.states.get(node);
    return s === undefined ? undefined : { ...s, decisions: [...s.decisions] };
  }

  nodes(): string[] {
    return [...this.states.keys()];
  }

  countByPhase(): Record<NodePhase, number> {
    const counts: Record<NodePhase, number> = { healthy: 0, fenced: 0, draining: 0 };
    for (const s of this.states.values()) counts[s.phase] += 1;
    return counts;
  }

  private stateOf(r: Pick<NodeRisk, 'node' | 'pool' | 'nodeClass'>, nowMs: number): MutableState {
    let state = this.states.get(r.node);
    if (state === undefined) {
      state = {
        phase: 'healthy',
        sinceMs: nowMs,
        cooldownUntilMs: 0,
        prepared: false,
        risk: 0,
        pool: r.pool,
        nodeClass: r.nodeClass,
        decisions: [],
        lastHold: '',
        drainedFor: '',
      };
      this.states.set(r.node, state);
    }
    state.pool = r.pool;
    state.nodeClass = r.nodeClass;
    return state;
  }

  private hold(r: NodeRisk, state: MutableState, reasons: string[], nowMs: number, acted: Acted): Decision | undefined {
    // The same hold on every tick would flood the audit trail; a hold is recorded when its kind of reason changes.
    const key = (reasons[1] ?? '').replace(/[\d.:TZ-]+/g, '#');
    if (key === state.lastHold) return undefined;
    state.lastHold = key;
    return this.record(r, state, 'hold', reasons, nowMs, acted);
  }

  private transition(
    r: NodeRisk,
    state: MutableState,
    action: Exclude<DecisionAction, 'hold'>,
    reasons: string[],
    nowMs: number,
    acted: Acted = {},
  ): Decision {
    const rule = ruleFor(this.config, r.pool, r.nodeClass);
    state.lastHold = '';
    if (action === 'fence') {
      state.phase = 'fenced';
      state.prepared = false;
    } else if (action === 'drain') {
      state.phase = 'draining';
    } else {
      state.phase = 'healthy';
      state.prepared = false;
      state.cooldownUntilMs = nowMs + rule.cooldownMs;
    }
    state.sinceMs = nowMs;
    return this.record(r, state, action, reasons, nowMs, acted);
  }

  private record(
    r: NodeRisk,
    state: MutableState,
    action: DecisionAction,
    reasons: string[],
    nowMs: number,
    acted: Acted,
  ): Decision {
    const { deadlineMs, level, threshold, source } = acted;
    const decision: Decision = Object.freeze({
      id: this.nextId++,
      node: r.node,
      pool: r.pool,
      nodeClass: r.nodeClass,
      atMs: nowMs,
      action,
      risk: r.risk,
      reasons: Object.freeze([...reasons]),
      ...(deadlineMs === undefined ? {} : { deadlineMs }),
      ...(level === undefined ? {} : { level }),
      ...(threshold === undefined ? {} : { threshold }),
      ...(source === undefined ? {} : { thresholdSource: source }),
    });
    state.decisions.push(decision);
    if (state.decisions.length > this.historyPerNode) state.decisions.shift();
    return decision;
  }
}
