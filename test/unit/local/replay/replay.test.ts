import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { ScaledClock } from '../../../../common/scaled-clock';
import { ReplayRunner, type ReplayRunnerOptions } from '../../../../local/replay/replay-runner';
import { tally, type ObservedPreemption, type PolicyEvent } from '../../../../local/replay/replay-tally';
import { SlotMap } from '../../../../local/replay/slot-map';
import { parseTrace, slowSpans, splitTime, traceBefore } from '../../../../local/replay/trace-schedule';
import type { ServiceDefinition } from '../../../../local/controller/service-definition';
import { FakeClock } from '../../../fakes/fake-clock';
import { FAKE_SERVICE, fakeLocalController } from '../../../fakes/fake-local-controller';

const FIXTURE = join(__dirname, '../../../fixtures/replay/small-trace.ndjson');
const T0 = 1_700_000_000_000;

describe('trace schedule', () => {
  it('keeps joins, notices and pre-emptions in time order, pre-emptions first at one instant', () => {
    const schedule = parseTrace(
      [
        '{"format":"nc-trace/1"}',
        '{"t":20,"node":"b","event":"join"}',
        '{"t":10,"node":"a","event":"join"}',
        '{"t":20,"node":"a","event":"preempted"}',
        '{"t":15,"node":"a","metrics":{"cpu":0.5}}',
        '{"t":30,"node":"b","event":"drain-started"}',
      ].join('\n'),
    );
    expect(schedule.events.map((e) => `${e.t}:${e.kind}:${e.node}`)).toEqual([
      '10:join:a',
      '20:preempted:a',
      '20:join:b',
    ]);
    expect([schedule.startMs, schedule.endMs]).toEqual([10, 30]);
    expect(splitTime(schedule)).toBe(22);
  });

  it.each([['{"t":1}'], ['not json'], ['{"t":1,"node":"a","metrics":{}}']])('refuses %s', (text) => {
    expect(() => parseTrace(text)).toThrow(expect.objectContaining({ code: 'NC_REPLAY_TRACE_INVALID' }) as Error);
  });

  it('cuts the training part before the split, headers kept', () => {
    const text = '{"format":"nc-trace/1"}\n{"t":1,"node":"a","event":"join"}\n{"t":5,"node":"a","event":"preempted"}\n';
    expect(traceBefore(text, 5)).toBe('{"format":"nc-trace/1"}\n{"t":1,"node":"a","event":"join"}\n');
  });
});

describe('slow spans', () => {
  it('covers each counted pre-emption from its lead to its tail, merging overlaps, none before fromMs', () => {
    const at = (t: number, node: string) => ({ t, node, kind: 'preempted' as const });
    const schedule = {
      startMs: 0,
      endMs: 10_000_000,
      events: [
        at(500_000, 'a'),
        at(2_000_000, 'b'),
        at(2_300_000, 'c'),
        { t: 2_400_000, node: 'd', kind: 'join' as const },
        at(5_000_000, 'd'),
      ],
    };
    const spans = slowSpans(schedule, { fromMs: 1_000_000, leadMs: 600_000, tailMs: 60_000, scale: 10 });
    expect(spans).toEqual([
      { fromMs: 1_400_000, toMs: 2_360_000, scale: 10 },
      { fromMs: 4_400_000, toMs: 5_060_000, scale: 10 },
    ]);
    expect(slowSpans(schedule, { fromMs: 1_900_000, leadMs: 600_000, tailMs: 60_000, scale: 10 })[0]).toEqual({
      fromMs: 1_900_000,
      toMs: 2_360_000,
      scale: 10,
    });
  });
});

describe('SlotMap', () => {
  it('gives joining nodes free local nodes, never-down ones first, and makes the rest virtual', () => {
    const slots = new SlotMap(['n1', 'n2']);
    expect(slots.claim('a')).toEqual({ slot: 'n1', wasDown: false });
    expect(slots.claim('b')).toEqual({ slot: 'n2', wasDown: false });
    expect(slots.claim('c')).toEqual({ slot: undefined, wasDown: false });
    expect(slots.release('a')).toBe('n1');
    expect(slots.release('c')).toBeUndefined();
    expect(slots.claim('d')).toEqual({ slot: 'n1', wasDown: true });
    expect(slots.slotOf('d')).toBe('n1');
    expect(slots.claim('d')).toEqual({ slot: 'n1', wasDown: false });
  });
});

