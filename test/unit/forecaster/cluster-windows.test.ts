import { ClusterWindows } from '../../../forecaster/src/windows/cluster-windows';
import type { TelemetryPoint } from '../../../forecaster/src/windows/node-window';

const point = (timeMs: number, cpu = 0.5): TelemetryPoint => ({
  timeMs,
  cpu,
  memSomeAvg10: 0,
  memFullAvg10: 0,
  memUsed: 0.5,
  netRxBps: 0,
  netTxBps: 0,
  diskReadBps: 0,
  diskWriteBps: 0,
});

describe('ClusterWindows', () => {
  let now = 1_000_000;
  const make = (maxNodes = 10, samplesPerNode = 4): ClusterWindows =>
    new ClusterWindows({ maxNodes, samplesPerNode, eventsPerNode: 8, staleAfterMs: 60_000 }, 3_600_000, () => now);
  const batch = (node: string, points: TelemetryPoint[], extra: object = {}) => ({
    node,
    pool: 'p',
    nodeClass: '',
    points,
    signals: [],
    events: [],
    ...extra,
  });

  it('joins a node at its first sample, keeps a bounded time-ordered window, and ignores resent samples', () => {
    const w = make();
    w.ingest(batch('n1', [point(10), point(20), point(30)]));
    const window = w.store.get('n1');
    expect(window?.history()).toEqual([{ timeMs: 10, kind: 'join', detail: 'first telemetry' }]);
    w.ingest(batch('n1', [point(20), point(40), point(50), point(60)]));
    expect(window?.length).toBe(4);
    expect([0, 1, 2, 3].map((i) => window?.timeAt(i))).toEqual([30, 40, 50, 60]);
    expect(w.poolOf(window!).aliveCount).toBe(1);
  });

  it('forgets the least recently reporting node beyond maxNodes and silent nodes after staleAfter; both leave the pool', () => {
    const w = make(2);
    w.ingest(batch('a', [point(1)]));
    w.ingest(batch('b', [point(1)]));
    w.ingest(batch('c', [point(1)]));
    expect(
      w
        .alive()
        .map((x) => x.node)
        .sort(),
    ).toEqual(['b', 'c']);
    expect(w.store.evicted).toBe(1);
    now += 61_000;
    expect(w.alive()).toEqual([]);
    expect(w.store.evicted).toBe(3);
  });

  it('records a notice when a signal first appears, and a pre-emption ends the node without reviving it by events', () => {
    const w = make();
    w.ingest(batch('n1', [point(100)]));
    const signal = { source: 'aws-imds', kind: 'spot-interruption', deadlineMs: 500, detail: 'terminate' };
    w.ingest(batch('n1', [point(200)], { signals: [signal] }));
    w.ingest(batch('n1', [point(300)], { signals: [signal] }));
    const window = w.store.get('n1')!;
    expect(window.history().map((e) => e.kind)).toEqual(['join', 'notice']);
    expect(window.activeSignals()).toEqual([{ ...signal, firstSeenMs: 200 }]);
    w.event('n1', 'preempted', 400, 'node down');
    expect(w.isAlive(window)).toBe(false);
    w.ingest(batch('n1', [], { events: [{ timeMs: 450, kind: 'drain-canceled', detail: '' }] }));
    expect(w.isAlive(window)).toBe(false);
    // Telemetry from it again means it is back.
    w.ingest(batch('n1', [point(500)]));
    expect(w.isAlive(window)).toBe(true);
    expect(window.count('join', 0, 1000)).toBe(2);
  });

  it('records advice (a rebalance recommendation, a live migration) as its own event, never as a notice, and once', () => {
    const w = make();
    w.ingest(batch('n1', [point(100)]));
    const rebalance = { source: 'aws-imds', kind: 'rebalance-recommendation', deadlineMs: 0, detail: '' };
    // The sidecar sends a fresh signal both as a signal and as a history event, which the ingest maps to advice.
    w.ingest(
      batch('n1', [point(200)], {
        signals: [rebalance],
        events: [{ timeMs: 200, kind: 'advice', detail: 'aws-imds rebalance-recommendation' }],
      }),
    );
    const migrate = {
      source: 'gcp-metadata',
      kind: 'maintenance-migrate',
      deadlineMs: 360,
      detail: 'MIGRATE_ON_HOST_MAINTENANCE',
    };
    w.ingest(batch('n1', [point(300)], { signals: [rebalance, migrate] }));
    const interruption = { source: 'aws-imds', kind: 'spot-interruption', deadlineMs: 500, detail: 'terminate' };
    w.ingest(batch('n1', [point(400)], { signals: [rebalance, migrate, interruption] }));
    const window = w.store.get('n1')!;
    expect(window.history().map((e) => [e.kind, e.timeMs])).toEqual([
      ['join', 100],
      ['advice', 200],
      ['advice', 300],
      ['notice', 400],
    ]);
    expect(w.poolOf(window).count('advice', 0, 1000)).toBe(2);
    expect(window.latest('notice', 1000)).toBe(400);
  });
});
