import pino from 'pino';
import { ActionExecutor } from '../../../forecaster/src/actions/action-executor';
import { parseConfig } from '../../../forecaster/src/config';
import { FeatureBuilder } from '../../../forecaster/src/features/feature-builder';
import { loadFeatureSpec } from '../../../forecaster/src/features/feature-spec';
import { Forecaster } from '../../../forecaster/src/forecaster';
import type { ModelCard } from '../../../forecaster/src/model/model-card';
import { ServingModel } from '../../../forecaster/src/model/serving-model';
import { DrainPolicy } from '../../../forecaster/src/policy/drain-policy';
import { ClusterWindows } from '../../../forecaster/src/windows/cluster-windows';
import { FakeClock } from '../../fakes/fake-clock';
import { eventually } from '../../harness/eventually';
import { FakeModelRunner } from '../../fakes/fake-model-runner';
import { FakeSchedulerActions } from '../../fakes/fake-scheduler-actions';
import { FEATURE_SPEC } from '../../fixtures/forecaster/python';

const spec = loadFeatureSpec(FEATURE_SPEC);
const CPU = spec.names.indexOf('cpu_mean_5m');
const log = pino({ level: 'silent' });
const MINUTE = 60_000;

const THRESHOLDS = { enterThreshold: 0.7, exitThreshold: 0.4 };

async function setup(
  policy: Record<string, unknown> = THRESHOLDS,
  clock: FakeClock = new FakeClock(1_764_000_000_000),
  card: Partial<ModelCard> = {},
) {
  const config = parseConfig({
    modelDir: '/unused',
    policy: { drainAfter: '2m', minHealthyNodes: 0, ...policy },
  });
  const windows = new ClusterWindows(
    { maxNodes: 100, samplesPerNode: 96, eventsPerNode: 64, staleAfterMs: 15 * MINUTE },
    spec.poolRetainMs,
    () => clock.now(),
  );
  const model = new ServingModel(log);
  // Risk = the node's 5-minute mean CPU: the telemetry drives it directly.
  const runner = new FakeModelRunner(
    { version: 'fake', features: spec.names, featureSpec: spec.id, ...card },
    (row) => row[CPU] as number,
  );
  await model.replace(async () => runner);
  const policyState = new DrainPolicy(config.policy, { servingModel: () => model.card });
  const actions = new FakeSchedulerActions();
  const executor = new ActionExecutor(
    actions,
    { prepared: (n) => policyState.markPrepared(n), failed: (n, r) => void policyState.abandon(n, r, clock.now()) },
    log,
  );
  const forecaster = new Forecaster({
    clock,
    windows,
    features: new FeatureBuilder(spec),
    model,
    policy: policyState,
    executor,
    log,
  });
  const report = (node: string, cpu: number, minutes = 5): void => {
    const now = clock.now();
    const points = Array.from({ length: minutes * 4 }, (_, i) => ({
      timeMs: now - minutes * MINUTE + (i + 1) * 15_000,
      cpu,
      memSomeAvg10: 0,
      memFullAvg10: 0,
      memUsed: 0.5,
      netRxBps: 0,
      netTxBps: 0,
      diskReadBps: 0,
      diskWriteBps: 0,
    }));
    forecaster.ingest({ node, pool: 'spot', nodeClass: '', points, signals: [], events: [] });
  };
  return { clock, forecaster, actions, runner, report, executor, model };
}

describe('Forecaster run loop', () => {
  it('ticks at once on a new terminal notice instead of waiting for the next tick, and only once per notice', async () => {
    const clock = new FakeClock(1_764_000_000_000, { sleep: 'waits' });
    const { forecaster, actions, report } = await setup(THRESHOLDS, clock);
    report('n1', 0.1);
    report('n2', 0.1);
    const stop = new AbortController();
    const loop = forecaster.run(MINUTE, stop.signal);
    await eventually(async () => expect(forecaster.stats.ticks).toBe(1), 5_000, 5);
    const notice = {
      node: 'n1',
      pool: 'spot',
      nodeClass: '',
      points: [],
      signals: [{ source: 'aws-imds', kind: 'spot-interruption', deadlineMs: clock.now() + 2 * MINUTE, detail: '' }],
      events: [],
    };
    forecaster.ingest(notice);
    // No clock advance: only the notice can have started this tick.
    await eventually(async () => expect(forecaster.stats.ticks).toBe(2), 5_000, 5);
    await forecaster.settle();
    expect(actions.calls).toContain('drain n1');
    forecaster.ingest(notice);
    report('n2', 0.2);
    await new Promise((r) => setTimeout(r, 50));
    expect(forecaster.stats.ticks).toBe(2);
    clock.advance(MINUTE);
    await eventually(async () => expect(forecaster.stats.ticks).toBe(3), 5_000, 5);
    stop.abort();
    await loop;
  });
});