describe('tally', () => {
  const p = (
    node: string,
    t: number,
    movedBefore: number,
    caught: string[],
    restarted: number,
    movedAhead = 0,
  ): ObservedPreemption => ({
    node,
    t,
    movedBefore,
    movedAhead,
    caught,
    restarted,
  });
  const input = (preemptions: ObservedPreemption[], policy: PolicyEvent[] = []) => ({
    preemptions,
    virtualPreemptions: [{ t: 650 }],
    drains: [
      { node: 'a', t: 50 },
      { node: 'b', t: 600 },
      { node: 'x', t: 620 },
      { node: 'c', t: 100 },
      { node: 'y', t: 950 },
    ],
    preemptionTimes: new Map([
      ['a', [100]],
      ['b', [700]],
      ['c', [800]],
      ['v', [650]],
    ]),
    joinTimes: new Map([
      ['a', [0]],
      ['b', [0]],
      ['c', [0]],
      ['v', [0]],
      ['x', [300]],
      ['y', [600]],
    ]),
    policy,
  });

  it('counts pre-emptions, moves, catches and false drains in the held-out part only', () => {
    const preemptions = [p('a', 100, 1, [], 0, 1), p('b', 700, 2, ['kv1', 'kv2'], 1, 1), p('c', 800, 0, [], 0)];
    const counts = tally(input(preemptions), { fromMs: 500, endMs: 1000, horizonMs: 300, scope: 'held-out' });
    expect(counts).toEqual({
      scope: 'held-out',
      preemptions: 2,
      virtualPreemptions: 1,
      preemptionsWithChainedTasks: 1,
      movedBeforePreemption: 2,
      caught: 2,
      caughtColdStarted: 1,
      caughtLost: 1,
      drains: 3,
      falseDrains: 1,
      drainsUndecided: 1,
      movedBeforeNotice: 1,
      movedAfterNotice: 1,
      lost: 2,
      prewarns: 0,
      prewarnsUndone: 0,
      predictiveDrains: 0,
      fencedNodeMs: 0,
      // 500..1000: b until 700, c until 800, x and y to the end; a and v went before or at 650.
      nodeMs: 200 + 300 + 500 + 400 + 150,
    });
    const whole = tally(input(preemptions), { fromMs: -Infinity, endMs: 1000, horizonMs: 300, scope: 'whole' });
    expect(whole).toMatchObject({
      preemptions: 3,
      movedBeforePreemption: 3,
      movedBeforeNotice: 2,
      movedAfterNotice: 1,
      drains: 5,
      falseDrains: 2,
    });
  });

  it("counts the two-level policy's pre-warns, how they ended, and node-time fenced or draining", () => {
    const policy: PolicyEvent[] = [
      // b: pre-warned at 400, undone at 450 (risk fell), pre-warned again at 550, drained at the drain level, gone at 700.
      { node: 'b', t: 400, action: 'fence', level: 'prewarn' },
      { node: 'b', t: 450, action: 'undo', level: 'exit' },
      { node: 'b', t: 550, action: 'fence', level: 'prewarn' },
      { node: 'b', t: 600, action: 'drain', level: 'drain' },
      // x: pre-warned at 620, never undone, never pre-empted: fenced to the trace's end.
      { node: 'x', t: 620, action: 'fence', level: 'prewarn' },
      // v: drained at a notice at 640, gone at 650; c: a fence whose action failed (no level), undone at once.
      { node: 'v', t: 640, action: 'drain', level: 'notice' },
      { node: 'c', t: 700, action: 'fence', level: 'prewarn' },
      { node: 'c', t: 710, action: 'undo' },
    ];
    const held = tally(input([], policy), { fromMs: 500, endMs: 1000, horizonMs: 300, scope: 'held-out' });
    expect(held).toMatchObject({ prewarns: 3, prewarnsUndone: 0, predictiveDrains: 1 });
    expect(held.fencedNodeMs).toBe(150 + 380 + 10 + 10);
    const whole = tally(input([], policy), { fromMs: -Infinity, endMs: 1000, horizonMs: 300, scope: 'whole' });
    expect(whole).toMatchObject({ prewarns: 4, prewarnsUndone: 1, predictiveDrains: 1 });
    expect(whole.fencedNodeMs).toBe(50 + 150 + 380 + 10 + 10);
    expect(whole.nodeMs).toBe(100 + 700 + 800 + 650 + 700 + 400);
  });
});

/** Fake time whose sleeps also let other work (an in-flight drain) run, as real sleeps do. */
class YieldingClock extends FakeClock {
  override async sleep(ms: number): Promise<void> {
    this.advance(ms);
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  }
}

