import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { TraceRecorder, ROTATED_FILE, TRACE_FILE } from '../../../../forecaster/src/record/trace-recorder';
import { snapshotTrace } from '../../../../forecaster/src/record/trace-snapshot';
import { ClusterWindows } from '../../../../forecaster/src/windows/cluster-windows';
import type { TelemetryPoint } from '../../../../forecaster/src/windows/node-window';

const log = pino({ level: 'silent' });
const T0 = 1_700_000_000_000;

function point(timeMs: number, cpu: number): TelemetryPoint {
  return {
    timeMs,
    cpu,
    memSomeAvg10: 0,
    memFullAvg10: 0,
    memUsed: 0.4,
    netRxBps: 1000,
    netTxBps: NaN,
    diskReadBps: 0,
    diskWriteBps: 4096,
  };
}

/**
 * The metrics point(…, cpu) is recorded with: NaN (a metric the agent could not read) is left out, as the format
 * says for a missing metric.
 */
function recordedMetrics(cpu: number): Record<string, number> {
  return { cpu, memSomeAvg10: 0, memFullAvg10: 0, memUsed: 0.4, netRxBps: 1000, diskReadBps: 0, diskWriteBps: 4096 };
}

function lines(path: string): Record<string, unknown>[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nc-trace-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('TraceRecorder (issue 6: local mode records what it observes)', () => {
  it('records what the windows take in, in nc-trace/1: joins, samples, notices, pre-emptions', async () => {
    const recorder = await TraceRecorder.open({ dir, maxBytes: 1024 * 1024 }, log);
    const windows = new ClusterWindows(
      { maxNodes: 10, samplesPerNode: 16, eventsPerNode: 16, staleAfterMs: 3_600_000 },
      86_400_000,
      () => T0 + 120_000,
      recorder,
    );
    windows.event('n1', 'join', T0, 'scheduler', { pool: 'gpu' });
    windows.ingest({
      node: 'n1',
      pool: 'gpu',
      nodeClass: '',
      points: [point(T0 + 15_000, 0.25), point(T0 + 30_000, 0.5)],
      signals: [{ source: 'aws-imds', kind: 'spot-interruption', deadlineMs: T0 + 150_000, detail: '' }],
      events: [],
    });
    // A sample the window refuses (older than its newest) is not recorded either.
    windows.ingest({
      node: 'n1',
      pool: 'gpu',
      nodeClass: '',
      points: [point(T0 + 20_000, 0.9)],
      signals: [],
      events: [],
    });
    windows.event('n1', 'preempted', T0 + 120_000, 'scheduler');
    await recorder.flush();

    const recorded = lines(join(dir, TRACE_FILE));
    expect(recorded[0]).toEqual({ format: 'nc-trace/1', source: 'nomad-chain forecaster' });
    expect(recorded.slice(1)).toEqual([
      { t: T0, node: 'n1', pool: 'gpu', event: 'join' },
      { t: T0 + 15_000, node: 'n1', metrics: recordedMetrics(0.25) },
      { t: T0 + 30_000, node: 'n1', metrics: recordedMetrics(0.5) },
      { t: T0 + 30_000, node: 'n1', pool: 'gpu', event: 'notice' },
      { t: T0 + 120_000, node: 'n1', pool: 'gpu', event: 'preempted' },
    ]);
    expect(recorder.stats).toMatchObject({ lines: 5, dropped: 0 });
    await recorder.close();
  });

  it('rotates into one older file, so both together stay within maxBytes', async () => {
    const maxBytes = 64 * 1024;
    const recorder = await TraceRecorder.open({ dir, maxBytes, flushBytes: 4096 }, log);
    for (let i = 0; i < 3000; i += 1) recorder.sample(`node-${i % 7}`, point(T0 + i * 1000, (i % 100) / 100));
    await recorder.close();
    const live = statSync(join(dir, TRACE_FILE)).size;
    const rotated = statSync(join(dir, ROTATED_FILE)).size;
    expect(recorder.stats.rotations).toBeGreaterThan(1);
    expect(live + rotated).toBeLessThanOrEqual(maxBytes);
    // Each file starts with the header, so either one alone is a valid trace; the newest lines survive.
    expect(lines(join(dir, ROTATED_FILE))[0]).toMatchObject({ format: 'nc-trace/1' });
    const newest = lines(join(dir, TRACE_FILE));
    expect(newest[newest.length - 1]).toMatchObject({ t: T0 + 2999 * 1000, node: 'node-3' });
  });

  it('continues an existing file after a restart, and caps what it buffers when the disk does not keep up', async () => {
    const first = await TraceRecorder.open({ dir, maxBytes: 1024 * 1024 }, log);
    first.history('n1', 'default', 'join', T0);
    await first.close();
    const second = await TraceRecorder.open({ dir, maxBytes: 1024 * 1024, maxBufferBytes: 300, flushBytes: 1e9 }, log);
    for (let i = 0; i < 10; i += 1) second.history('n1', 'default', 'drain-started', T0 + i);
    expect(second.stats.dropped).toBeGreaterThan(0);
    await second.close();
    const recorded = lines(join(dir, TRACE_FILE));
    expect(recorded.filter((l) => l.format !== undefined)).toHaveLength(1);
    expect(recorded).toHaveLength(1 + 1 + second.stats.lines);
  });

  it('a failed write drops those lines, counts them, and recording goes on', async () => {
    const recorder = await TraceRecorder.open({ dir: join(dir, 'sub'), maxBytes: 1024 * 1024 }, log);
    rmSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'sub'), 'a file where the folder was');
    recorder.history('n1', 'default', 'join', T0);
    await recorder.flush();
    expect(recorder.stats).toMatchObject({ writeFailures: 1, dropped: 1 });
    rmSync(join(dir, 'sub'));
    const again = await TraceRecorder.open({ dir: join(dir, 'sub'), maxBytes: 1024 * 1024 }, log);
    again.history('n1', 'default', 'join', T0);
    await again.close();
    expect(existsSync(join(dir, 'sub', TRACE_FILE))).toBe(true);
  });
});

