/**
 * @jest-environment ./test/fixtures/forecaster/onnx-environment.js
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promote } from '../../../forecaster/src/cli/forecast';
import { PythonTrainer } from '../../../forecaster/src/cli/python-trainer';
import { eventually } from '../../harness/eventually';
import { REPO } from '../../fixtures/forecaster/python';
import { buildTestModel } from '../../fixtures/forecaster/test-model';

const PERIODIC = join(REPO, 'test/fixtures/replay/periodic-trace.ndjson');

/** `npm start`'s process; resolves with everything it printed up to the "up" banner. */
function startLocalMode(args: readonly string[]): { child: ChildProcess; up: Promise<string>; output: () => string } {
  const child = spawn(process.execPath, ['-r', './scripts/register.js', 'local/main.ts', ...args], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const up = new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', () => {
      if (out.includes('Press Ctrl-C to stop.')) resolve(out);
    });
    child.once('exit', (code) => reject(new Error(`npm start exited with ${code ?? 'a signal'}:\n${out}`)));
  });
  return { child, up, output: () => out };
}

function stopped(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

// Local mode with its forecaster, for real: `npm start -- -forecaster DIR` brings up the cluster (namespaces,
// sidecars, HAProxy), the controller API and the forecaster as its own process serving the registry's current
// model; the forecaster follows the controller's events and records them for its retrain timer.
describe('npm start -- -forecaster DIR (issue 6)', () => {
  let dir: string;
  let run: ReturnType<typeof startLocalMode> | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nc-local-forecaster-'));
  });
  afterAll(async () => {
    if (run !== undefined && run.child.exitCode === null) {
      run.child.kill('SIGINT');
      await stopped(run.child);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the registry's current model and records what the controller reports, then stops cleanly", async () => {
    const seed = await buildTestModel(join(dir, 'seed'), 'seed-1');
    const decision = (await promote(PythonTrainer.locate(REPO), {
      trace: PERIODIC,
      registry: join(dir, 'models'),
      candidate: seed.dir,
    })) as { promoted: boolean };
    expect(decision.promoted).toBe(true);

    run = startLocalMode(['-forecaster', dir, '-nodes', '2', '-no-example']);
    const banner = await run.up;
    const forecasterUrl = /forecaster\s+(http:\/\/127\.0\.0\.1:\d+)\/v1\/risk/.exec(banner)?.[1];
    const controllerUrl = /controller\s+(http:\/\/127\.0\.0\.1:\d+)\/v1\/nodes/.exec(banner)?.[1];
    if (forecasterUrl === undefined || controllerUrl === undefined) throw new Error(`no URLs in:\n${banner}`);

    const risk = await eventually(async () => {
      const res = await fetch(`${forecasterUrl}/v1/risk`);
      const body = (await res.json()) as { model: { version: string }; nodes: { node: string }[] };
      expect(body.nodes.map((n) => n.node).sort()).toEqual(['node1', 'node2']);
      return body;
    }, 60_000);
    expect(risk.model.version).toBe('seed-1');
    const metrics = await (await fetch(`${forecasterUrl}/metrics`)).text();
    expect(metrics).toContain('nc_forecaster_retrains_total{outcome="promoted"} 0');
    // Every node's sidecar streams its telemetry to the forecaster across the cluster's bridge.
    await eventually(async () => {
      const text = await (await fetch(`${forecasterUrl}/metrics`)).text();
      expect(Number(/^nc_forecaster_telemetry_streams_total (\d+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(2);
      expect(Number(/^nc_forecaster_telemetry_samples_total (\d+)/m.exec(text)?.[1])).toBeGreaterThan(0);
    }, 90_000);

    // The cloud takes node2: the controller reports it, the forecaster records the pre-emption for retraining.
    const preempted = await fetch(`${controllerUrl}/v1/node/node2/preempt`, { method: 'POST', body: '{}' });
    expect(preempted.status).toBe(200);
    const trace = join(dir, 'data', 'trace', 'observed.ndjson');
    const recorded = await eventually(async () => {
      const lines = readFileSync(trace, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { node?: string; event?: string; t?: number });
      expect(lines.filter((l) => l.event !== undefined).map((l) => `${l.node} ${l.event}`)).toEqual([
        'node1 join',
        'node2 join',
        'node2 preempted',
      ]);
      return lines;
    }, 60_000);
    expect(recorded[0]).toMatchObject({ format: 'nc-trace/1' });

    run.child.kill('SIGINT');
    expect(await stopped(run.child)).toBe(0);
    const runDir = /Logs kept in (\S+)\/logs/.exec(run.output())?.[1];
    expect(runDir).toBeDefined();
    if (runDir !== undefined) rmSync(runDir, { recursive: true, force: true });
    expect(readFileSync(join(dir, 'forecaster.log'), 'utf8')).toContain('"msg":"forecaster stopping"');
  }, 300_000);
});