const SERVICE: ServiceDefinition = { ...FAKE_SERVICE, name: 'kv1', port: 8081 };

const controllerOver = (slots: string[], real: FakeClock, trace: ScaledClock) =>
  fakeLocalController({
    nodes: slots,
    capacity: 2,
    tmpPrefix: 'nc-replay-unit-',
    clock: real,
    eventClock: trace,
    announceNodes: false,
    preemptible: true,
  });

/**
 * The fixture's replay over three local nodes: kv1 runs, and kv2 too unless `services` is 1. `runner` makes the
 * replay with the pass's own options, after the test has the clocks its notices may need.
 */
async function replayOfFixture(options: { readonly clock?: FakeClock; readonly services?: 1 | 2 } = {}) {
  const schedule = parseTrace(readFileSync(FIXTURE, 'utf8'));
  const real = options.clock ?? new YieldingClock(T0);
  const speed = 15;
  const trace = new ScaledClock({ scale: speed, originMs: schedule.startMs, realOriginMs: T0 }, real);
  const slots = ['n1', 'n2', 'n3'];
  const fake = await controllerOver(slots, real, trace);
  await fake.controller.runService(SERVICE, async () => undefined);
  if (options.services !== 1)
    await fake.controller.runService({ ...SERVICE, name: 'kv2', port: 8082 }, async () => undefined);
  const runner = (pass: Pick<ReplayRunnerOptions, 'reactive' | 'notices'>) =>
    new ReplayRunner(fake.controller, { schedule, slots, timeline: trace, ...pass }, real, pino({ level: 'silent' }));
  return { ...fake, schedule, real, speed, runner };
}

describe('LocalController aliases and virtual nodes', () => {
  it('names a local node by its alias in events and forgets it after unalias', async () => {
    const real = new FakeClock(T0);
    const trace = new ScaledClock({ scale: 10, originMs: 5_000, realOriginMs: T0 }, real);
    const { controller } = await controllerOver(['n1', 'n2'], real, trace);
    expect(controller.events.since(0)).toEqual([]);
    controller.alias('trace-a', 'n1');
    expect(controller.resolveNode('trace-a')).toBe('n1');
    real.advance(100);
    await controller.drainNode('n1', 'test');
    controller.virtualJoined('trace-z');
    expect(controller.isVirtual('trace-z')).toBe(true);
    controller.virtualLeft('trace-z');
    controller.unalias('trace-a');
    await controller.setEligibility('n1', true, 'test');
    expect(controller.events.since(0).map((e) => [e.event.type, e.event.node, e.event.timeMs])).toEqual([
      ['drain-started', 'trace-a', 6_000],
      ['drain-complete', 'trace-a', 6_000],
      ['node-joined', 'trace-z', 6_000],
      ['node-left', 'trace-z', 6_000],
      ['drain-canceled', 'n1', 6_000],
    ]);
    // Gone nodes stay without a local node: a watcher acting on them late does nothing.
    expect(controller.isVirtual('trace-z')).toBe(true);
    expect(controller.isVirtual('trace-a')).toBe(true);
    expect(controller.resolveNode('trace-a')).toBe('trace-a');
    expect(controller.isVirtual('n1')).toBe(false);
  });
});