describe('Forecaster tick', () => {
  it('scores every alive node in one model call per tick and carries fence → drain out in order', async () => {
    const { clock, forecaster, actions, runner, report } = await setup();
    for (let i = 0; i < 50; i += 1) report(`n${i}`, 0.1);
    report('hot', 0.9);
    const decisions = await forecaster.tick();
    await forecaster.settle();
    expect(runner.calls).toBe(1);
    expect(forecaster.stats.lastNodes).toBe(51);
    expect(decisions.map((d) => [d.node, d.action])).toEqual([['hot', 'fence']]);
    expect(actions.calls).toEqual(['fence hot', 'reserve hot', 'prestage hot']);

    clock.advance(3 * MINUTE);
    report('hot', 0.9, 3);
    await forecaster.tick();
    await forecaster.settle();
    expect(runner.calls).toBe(2);
    expect(actions.calls.slice(3)).toEqual(['fence hot', 'drain hot']);
    expect(actions.drains[0]?.request.reason).toMatch(
      /^nomad-chain forecaster decision \d+: risk 0\.900 >= drain threshold 0\.700 after 180 s fenced; /,
    );
    const report1 = forecaster.reportFor('hot');
    expect(report1.phase).toBe('draining');
    expect(report1.reservation).toMatchObject({ id: 'reserve-hot' });
  });

  it('undoes a fence whose risk fell before the drain: reservation released, node eligible again', async () => {
    const { clock, forecaster, actions, report } = await setup();
    report('n1', 0.9);
    report('n2', 0.1);
    await forecaster.tick();
    await forecaster.settle();
    clock.advance(6 * MINUTE);
    report('n1', 0.1, 6);
    report('n2', 0.1, 6);
    const [undo] = await forecaster.tick();
    await forecaster.settle();
    expect(undo).toMatchObject({ node: 'n1', action: 'undo' });
    expect(actions.calls).toEqual(['fence n1', 'reserve n1', 'prestage n1', 'release n1', 'unfence n1']);
    expect(actions.reservations.size).toBe(0);
    expect(actions.eligible.get('n1')).toBe(true);
    expect(forecaster.reportFor('n1').reservation).toBeNull();
  });

  it('undoes a fence whose reservation failed, and records why', async () => {
    const { forecaster, actions, report } = await setup();
    actions.failOn = 'reserve';
    report('n1', 0.9);
    await forecaster.tick();
    await forecaster.settle();
    expect(actions.calls).toEqual(['fence n1', 'reserve n1', 'unfence n1']);
    const decisions = forecaster.reportFor('n1').decisions;
    expect(decisions.map((d) => d.action)).toEqual(['fence', 'undo']);
    expect(decisions[1]?.reasons[0]).toBe('fence could not be completed: reserve refused');
  });

  it('forgets a node that falls silent and stops scoring it; drains on a notice in the telemetry', async () => {
    const { clock, forecaster, actions, report, runner } = await setup();
    report('quiet', 0.1);
    clock.advance(16 * MINUTE);
    report('noticed', 0.1);
    forecaster.ingest({
      node: 'noticed',
      pool: 'spot',
      nodeClass: '',
      points: [],
      signals: [
        {
          source: 'gcp-metadata',
          kind: 'preempted',
          deadlineMs: clock.now() + 30_000,
          detail: 'instance/preempted TRUE',
        },
      ],
      events: [],
    });
    const decisions = await forecaster.tick();
    await forecaster.settle();
    expect(forecaster.stats.lastNodes).toBe(1);
    expect(runner.calls).toBe(1);
    expect(decisions).toEqual([expect.objectContaining({ node: 'noticed', action: 'drain', deadlineMs: 30_000 })]);
    expect(actions.calls).toEqual(['fence noticed', 'reserve noticed', 'drain noticed']);
  });

  it("acts at the serving card's levels, and at a promoted card's from the next tick (issue #15)", async () => {
    const policy = (prewarnThreshold: number, drainThreshold: number) => ({
      prewarnThreshold,
      drainThreshold,
      budget: { maxFencedShare: 0.05, maxFalseDrainsPer100NodeDays: 10 },
      chosenOn: 'test',
    });
    const { clock, forecaster, actions, report, model } = await setup({}, undefined, { policy: policy(0.3, 0.8) });
    report('n1', 0.5);
    report('n2', 0.1);
    const [fence] = await forecaster.tick();
    await forecaster.settle();
    expect(fence).toMatchObject({ node: 'n1', action: 'fence', threshold: 0.3, thresholdSource: 'model card fake' });
    expect(forecaster.reportFor('n1').thresholds).toEqual({
      prewarn: 0.3,
      exit: 0.24,
      drain: 0.8,
      source: 'model card fake',
    });
    clock.advance(3 * MINUTE);
    report('n1', 0.5, 3);
    report('n2', 0.1, 3);
    // Pre-warned, below the card's drain level: fenced and pre-staged, not drained.
    expect(await forecaster.tick()).toEqual([]);
    const promoted = new FakeModelRunner(
      { version: 'v2', features: spec.names, featureSpec: spec.id, policy: policy(0.2, 0.45) },
      (row) => row[CPU] as number,
    );
    await model.replace(async () => promoted);
    const [drain] = await forecaster.tick();
    await forecaster.settle();
    expect(drain).toMatchObject({
      node: 'n1',
      action: 'drain',
      level: 'drain',
      threshold: 0.45,
      thresholdSource: 'model card v2',
    });
    expect(actions.drains[0]?.request.reason).toMatch(/thresholds from model card v2$/);
  });
});
