import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..', '..');
const DATA = resolve(ROOT, '..', 'shared', 'data');
const PARCAE = join(DATA, 'aws-p3-spot-nodes-parcae.csv');
const G4DN = join(DATA, 'aws-g4dn-xlarge-us-east-1c-2020-11-20-bamboo.csv');
const KEYS = [
  'rocAuc',
  'prAuc',
  'precision',
  'recall',
  'leadTimeMedianS',
  'leadTimeP10S',
  'falseDrainsPer100NodeDays',
].sort();
const BASELINES = ['historicalRate', 'nodeAge', 'poolBurst', 'prophet', 'reactive', 'utilisation'];

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** `npm run forecast -- ARGS`, run as the npm script does (without npm's own output). */
function forecast(args: readonly string[]): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['-r', './scripts/register.js', 'forecaster/src/cli/forecast.ts', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

function json(run: Run): Record<string, unknown> {
  if (run.status !== 0) throw new Error(`forecast exited ${run.status}: ${run.stderr}`);
  return JSON.parse(run.stdout) as Record<string, unknown>;
}

describe('npm run forecast (Python trainer + onnxruntime-node scoring)', () => {
  let dir: string;
  beforeAll(() => {
    for (const trace of [PARCAE, G4DN]) if (!existsSync(trace)) throw new Error(`shared trace ${trace} is missing`);
    dir = mkdtempSync(join(tmpdir(), 'nc-c1-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('evaluate trains on the first 60 % and scores the rest, model and every baseline with the same keys', async () => {
    const report = join(dir, 'report.html');
    const result = json(await forecast(['evaluate', '--trace', PARCAE, '--json', '--report', report])) as {
      model: Record<string, number | null>;
      baselines: Record<string, Record<string, number | null>>;
      context: { splitMs: number; spanMs: [number, number]; rows: number };
    };
    expect(Object.keys(result.model).sort()).toEqual(KEYS);
    expect(Object.keys(result.baselines).sort()).toEqual(BASELINES);
    for (const metrics of Object.values(result.baselines)) expect(Object.keys(metrics).sort()).toEqual(KEYS);
    const [start, end] = result.context.spanMs;
    expect(result.context.splitMs).toBe(start + Math.floor((end - start) * 0.6));
    expect(result.model.prAuc).toBeGreaterThan(0);
    expect(result.model.rocAuc).toBeGreaterThan(0.5);
    const page = readFileSync(report, 'utf8');
    // PR curves, lead times, and warned-ahead share against node-time fenced.
    expect(page.match(/data:image\/png;base64,/g)).toHaveLength(3);
  }, 280_000);

  // The bar: on every shared trace, held-out time, the model beats each baseline computed in the same run.
  it.each(readdirSync(DATA).filter((f) => f.endsWith('.csv')))(
    'evaluate on %s: the model beats every baseline on PR-AUC on held-out time',
    async (file) => {
      const result = json(await forecast(['evaluate', '--trace', join(DATA, file), '--json'])) as {
        model: { prAuc: number };
        baselines: Record<string, { prAuc: number | null }>;
      };
      expect(Object.keys(result.baselines).sort()).toEqual(BASELINES);
      for (const [name, baseline] of Object.entries(result.baselines)) {
        expect({ baseline: name, beaten: result.model.prAuc > (baseline.prAuc ?? 0) }).toEqual({
          baseline: name,
          beaten: true,
        });
      }
    },
    280_000,
  );

  it('evaluate --leave-out scores a trace with a model of other traces only, and says what each figure spent', async () => {
    const result = json(
      await forecast(['evaluate', '--trace', G4DN, '--train-traces', PARCAE, '--leave-out', '--json']),
    ) as {
      boughtTime: {
        budget: Record<string, number>;
        scorers: Record<string, { atBudget: { chosenOn: string; warnedShare: Record<string, number | null> } }>;
      };
      context: { training: { traces: string[]; leaveOut: boolean; pooled: boolean }; policyChosenOn: string };
    };
    expect(result.context.training).toMatchObject({ traces: [PARCAE], leaveOut: true, pooled: true });
    expect(result.context.policyChosenOn).toContain('out-of-fold');
    expect(result.boughtTime.budget).toEqual({ maxFencedShare: 0.05, maxFalseDrainsPer100NodeDays: 10 });
    expect(Object.keys(result.boughtTime.scorers).sort()).toEqual(['model', ...BASELINES].sort());
    for (const scorer of Object.values(result.boughtTime.scorers)) {
      expect(Object.keys(scorer.atBudget.warnedShare).sort()).toEqual(['120', '150', '300', '600']);
      expect(scorer.atBudget.chosenOn).not.toBe('');
    }
  }, 280_000);

  it('train writes a servable model that evaluate --model scores on a whole other trace', async () => {
    const model = join(dir, 'model');
    const trained = json(await forecast(['train', '--trace', PARCAE, '--out', model])) as {
      servable: string;
      card: { version: string; policy: Record<string, unknown> };
    };
    expect(trained.servable).toBe(trained.card.version);
    // The serving side's two-level policy, in exactly the shape it parses.
    expect(Object.keys(trained.card.policy).sort()).toEqual([
      'budget',
      'chosenOn',
      'drainThreshold',
      'prewarnThreshold',
    ]);
    const result = json(await forecast(['evaluate', '--trace', G4DN, '--model', model, '--json'])) as {
      model: Record<string, number | null>;
      context: { splitMs: number | null; modelVersion: string };
    };
    expect(result.context.splitMs).toBeNull();
    expect(result.context.modelVersion).toBe(trained.card.version);
    expect(Object.keys(result.model).sort()).toEqual(KEYS);

    const registry = join(dir, 'registry');
    const first = json(await forecast(['promote', '--registry', registry, '--candidate', model, '--trace', G4DN]));
    expect(first.promoted).toBe(true);
    const again = json(await forecast(['promote', '--registry', registry, '--candidate', model, '--trace', G4DN]));
    expect(again.promoted).toBe(false);
    const rollback = await forecast(['rollback', '--registry', registry]);
    expect(rollback.status).toBe(1);
    expect(rollback.stderr).toContain('NC_FORECAST_REGISTRY_REFUSED');
  }, 280_000);

  it('retrain holds out the last hours, promotes a first model and refuses one no better than the serving model', async () => {
    const registry = join(dir, 'retrain-registry');
    const first = json(await forecast(['retrain', '--trace', PARCAE, '--registry', registry]));
    expect(first).toMatchObject({ promoted: true, serving: null });
    const second = json(await forecast(['retrain', '--trace', PARCAE, '--registry', registry]));
    expect(second).toMatchObject({ promoted: false, serving: first.candidate });
    const state = JSON.parse(readFileSync(join(registry, 'registry.json'), 'utf8')) as {
      current: string;
      decisions: unknown[];
    };
    expect(state.current).toBe(first.candidate);
    expect(state.decisions).toHaveLength(2);
    expect(existsSync(join(registry, 'versions', String(first.candidate), 'model.onnx'))).toBe(true);
  }, 280_000);

  it('refuses a corrupt --model with NC_MODEL_CORRUPT and a bad trace with NC_FORECAST_TRACE_INVALID', async () => {
    const bad = join(dir, 'corrupt');
    rmSync(bad, { recursive: true, force: true });
    const made = await forecast(['train', '--trace', PARCAE, '--out', bad]);
    expect(made.status).toBe(0);
    writeFileSync(join(bad, 'model.onnx'), 'not a model');
    const refused = await forecast(['evaluate', '--trace', PARCAE, '--model', bad, '--json']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('NC_MODEL_CORRUPT');

    const junk = join(dir, 'junk.csv');
    writeFileSync(junk, 'a;b\n');
    const unreadable = await forecast(['evaluate', '--trace', junk]);
    expect(unreadable.status).toBe(1);
    expect(unreadable.stderr).toContain('NC_FORECAST_TRACE_INVALID');
    const usage = await forecast(['evaluate']);
    expect(usage.status).toBe(64);
    expect(usage.stderr).toContain('NC_FORECAST_USAGE');
  }, 280_000);
});