describe('snapshotTrace', () => {
  it('joins the files oldest first, leaves out torn and foreign lines, and counts what it kept', async () => {
    const old = join(dir, 'old.ndjson');
    const live = join(dir, 'live.ndjson');
    writeFileSync(
      old,
      [
        '{"format":"nc-trace/1"}',
        `{"t":${T0},"node":"a","pool":"p","event":"join"}`,
        `{"t":${T0 + 5},"node":"a","metrics":{"cpu":0.5}}`,
        '',
      ].join('\n'),
    );
    writeFileSync(
      live,
      [
        `{"t":${T0 + 10},"node":"b","event":"join"}`,
        `{"t":${T0 + 20},"node":"a","event":"preempted"}`,
        `{"t":${T0 + 21},"node":"a","event":"exploded"}`,
        `{"t":1.5,"node":"a","event":"join"}`,
        `{"t":${T0 + 30},"node":"b","metr`,
      ].join('\n'),
    );
    const dest = join(dir, 'snapshot.ndjson');
    const stats = await snapshotTrace([join(dir, 'missing.ndjson'), old, live], dest);
    expect(stats).toEqual({
      events: 3,
      samples: 1,
      preemptions: 1,
      nodes: 2,
      firstMs: T0,
      lastMs: T0 + 20,
      skipped: 3,
    });
    expect(lines(dest).map((l) => l.t)).toEqual([T0, T0 + 5, T0 + 10, T0 + 20]);
  });

  it('an empty recording has no span', async () => {
    const stats = await snapshotTrace([join(dir, 'none.ndjson')], join(dir, 'out.ndjson'));
    expect(stats).toMatchObject({ events: 0, samples: 0, firstMs: 0, lastMs: 0 });
  });
});
