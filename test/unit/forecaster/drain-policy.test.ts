import { parseConfig } from '../../../forecaster/src/config';
import { DrainPolicy } from '../../../forecaster/src/policy/drain-policy';
import type { NodeRisk } from '../../../forecaster/src/policy/drain-policy';
import type { ServingPolicy } from '../../../forecaster/src/policy/policy-thresholds';

const MINUTE = 60_000;

function policyWith(policy: Record<string, unknown> = {}): DrainPolicy {
  const config = parseConfig({
    modelDir: '/unused',
    policy: {
      enterThreshold: 0.7,
      exitThreshold: 0.4,
      drainAfter: '2m',
      cooldown: '10m',
      drainDeadline: '15m',
      maxConcurrentDrains: 2,
      minHealthyNodes: 1,
      ...policy,
    },
  });
  return new DrainPolicy(config.policy);
}

const node = (name: string, risk: number, extra: Partial<NodeRisk> = {}): NodeRisk => ({
  node: name,
  pool: 'spot',
  nodeClass: '',
  risk,
  notices: [],
  ...extra,
});

const healthy = (n: number): NodeRisk[] => Array.from({ length: n }, (_, i) => node(`h${i}`, 0.05));

describe('DrainPolicy', () => {
  it('fences at the enter threshold, holds between the thresholds (hysteresis), undoes below the exit threshold', () => {
    const p = policyWith();
    expect(p.evaluate([node('n1', 0.69), ...healthy(3)], 0)).toEqual([]);
    const [fence] = p.evaluate([node('n1', 0.71), ...healthy(3)], 1000);
    expect(fence).toMatchObject({ node: 'n1', action: 'fence', risk: 0.71 });
    expect(fence?.reasons).toEqual([
      'risk 0.710 >= pre-warn threshold 0.700 (pool spot, class -)',
      'thresholds from config policy',
    ]);
    expect(fence).toMatchObject({ level: 'prewarn', threshold: 0.7, thresholdSource: 'config policy' });
    // Between exit and enter: stays fenced, nothing decided.
    expect(p.evaluate([node('n1', 0.5), ...healthy(3)], 2000)).toEqual([]);
    expect(p.state('n1')?.phase).toBe('fenced');
    const [undo] = p.evaluate([node('n1', 0.39), ...healthy(3)], 3000);
    expect(undo).toMatchObject({ action: 'undo', level: 'exit', threshold: 0.4 });
    expect(undo?.reasons[0]).toBe('risk 0.390 fell below exit threshold 0.400 before the drain started');
    expect(p.state('n1')?.phase).toBe('healthy');
  });

  it('drains at the drain level only, once the fence is prepared and drainAfter has passed, with the configured deadline', () => {
    const p = policyWith({ drainThreshold: 0.85 });
    p.evaluate([node('n1', 0.9), ...healthy(3)], 0);
    expect(p.evaluate([node('n1', 0.9), ...healthy(3)], 3 * MINUTE)).toEqual([]);
    p.markPrepared('n1');
    expect(p.evaluate([node('n1', 0.9), ...healthy(3)], MINUTE)).toEqual([]);
    // Pre-warned, below the drain level: the node stays fenced, reserved and pre-staged, and is not drained.
    expect(p.evaluate([node('n1', 0.8), ...healthy(3)], 3 * MINUTE)).toEqual([]);
    expect(p.state('n1')?.phase).toBe('fenced');
    const [drain] = p.evaluate([node('n1', 0.86), ...healthy(3)], 4 * MINUTE);
    expect(drain).toMatchObject({
      action: 'drain',
      deadlineMs: 15 * MINUTE,
      level: 'drain',
      threshold: 0.85,
      thresholdSource: 'config policy',
    });
    expect(drain?.reasons).toEqual([
      'risk 0.860 >= drain threshold 0.850 after 240 s fenced',
      'capacity reserved and checkpoints pre-staged',
      'thresholds from config policy',
    ]);
    expect(p.state('n1')?.phase).toBe('draining');
    expect(p.evaluate([node('n1', 0.1), ...healthy(3)], 5 * MINUTE)).toEqual([]);
  });

  it('without a drain threshold, drains at the pre-warn level: one level, as before the two-level policy', () => {
    const p = policyWith();
    p.evaluate([node('n1', 0.9), ...healthy(3)], 0);
    p.markPrepared('n1');
    expect(p.evaluate([node('n1', 0.6), ...healthy(3)], 3 * MINUTE)).toEqual([]);
    expect(p.evaluate([node('n1', 0.7), ...healthy(3)], 4 * MINUTE)[0]).toMatchObject({
      action: 'drain',
      level: 'drain',
      threshold: 0.7,
    });
  });

  it('cools down after an undo: a new crossing within the cooldown is held with its reason, once', () => {
    const p = policyWith();
    p.evaluate([node('n1', 0.9), ...healthy(3)], 0);
    p.evaluate([node('n1', 0.1), ...healthy(3)], MINUTE);
    const [hold] = p.evaluate([node('n1', 0.9), ...healthy(3)], 2 * MINUTE);
    expect(hold).toMatchObject({ action: 'hold', level: 'prewarn', threshold: 0.7 });
    expect(hold?.reasons[1]).toBe(`cooling down until ${new Date(11 * MINUTE).toISOString()}`);
    expect(p.evaluate([node('n1', 0.9), ...healthy(3)], 3 * MINUTE)).toEqual([]);
    expect(p.evaluate([node('n1', 0.9), ...healthy(3)], 11 * MINUTE)[0]).toMatchObject({ action: 'fence' });
  });

  it('spends at most maxConcurrentDrains per pool on the riskiest nodes and holds the rest', () => {
    const p = policyWith({ maxConcurrentDrains: 2, minHealthyNodes: 0 });
    const decisions = p.evaluate([node('a', 0.8), node('b', 0.95), node('c', 0.9), ...healthy(2)], 0);
    expect(decisions.map((d) => [d.node, d.action])).toEqual([
      ['b', 'fence'],
      ['c', 'fence'],
      ['a', 'hold'],
    ]);
    expect(decisions[2]?.reasons[1]).toBe('drain budget spent: 2 of 2 nodes in the pool fenced or draining');
    // Another pool has its own budget.
    expect(p.evaluate([node('x', 0.9, { pool: 'other' }), node('y', 0.1, { pool: 'other' })], 1)[0]).toMatchObject({
      node: 'x',
      action: 'fence',
    });
  });

  it('never leaves a pool with fewer than minHealthyNodes schedulable nodes', () => {
    const p = policyWith({ maxConcurrentDrains: 10, minHealthyNodes: 2 });
    const decisions = p.evaluate([node('a', 0.9), node('b', 0.9), node('c', 0.9), node('d', 0.1)], 0);
    expect(decisions.map((d) => d.action)).toEqual(['fence', 'fence', 'hold']);
    expect(decisions[2]?.reasons[1]).toBe('fencing would leave 1 schedulable nodes in the pool, minimum 2');
  });

  it('drains at once on a terminal interruption notice, whatever the budget, with the notice deadline', () => {
    const p = policyWith({ maxConcurrentDrains: 1, minHealthyNodes: 5 });
    const notice = { source: 'aws-imds', kind: 'spot-interruption', deadlineMs: 120_000 };
    const [drain] = p.evaluate([node('n1', 0.1, { notices: [notice] })], 0);
    expect(drain).toMatchObject({ action: 'drain', deadlineMs: 120_000, level: 'notice' });
    expect(drain?.threshold).toBeUndefined();
    expect(drain?.reasons[0]).toBe(
      `interruption notice from aws-imds: spot-interruption at ${new Date(120_000).toISOString()}`,
    );
    // Advice alone (a rebalance recommendation) is not a notice to drain on.
    const advice = { source: 'aws-imds', kind: 'rebalance-recommendation', deadlineMs: 0 };
    expect(p.evaluate([node('n2', 0.1, { notices: [advice] })], 0)).toEqual([]);
  });

  it('drains once per notice: after that drain ended, the same notice drains the node no more (issue #11)', () => {
    const p = policyWith();
    const notice = { source: 'aws-imds', kind: 'spot-interruption', deadlineMs: 5 * MINUTE };
    const noticed = node('n1', 0.1, { notices: [notice] });
    expect(p.evaluate([noticed, ...healthy(3)], 0).map((d) => d.action)).toEqual(['drain']);
    p.observeDrainEnded('n1', MINUTE);
    expect(p.evaluate([noticed, ...healthy(3)], MINUTE + 1000)).toEqual([]);
    expect(p.evaluate([noticed, ...healthy(3)], 2 * MINUTE)).toEqual([]);
    expect(p.state('n1')?.decisions.map((d) => d.action)).toEqual(['drain']);
    // Another kind of notice is news.
    const maintenance = { source: 'aws-imds', kind: 'scheduled-maintenance', deadlineMs: 0 };
    const [again] = p.evaluate([node('n1', 0.1, { notices: [maintenance] }), ...healthy(3)], 3 * MINUTE);
    expect(again).toMatchObject({ action: 'drain' });
  });

  it("a notice's drain that could not be started is decided again on the next tick (issue #11)", () => {
    const p = policyWith();
    const noticed = node('n1', 0.1, {
      notices: [{ source: 'aws-imds', kind: 'spot-interruption', deadlineMs: 5 * MINUTE }],
    });
    expect(p.evaluate([noticed, ...healthy(3)], 0).map((d) => d.action)).toEqual(['drain']);
    expect(p.abandon('n1', 'drain could not be completed: Permission denied', 10)).toMatchObject({ action: 'undo' });
    expect(p.state('n1')?.phase).toBe('healthy');
    expect(p.evaluate([noticed, ...healthy(3)], 1000).map((d) => d.action)).toEqual(['drain']);
  });

  it('uses the class rule over the pool rule over the defaults', () => {
    const p = policyWith({
      pools: { spot: { enterThreshold: 0.9, exitThreshold: 0.5 } },
      classes: { gpu: { enterThreshold: 0.5, exitThreshold: 0.2 } },
      minHealthyNodes: 0,
    });
    expect(p.evaluate([node('a', 0.8)], 0)).toEqual([]);
    expect(p.evaluate([node('b', 0.6, { nodeClass: 'gpu' })], 0)[0]).toMatchObject({ action: 'fence' });
    expect(p.evaluate([node('c', 0.8, { pool: 'ondemand' })], 0)[0]).toMatchObject({ action: 'fence' });
  });

  it("counts drains the scheduler reports (an operator's) against the budget, and frees them when they end", () => {
    const p = policyWith({ maxConcurrentDrains: 1, minHealthyNodes: 0 });
    p.observeDrain('op', 'spot', '', 0);
    expect(p.evaluate([node('n1', 0.9), node('op', 0.1)], 0)[0]).toMatchObject({ action: 'hold' });
    p.observeDrainEnded('op', 1);
    expect(p.evaluate([node('n1', 0.9), node('op', 0.1)], 2)[0]).toMatchObject({ action: 'fence' });
  });

  it('abandons a fence that could not be completed, recording why, and cools down', () => {
    const p = policyWith({ minHealthyNodes: 0 });
    p.evaluate([node('n1', 0.9)], 0);
    const undo = p.abandon('n1', 'fence could not be completed: no capacity', 10);
    expect(undo).toMatchObject({ action: 'undo', reasons: ['fence could not be completed: no capacity'] });
    expect(p.evaluate([node('n1', 0.9)], 20)[0]).toMatchObject({ action: 'hold' });
  });
});

