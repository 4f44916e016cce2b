import { parseConfig } from '../../../forecaster/src/config';
import { DrainPolicy } from '../../../forecaster/src/policy/drain-policy';
import type { NodeRisk } from '../../../forecaster/src/policy/drain-policy';

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
    expect(fence?.reasons).toEqual(['risk 0.710 >= enter threshold 0.700 (pool spot, class -)']);
    // Between exit and enter: stays fenced, nothing decided.
    expect(p.evaluate([node('n1', 0.5), ...healthy(3)], 2000)).toEqual([]);
    expect(p.state('n1')?.phase).toBe('fenced');
    const [undo] = p.evaluate([node('n1', 0.39), ...healthy(3)], 3000);
    expect(undo).toMatchObject({ action: 'undo' });
    expect(undo?.reasons[0]).toBe('risk 0.390 fell below exit threshold 0.400 before the drain started');
    expect(p.state('n1')?.phase).toBe('healthy');
  });

  it('drains only once the fence is prepared and drainAfter has passed, with the configured deadline', () => {
    const p = policyWith();
    p.evaluate([node('n1', 0.9), ...healthy(3)], 0);
    expect(p.evaluate([node('n1', 0.9), ...healthy(3)], 3 * MINUTE)).toEqual([]);
    p.markPrepared('n1');
    expect(p.evaluate([node('n1', 0.9), ...healthy(3)], MINUTE)).toEqual([]);
    const [drain] = p.evaluate([node('n1', 0.6), ...healthy(3)], 3 * MINUTE);
    expect(drain).toMatchObject({ action: 'drain', deadlineMs: 15 * MINUTE });
    expect(drain?.reasons).toEqual([
      'risk 0.600 stayed at or above exit threshold 0.400 for 180 s while fenced',
      'capacity reserved and checkpoints pre-staged',
    ]);
    expect(p.state('n1')?.phase).toBe('draining');
    expect(p.evaluate([node('n1', 0.1), ...healthy(3)], 4 * MINUTE)).toEqual([]);
  });

  it('cools down after an undo: a new crossing within the cooldown is held with its reason, once', () => {
    const p = policyWith();
    p.evaluate([node('n1', 0.9), ...healthy(3)], 0);
    p.evaluate([node('n1', 0.1), ...healthy(3)], MINUTE);
    const [hold] = p.evaluate([node('n1', 0.9), ...healthy(3)], 2 * MINUTE);
    expect(hold).toMatchObject({ action: 'hold' });
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
    expect(drain).toMatchObject({ action: 'drain', deadlineMs: 120_000 });
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