describe('ReplayRunner (reactive pass over the fake cluster)', () => {
  it('maps trace nodes onto slots, drains at notices, and observes moves before each pre-emption', async () => {
    const { controller, cluster, schedule, runner } = await replayOfFixture();
    const obs = await runner({ reactive: true }).run();
    expect(obs.mappedJoins).toBe(6);
    expect(obs.virtualJoins).toBe(1);
    expect(obs.virtualPreemptions.map((p) => p.node)).toEqual(['d']);
    expect(obs.preemptions.map((p) => p.node)).toEqual(['a', 'b', 'e']);
    // Notices come two minutes ahead and the fake migrates at once: every task moves, none is caught.
    expect(obs.preemptions.map((p) => p.caught.length)).toEqual([0, 0, 0]);
    expect(obs.drains.map((d) => [d.node, d.t - schedule.startMs])).toEqual([
      ['a', 200_000],
      ['b', 400_000],
      ['e', 700_000],
    ]);
    const moved = obs.preemptions.reduce((n, p) => n + p.movedBefore, 0);
    expect(moved).toBe(controller.migrations().filter((m) => m.step === 'done').length);
    expect(moved).toBeGreaterThan(0);
    // The reactive drains start at the notice: nothing moved ahead of one.
    expect(obs.preemptions.map((p) => p.movedAhead)).toEqual([0, 0, 0]);
    // Its policy is a drain at every notice, the virtual node's too; each node's lifetime is known.
    expect(obs.policy.map((e) => `${e.node}:${e.t - schedule.startMs}:${e.level}`)).toEqual([
      'd:60000:notice',
      'a:200000:notice',
      'b:400000:notice',
      'e:700000:notice',
    ]);
    const counts = tally(obs, { fromMs: -Infinity, endMs: schedule.endMs, horizonMs: 600_000, scope: 'whole' });
    expect(counts).toMatchObject({ movedBeforeNotice: 0, movedAfterNotice: moved, lost: 0, prewarns: 0 });
    // Drained from each notice to its pre-emption two minutes later (a late pre-emption only lengthens it).
    expect(counts.fencedNodeMs).toBeGreaterThanOrEqual(4 * 120_000);
    expect(counts.nodeMs).toBeGreaterThan(counts.fencedNodeMs);
    expect(cluster.running('kv1')).toHaveLength(1);
    expect(cluster.running('kv2')).toHaveLength(1);
    const events = controller.events.since(0).map((e) => `${e.event.type}:${e.event.node}`);
    expect(events.filter((e) => e.startsWith('node-left'))).toEqual([
      'node-left:d',
      'node-left:a',
      'node-left:b',
      'node-left:e',
    ]);
    expect(events.filter((e) => /:n\d$/.test(e))).toEqual([]);
  });

  it('a replay running behind its trace stamps joins, notices and pre-emptions on one clock', async () => {
    const { schedule, real, speed, runner } = await replayOfFixture({ services: 1 });
    let lagged = false;
    const obs = await runner({
      reactive: true,
      // a's notice (trace 200 s) is applied 600 s of trace time late: every event up to 800 s is behind.
      notices: (node) => {
        if (node !== 'a' || lagged) return;
        lagged = true;
        real.advance(600_000 / speed);
      },
    }).run();
    const at = (node: string) => obs.policy.filter((e) => e.node === node).map((e) => e.t - schedule.startMs);
    expect(at('a')[0]).toBeGreaterThanOrEqual(800_000);
    // e joined at 340 s in the trace, applied once the replay caught up to 800 s: its lifetime starts there.
    expect((obs.joinTimes.get('e') ?? []).map((t) => t - schedule.startMs)[0]).toBeGreaterThanOrEqual(800_000);
    const counts = tally(obs, { fromMs: -Infinity, endMs: schedule.endMs, horizonMs: 600_000, scope: 'whole' });
    // From each notice as applied to its pre-emption as applied: never the lag itself (a alone was 600 s of it).
    expect(counts.fencedNodeMs).toBeLessThanOrEqual(4 * 120_000);
  });

  it('without a drain at the notice, the pre-emption catches the tasks and cold-starts them', async () => {
    const { runner } = await replayOfFixture({ clock: new FakeClock(T0) });
    const sent: string[] = [];
    const obs = await runner({
      reactive: false,
      notices: (node, t, deadline) => sent.push(`${node}:${deadline - t}`),
    }).run();
    expect(sent).toEqual(['d:120000', 'a:120000', 'b:120000', 'e:120000']);
    expect(obs.drains).toEqual([]);
    const caught = obs.preemptions.reduce((n, p) => n + p.caught.length, 0);
    expect(caught).toBeGreaterThan(0);
    expect(obs.preemptions.reduce((n, p) => n + p.restarted, 0)).toBe(caught);
    expect(obs.preemptions.every((p) => p.movedBefore === 0)).toBe(true);
    expect(obs.policy).toEqual([]);
  });

  it("counts a move started before the node's notice as moved ahead (a forecaster that warned in time)", async () => {
    const { controller, runner } = await replayOfFixture();
    const early: Promise<unknown>[] = [];
    const obs = await runner({
      reactive: false,
      // Stands in for a forecaster that drains every local node holding a task at the first notice (d's, at
      // 60 s), well before a's and b's own notices.
      notices: (node) => {
        if (node !== 'd') return;
        for (const slot of new Set(Object.values(controller.tasks()).map((t) => t.node)))
          early.push(controller.drainNode(slot, 'test: predicted'));
      },
    }).run();
    await Promise.all(early);
    const ahead = obs.preemptions.reduce((n, p) => n + p.movedAhead, 0);
    expect(ahead).toBeGreaterThan(0);
    expect(ahead).toBe(obs.preemptions.reduce((n, p) => n + p.movedBefore, 0));
    expect(obs.preemptions.reduce((n, p) => n + p.caught.length, 0)).toBe(0);
  });
});
