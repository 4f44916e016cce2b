import pino from 'pino';
import { ActionExecutor, type ActionExecutorOptions } from '../../../forecaster/src/actions/action-executor';
import type { Decision } from '../../../forecaster/src/policy/decision';
import { FakeSchedulerActions } from '../../fakes/fake-scheduler-actions';

function decision(id: number, node: string, action: Decision['action'], deadlineMs = 60_000): Decision {
  return {
    id,
    node,
    pool: 'spot',
    nodeClass: '',
    atMs: 0,
    action,
    risk: 0.9,
    reasons: ['risk 0.90'],
    deadlineMs,
  };
}

function setup(options: ActionExecutorOptions = {}) {
  const actions = new FakeSchedulerActions();
  const prepared: string[] = [];
  const failed: string[] = [];
  const executor = new ActionExecutor(
    actions,
    { prepared: (n) => prepared.push(n), failed: (n) => failed.push(n) },
    pino({ level: 'silent' }),
    options,
  );
  return { actions, executor, prepared, failed };
}

describe('ActionExecutor pre-staging (issue #6)', () => {
  it('a failed pre-stage neither undoes the fence nor blocks the drain that follows', async () => {
    const { actions, executor, prepared, failed } = setup();
    actions.failOn = 'prestage';
    const fenced = await executor.submit(decision(1, 'hot', 'fence'));
    expect(fenced.ok).toBe(true);
    expect(prepared).toEqual(['hot']);
    expect(failed).toEqual([]);
    expect(executor.reservationFor('hot')).toBeDefined();

    const drained = await executor.submit(decision(2, 'hot', 'drain'));
    expect(drained.ok).toBe(true);
    expect(actions.calls).toEqual(['fence hot', 'reserve hot', 'prestage hot', 'fence hot', 'drain hot']);
  });

  it('a failed reservation still undoes the fence: without room there is nothing to pre-stage or drain to', async () => {
    const { actions, executor, prepared, failed } = setup();
    actions.failOn = 'reserve';
    const fenced = await executor.submit(decision(1, 'hot', 'fence'));
    expect(fenced.ok).toBe(false);
    expect(prepared).toEqual([]);
    expect(failed).toEqual(['hot']);
    expect(actions.calls).toEqual(['fence hot', 'reserve hot', 'unfence hot']);
  });
});

describe('ActionExecutor drain straight from healthy (an interruption notice)', () => {
  it('fences, reserves, pre-stages, then drains, and releases the reservation once the drain ends', async () => {
    const { actions, executor } = setup();
    const drained = await executor.submit(decision(1, 'leaving', 'drain'));
    expect(drained.ok).toBe(true);
    expect(actions.calls).toEqual(['fence leaving', 'reserve leaving', 'prestage leaving', 'drain leaving']);
    expect(executor.reservationFor('leaving')).toMatchObject({ id: 'reserve-leaving', tasks: 1 });
    await executor.drainEnded('leaving');
    expect(actions.calls.at(-1)).toBe('release leaving');
    expect(executor.reservationFor('leaving')).toBeUndefined();
  });

  it('a notice shorter than prestageBeforeDrainMinMs goes straight to the drain, without pre-staging', async () => {
    const { actions, executor } = setup();
    const drained = await executor.submit(decision(1, 'leaving', 'drain', 59_999));
    expect(drained.ok).toBe(true);
    expect(actions.calls).toEqual(['fence leaving', 'reserve leaving', 'drain leaving']);
  });

  it('on a scaled clock (a replay at 400x) a two-minute notice is 300 real ms: straight to the drain', async () => {
    const { actions, executor } = setup({ clockScale: 400 });
    const drained = await executor.submit(decision(1, 'leaving', 'drain', 120_000));
    expect(drained.ok).toBe(true);
    expect(actions.calls).toEqual(['fence leaving', 'reserve leaving', 'drain leaving']);
  });

  it('a failed pre-stage does not hold up the drain of a node that is leaving', async () => {
    const { actions, executor } = setup();
    actions.failOn = 'prestage';
    const drained = await executor.submit(decision(1, 'leaving', 'drain'));
    expect(drained.ok).toBe(true);
    expect(actions.calls).toEqual(['fence leaving', 'reserve leaving', 'prestage leaving', 'drain leaving']);
  });

  it('a node fenced (and pre-staged) earlier is not pre-staged again by its drain', async () => {
    const { actions, executor } = setup();
    await executor.submit(decision(1, 'hot', 'fence'));
    await executor.submit(decision(2, 'hot', 'drain'));
    expect(actions.calls).toEqual(['fence hot', 'reserve hot', 'prestage hot', 'fence hot', 'drain hot']);
  });

  it('a failed reservation does not hold up the drain of a node that is leaving', async () => {
    const { actions, executor } = setup();
    actions.failOn = 'reserve';
    const drained = await executor.submit(decision(1, 'leaving', 'drain'));
    expect(drained.ok).toBe(true);
    expect(actions.calls).toEqual(['fence leaving', 'reserve leaving', 'drain leaving']);
    expect(actions.drains.map((d) => d.node)).toEqual(['leaving']);
  });

  it('a drain that could not be started is undone and reported, so the policy decides again', async () => {
    const { actions, executor, failed } = setup();
    actions.failOn = 'drain';
    const drained = await executor.submit(decision(1, 'leaving', 'drain'));
    expect(drained.ok).toBe(false);
    expect(actions.calls).toEqual([
      'fence leaving',
      'reserve leaving',
      'prestage leaving',
      'drain leaving',
      'release leaving',
      'unfence leaving',
    ]);
    expect(failed).toEqual(['leaving']);
    expect(executor.reservationFor('leaving')).toBeUndefined();
  });
});