describe('DrainPolicy thresholds from the serving model card', () => {
  const card = (version: string, prewarnThreshold: number, drainThreshold: number): ServingPolicy => ({
    version,
    policy: {
      prewarnThreshold,
      drainThreshold,
      budget: { maxFencedShare: 0.05, maxFalseDrainsPer100NodeDays: 10 },
      chosenOn: 'test span',
    },
  });

  function cardPolicy(policy: Record<string, unknown> = {}): { p: DrainPolicy; serve: (m: ServingPolicy) => void } {
    let serving: ServingPolicy | undefined = card('v1', 0.3, 0.6);
    const config = parseConfig({
      modelDir: '/unused',
      policy: { drainAfter: '2m', cooldown: '10m', minHealthyNodes: 0, ...policy },
    });
    const p = new DrainPolicy(config.policy, { servingModel: () => serving });
    return { p, serve: (m) => (serving = m) };
  }

  it("uses the card's pre-warn and drain levels where the config sets no threshold, and says so", () => {
    const { p } = cardPolicy();
    expect(p.evaluate([node('n1', 0.29)], 0)).toEqual([]);
    const [fence] = p.evaluate([node('n1', 0.35)], MINUTE);
    expect(fence).toMatchObject({
      action: 'fence',
      level: 'prewarn',
      threshold: 0.3,
      thresholdSource: 'model card v1',
    });
    expect(fence?.reasons).toEqual([
      'risk 0.350 >= pre-warn threshold 0.300 (pool spot, class -)',
      'thresholds from model card v1',
    ]);
    p.markPrepared('n1');
    // Above the exit level (80 % of the card's pre-warn level), below its drain level: held fenced.
    expect(p.evaluate([node('n1', 0.25)], 4 * MINUTE)).toEqual([]);
    const [drain] = p.evaluate([node('n1', 0.6)], 5 * MINUTE);
    expect(drain).toMatchObject({ action: 'drain', level: 'drain', threshold: 0.6 });
    expect(p.thresholds('spot', '')).toEqual({ prewarn: 0.3, exit: 0.3 * 0.8, drain: 0.6, source: 'model card v1' });
  });

  it('undoes a pre-warn below the card exit level', () => {
    const { p } = cardPolicy();
    p.evaluate([node('n1', 0.4)], 0);
    const [undo] = p.evaluate([node('n1', 0.23)], MINUTE);
    expect(undo).toMatchObject({ action: 'undo', level: 'exit', thresholdSource: 'model card v1' });
    expect(undo?.reasons[0]).toBe('risk 0.230 fell below exit threshold 0.240 before the drain started');
  });

  it('swaps to a promoted card at the next evaluation, without a new policy', () => {
    const { p, serve } = cardPolicy();
    p.evaluate([node('n1', 0.4)], 0);
    p.markPrepared('n1');
    expect(p.evaluate([node('n1', 0.5)], 3 * MINUTE)).toEqual([]);
    serve(card('v2', 0.2, 0.45));
    const [drain] = p.evaluate([node('n1', 0.5)], 4 * MINUTE);
    expect(drain).toMatchObject({ action: 'drain', threshold: 0.45, thresholdSource: 'model card v2' });
    // A card without a policy (an older trainer's) leaves the config's defaults.
    serve({ version: 'v3' });
    expect(p.thresholds('spot', '')).toMatchObject({ prewarn: 0.7, drain: 0.7, source: 'defaults' });
  });

  it("lets the operator's config win for the pools and classes where it sets thresholds", () => {
    const { p } = cardPolicy({
      pools: { spot: { enterThreshold: 0.5, exitThreshold: 0.2, drainThreshold: 0.9 } },
      classes: { gpu: { drainThreshold: 0.95 } },
    });
    expect(p.thresholds('spot', '')).toEqual({
      prewarn: 0.5,
      exit: 0.2,
      drain: 0.9,
      source: 'config policy.pools.spot',
    });
    expect(p.thresholds('ondemand', '')).toMatchObject({ prewarn: 0.3, source: 'model card v1' });
    // A class override with one threshold key takes the config's defaults for the others, not the card's.
    expect(p.thresholds('ondemand', 'gpu')).toEqual({
      prewarn: 0.7,
      exit: 0.5,
      drain: 0.95,
      source: 'config policy.classes.gpu',
    });
    expect(p.evaluate([node('a', 0.4)], 0)).toEqual([]);
    expect(p.evaluate([node('b', 0.4, { pool: 'ondemand' })], 0)[0]).toMatchObject({
      action: 'fence',
      thresholdSource: 'model card v1',
    });
    expect(Object.keys(p.describe())).toEqual(['defaults', 'pool spot', 'class gpu']);
  });

  it('drains on a terminal notice whatever the levels', () => {
    const { p } = cardPolicy();
    const notice = { source: 'gcp-metadata', kind: 'preempted', deadlineMs: 30_000 };
    expect(p.evaluate([node('n1', 0, { notices: [notice] })], 0)[0]).toMatchObject({
      action: 'drain',
      level: 'notice',
      deadlineMs: 30_000,
    });
  });
});
