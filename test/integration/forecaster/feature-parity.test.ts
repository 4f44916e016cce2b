import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeatureBuilder } from '../../../forecaster/src/features/feature-builder';
import { loadFeatureSpec } from '../../../forecaster/src/features/feature-spec';
import { ClusterWindows } from '../../../forecaster/src/windows/cluster-windows';
import { historyKindOfSignal } from '../../../forecaster/src/windows/signal-kind';
import { FEATURE_SPEC, runPython } from '../../fixtures/forecaster/python';
import { syntheticTrace } from '../../fixtures/forecaster/trace';
import type { TraceLine } from '../../fixtures/forecaster/trace';

interface PythonRows {
  names: string[];
  t: number[];
  node: string[];
  X: number[][];
}

const PYTHON_FEATURES = `
import json, sys
from nc_forecast.traces import read_trace
from nc_forecast.features import load_spec, build_windows
trace = read_trace(sys.argv[1], "ndjson")
w = build_windows(trace, load_spec(sys.argv[2]))
json.dump({"names": w.names, "t": w.t_ms.tolist(), "node": [str(n) for n in w.node], "X": w.X.tolist()}, sys.stdout)
`;

/** Replays the trace through the serving path (ClusterWindows.ingest) and builds rows at the given ticks. */
function typescriptRows(lines: readonly TraceLine[], ticks: readonly number[]): Map<string, Float32Array> {
  const spec = loadFeatureSpec(FEATURE_SPEC);
  const builder = new FeatureBuilder(spec);
  let now = 0;
  const windows = new ClusterWindows(
    { maxNodes: 1000, samplesPerNode: 256, eventsPerNode: 1024, staleAfterMs: 0 },
    spec.poolRetainMs,
    () => now,
  );
  // The trainer's order: events by time with joins first at equal times, samples after the events of their time.
  const ordered = lines
    .map((line, i) => ({ line, i }))
    .sort((a, b) => {
      const rank = (l: TraceLine): number => ('event' in l ? (l.event === 'join' ? 0 : 1) : 2);
      return a.line.t - b.line.t || rank(a.line) - rank(b.line) || a.i - b.i;
    })
    .map((x) => x.line);
  const rows = new Map<string, Float32Array>();
  let next = 0;
  for (const t of ticks) {
    while (next < ordered.length && (ordered[next] as TraceLine).t <= t) {
      const line = ordered[next] as TraceLine;
      next += 1;
      now = line.t;
      // A cloud signal arrives as the sidecar's telemetry carries it: a signal on the node's sample.
      const signal = 'event' in line && line.kind !== undefined;
      windows.ingest({
        node: line.node,
        pool: line.pool ?? '',
        nodeClass: '',
        points: 'metrics' in line ? [{ timeMs: line.t, ...line.metrics }] : [],
        signals: signal ? [{ source: 'cloud', kind: line.kind as string, deadlineMs: 0, detail: '' }] : [],
        events: 'event' in line && !signal ? [{ timeMs: line.t, kind: line.event, detail: '' }] : [],
      });
    }
    now = t;
    windows.prune(t);
    for (const w of windows.alive()) {
      const out = new Float32Array(builder.width);
      builder.row(w, windows.poolOf(w), t, out, 0);
      rows.set(`${t}/${w.node}`, out);
    }
  }
  return rows;
}

describe('feature parity: TypeScript serving features == Python trainer features', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nc-c2-parity-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('computes the same value for every feature, node and tick of a synthetic trace', async () => {
    const lines = syntheticTrace();
    const tracePath = join(dir, 'trace.ndjson');
    writeFileSync(tracePath, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');

    const py = JSON.parse(await runPython(PYTHON_FEATURES, [tracePath, FEATURE_SPEC])) as PythonRows;
    const spec = loadFeatureSpec(FEATURE_SPEC);
    expect(py.names).toEqual(spec.names);
    expect(py.t.length).toBeGreaterThan(500);

    const ticks = [...new Set(py.t)].sort((a, b) => a - b);
    const ts = typescriptRows(lines, ticks);
    // Every Python row exists on the TypeScript side and nothing more (same alive nodes at every tick).
    expect(ts.size).toBe(py.t.length);

    const mismatches: string[] = [];
    py.t.forEach((t, r) => {
      const key = `${t}/${py.node[r]}`;
      const mine = ts.get(key);
      if (mine === undefined) {
        mismatches.push(`${key}: no TypeScript row`);
        return;
      }
      (py.X[r] as number[]).forEach((expected, c) => {
        const got = mine[c] as number;
        if (Math.abs(got - expected) > 1e-6 * Math.max(1, Math.abs(expected))) {
          mismatches.push(`${key} ${py.names[c]}: python ${expected} typescript ${got}`);
        }
      });
    });
    expect(mismatches.slice(0, 20)).toEqual([]);
    // Every feature varies across rows, so the comparison is not vacuous.
    spec.names.forEach((_, c) => expect(new Set(py.X.map((row) => row[c])).size).toBeGreaterThan(1));
  });

  it('tells a notice from advice by the same signal kinds as the serving side', async () => {
    // Every kind chain.v1.Telemetry names (proto/telemetry.proto), and one no source sends yet.
    const kinds = [
      'spot-interruption',
      'rebalance-recommendation',
      'scheduled-maintenance',
      'preempted',
      'maintenance-terminate',
      'maintenance-migrate',
      'preempt',
      'terminate',
      'reboot',
      'redeploy',
      'freeze',
      'some-future-kind',
      '',
    ];
    const script = `
import json, sys
from nc_forecast.traces import signal_event
json.dump([signal_event(k) for k in json.loads(sys.argv[1])], sys.stdout)
`;
    const python = JSON.parse(await runPython(script, [JSON.stringify(kinds)])) as string[];
    expect(python).toEqual(kinds.map(historyKindOfSignal));
    expect(python.filter((k) => k === 'advice').length).toBeGreaterThan(3);
  });
});
