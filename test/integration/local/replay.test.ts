import { join } from 'node:path';
import pino from 'pino';
import { formatReport, runReplay } from '../../../local/replay/replay-command';

const log = pino({ level: process.env.NOMAD_CHAIN_TEST_LOG ?? 'silent' });
const FIXTURES = join(__dirname, '../../fixtures/replay');

// Real local cluster (namespaces, sidecars, runc/CRIU tasks, HAProxy), the trainer's converter and, for the
// forecaster pass, `npm run forecast -- train` and the forecaster as its own process.
describe('trace replay in local mode (issue #6)', () => {
  it('reactive pass: maps 6 trace nodes onto 3 local nodes, drains at each notice, counts what each pre-emption caught', async () => {
    // small-trace: a, b, c, d join at 0 (d virtual); d, a, b, e pre-empted 120 s after their notices;
    // e, f, g join into freed local nodes. Split at 540 s of 900 s: only e's pre-emption is held out.
    const report = await runReplay(
      {
        trace: join(FIXTURES, 'small-trace.ndjson'),
        speed: 15,
        nodes: 3,
        services: 2,
        passes: ['reactive'],
        trainFraction: 0.6,
      },
      log,
    );
    const [pass] = report.passes;
    expect(report.model).toBeUndefined();
    expect(report.splitMs - report.spanMs[0]).toBe(540_000);
    expect(pass?.returnFailures).toBe(0);
    expect(pass?.mappedJoins).toBe(6);
    expect(pass?.virtualJoins).toBe(1);
    expect(pass?.wholeTrace).toMatchObject({
      preemptions: 3,
      virtualPreemptions: 1,
      drains: 3,
      falseDrains: 0,
      drainsUndecided: 0,
    });
    expect(pass?.heldOut).toMatchObject({ preemptions: 1, virtualPreemptions: 0, drains: 1, falseDrains: 0 });
    const whole = pass?.wholeTrace;
    // Two services on three local nodes, two of which are pre-empted: at least one pre-emption hits a node that
    // holds (or held until its drain) a chained task; every task there either moved in time or was caught.
    expect(whole?.preemptionsWithChainedTasks).toBeGreaterThanOrEqual(1);
    expect((whole?.movedBeforePreemption ?? 0) + (whole?.caught ?? 0)).toBeGreaterThanOrEqual(
      whole?.preemptionsWithChainedTasks ?? 1,
    );
    // Two healthy nodes with room remain at each pre-emption: whatever is caught is cold-started, none lost.
    expect(pass?.preemptionErrors).toBe(0);
    expect(whole?.caughtLost).toBe(0);
    // The two-level policy's columns: the reactive baseline moves only after a notice, never pre-warns, and is out
    // of service from each of the four notices (d's, a virtual node's, too) to its pre-emption two minutes later.
    expect(whole).toMatchObject({ movedBeforeNotice: 0, prewarns: 0, prewarnsUndone: 0, predictiveDrains: 0 });
    expect(whole?.movedAfterNotice).toBe(whole?.movedBeforePreemption);
    expect(whole?.lost).toBe(whole?.caught);
    // Every figure is on the replay's clock (when it applied each event): a notice applied late shortens its
    // node's fenced time by at most the replay's worst lag behind the trace, here in trace time.
    const lag = (pass?.maxLagMs ?? 0) * 15;
    expect(whole?.fencedNodeMs).toBeGreaterThanOrEqual(4 * (120_000 - lag));
    // a, b, c, d from 0, e, f, g from their joins: the 2,700 s of the trace's own schedule, less a late join each.
    expect(whole?.nodeMs).toBeGreaterThanOrEqual(180_000 + 320_000 + 900_000 + 520_000 + 480_000 + 300_000 - 7 * lag);
    expect(pass?.heldOut.fencedNodeMs).toBeGreaterThanOrEqual(120_000 - lag);
    expect(formatReport(report)).toMatch(
      /\nreactive +held-out 40 % +0 +\d+ +\d+ +0 +0 +0 +0 +0\.\d\d h \(\d+\.\d\d %\)\n/,
    );
  }, 300_000);

  it('forecaster pass: trains on the first 60 %, runs the forecaster as its own process, which drains through the API', async () => {
    // periodic-trace: 5 nodes; every 15 min one gets a notice and is pre-empted 2 min later, a new one joins.
    const report = await runReplay(
      {
        trace: join(FIXTURES, 'periodic-trace.ndjson'),
        speed: 400,
        // At 400x a two-minute notice is 300 real ms, less than a loaded machine may take to carry the notice to
        // the forecaster and its drain back; around held-out pre-emptions it is 1.2 s.
        eventSpeed: 100,
        nodes: 3,
        services: 2,
        passes: ['forecaster'],
        trainFraction: 0.6,
      },
      log,
    );
    const [pass] = report.passes;
    expect(report.model?.trainedOn).toContain('first 60 %');
    expect(report.horizonS).toBeGreaterThan(0);
    expect(pass?.pass).toBe('forecaster');
    // Every notice reached the forecaster over its telemetry port, mapped or virtual.
    expect(pass?.noticesSent).toBe(16);
    expect((pass?.wholeTrace.preemptions ?? 0) + (pass?.wholeTrace.virtualPreemptions ?? 0)).toBe(16);
    expect(pass?.mappedJoins).toBeGreaterThanOrEqual(3);
    // The forecaster drains at least the nodes whose notice it got while they ran on a local node.
    expect(pass?.heldOut.drains).toBeGreaterThanOrEqual(1);
    expect(pass?.preemptionErrors).toBe(0);
    const whole = pass?.wholeTrace;
    expect((whole?.movedBeforePreemption ?? 0) + (whole?.caught ?? 0)).toBeGreaterThanOrEqual(
      whole?.preemptionsWithChainedTasks ?? 1,
    );
    // The two-level policy's columns, from the forecaster's own decisions: every move is either ahead of its
    // node's notice or after it; it drained at least at the notices, so some node-time was out of service.
    expect((whole?.movedBeforeNotice ?? 0) + (whole?.movedAfterNotice ?? 0)).toBe(whole?.movedBeforePreemption);
    expect(whole?.lost).toBe(whole?.caught);
    expect(whole?.prewarnsUndone).toBeLessThanOrEqual(whole?.prewarns ?? 0);
    expect(whole?.fencedNodeMs).toBeGreaterThan(0);
    expect(whole?.fencedNodeMs).toBeLessThan(whole?.nodeMs ?? 0);
  }, 300_000);
});
