/**
 * @jest-environment ./test/fixtures/forecaster/onnx-environment.js
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import pino from 'pino';
import { promote } from '../../../forecaster/src/cli/forecast';
import { PythonTrainer } from '../../../forecaster/src/cli/python-trainer';
import { parseConfig } from '../../../forecaster/src/config';
import { loadFeatureSpec } from '../../../forecaster/src/features/feature-spec';
import { ForecasterService } from '../../../forecaster/src/forecaster-service';
import { TRACE_FILE } from '../../../forecaster/src/record/trace-recorder';
import { PythonRetrainer } from '../../../forecaster/src/retrain/python-retrainer';
import { TelemetryClient } from '../../../proto/gen/chain/v1/telemetry';
import type { TelemetryAck } from '../../../proto/gen/chain/v1/telemetry';
import { FakeSchedulerActions } from '../../fakes/fake-scheduler-actions';
import { FakeClock } from '../../fakes/fake-clock';
import { eventually } from '../../harness/eventually';
import { FEATURE_SPEC, REPO } from '../../fixtures/forecaster/python';
import { buildTestModel } from '../../fixtures/forecaster/test-model';

// Local mode's retrain, for real: the forecaster's recorded trace (seeded from the shared parcae trace, moved to
// end just before the clock's now), the project's .venv Python trainer run by the retrain timer exactly as
// `npm run forecast -- retrain` runs it, the file registry, and onnxruntime-node loading the promoted model
// through the serving path. Only time is simulated, so the timer fires when the test says.
const PARCAE = resolve(REPO, '../shared/data/aws-p3-spot-nodes-parcae.csv');
const HOUR = 3_600_000;
const NOW = 1_764_000_000_000;

interface RegistryIndex {
  current: string | null;
  history: string[];
  decisions: { promoted?: boolean; reason?: string }[];
}

describe('retrain timer with the real trainer and onnxruntime-node (issue 6)', () => {
  let root: string;
  let trainer: PythonTrainer;
  let recorded: string;
  let weak: string;

  const readIndex = (registry: string): RegistryIndex =>
    JSON.parse(readFileSync(join(registry, 'registry.json'), 'utf8')) as RegistryIndex;

  /** A forecaster over `registry` whose data dir holds the recorded trace; the timer fires every hour. */
  async function forecaster(
    name: string,
    registry: string,
    extra: Record<string, unknown>,
  ): Promise<{ service: ForecasterService; clock: FakeClock }> {
    const dataDir = join(root, name, 'data');
    mkdirSync(join(dataDir, 'trace'), { recursive: true });
    writeFileSync(join(dataDir, 'trace', TRACE_FILE), readFileSync(recorded));
    const clock = new FakeClock(NOW, { sleep: 'waits' });
    const config = parseConfig({
      modelRegistry: registry,
      dataDir,
      controllerAddress: 'http://127.0.0.1:9',
      telemetryAddress: '127.0.0.1',
      telemetryPort: 0,
      httpAddress: '127.0.0.1',
      httpPort: 0,
      tick: '10s',
      modelPoll: '30s',
      retrainInterval: '1h',
      // parcae spans 6.8 h: longer than the retrain's 6 h validation window, shorter than the 12 h default.
      retrainMinSpan: '6h30m',
      ...extra,
    });
    const service = await ForecasterService.create({
      config,
      spec: loadFeatureSpec(FEATURE_SPEC),
      clock,
      log: pino({ level: process.env.NC_TEST_LOG ?? 'silent' }),
      actions: new FakeSchedulerActions(),
      retrainer: new PythonRetrainer(trainer),
    });
    service.start();
    return { service, clock };
  }

  const servingVersion = async (service: ForecasterService): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${service.httpPort}/v1/risk`);
    expect(res.status).toBe(200);
    return ((await res.json()) as { model: { version: string } }).model.version;
  };

  /** Moves the clock one retrain interval and waits for that run to finish (training takes seconds). */
  const fireTimer = async (service: ForecasterService, clock: FakeClock): Promise<void> => {
    const timer = service.retrainTimer;
    if (timer === undefined) throw new Error('the forecaster built no retrain timer');
    const before = Object.values(timer.counts).reduce((a, b) => a + b, 0);
    clock.advance(HOUR);
    await eventually(
      async () => expect(Object.values(timer.counts).reduce((a, b) => a + b, 0)).toBe(before + 1),
      240_000,
      200,
    );
  };

  beforeAll(async () => {
    if (!existsSync(PARCAE)) throw new Error(`${PARCAE} is missing: the shared traces are needed for this test`);
    root = mkdtempSync(join(tmpdir(), 'nc-retrain-it-'));
    trainer = PythonTrainer.locate(REPO);
    const converted = join(root, 'parcae.ndjson');
    await trainer.run(['convert', '--trace', PARCAE, '--out', converted]);
    // The recording a forecaster would have made: the same lines, in Unix time, ending a minute before now.
    const lines = readFileSync(converted, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as { t?: number });
    const end = Math.max(...lines.map((l) => l.t ?? 0));
    const shift = NOW - 60_000 - end;
    recorded = join(root, 'recorded.ndjson');
    writeFileSync(
      recorded,
      lines.map((l) => JSON.stringify(l.t === undefined ? l : { ...l, t: l.t + shift })).join('\n') + '\n',
    );
    // A weak model (risk follows CPU, which an event-only trace never reports): any trained candidate beats it.
    weak = (await buildTestModel(join(root, 'weak'), 'weak-1')).dir;
  });

  afterAll(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it('promotes a better candidate, and the serving model becomes the registry current; rollback and a corrupt version are followed safely', async () => {
    const registry = join(root, 'promote', 'models');
    const { service, clock } = await forecaster('promote', registry, { modelDir: weak });
    try {
      expect(await servingVersion(service)).toBe('weak-1');
      await fireTimer(service, clock);
      expect(service.retrainTimer?.counts).toMatchObject({ promoted: 1, failed: 0 });
      const index = readIndex(registry);
      // The seed model entered the registry first, so the candidate had to beat it, and did.
      expect(index.history).toHaveLength(2);
      expect(index.history[0]).toBe('weak-1');
      expect(index.decisions[1]).toMatchObject({ promoted: true });
      expect(index.decisions[1]?.reason).toMatch(/^PR-AUC [\d.]+ > serving [\d.]+$/);
      expect(index.current).not.toBe('weak-1');
      expect(await servingVersion(service)).toBe(index.current);

      // An operator's rollback from the CLI is picked up by the model watcher.
      await trainer.run(['rollback', '--registry', registry]);
      clock.advance(30_000);
      await eventually(async () => expect(await servingVersion(service)).toBe('weak-1'), 30_000, 100);

      // A version whose model file is corrupt is refused; the model serving keeps serving.
      const bad = join(registry, 'versions', 'corrupt-1');
      mkdirSync(bad, { recursive: true });
      writeFileSync(join(bad, 'model.onnx'), 'not an onnx graph');
      writeFileSync(join(bad, 'model-card.json'), readFileSync(join(weak, 'model-card.json')));
      writeFileSync(join(registry, 'registry.json'), JSON.stringify({ ...readIndex(registry), current: 'corrupt-1' }));
      const refusals = service.model.refusals;
      clock.advance(30_000);
      await eventually(async () => expect(service.model.refusals).toBe(refusals + 1), 30_000, 100);
      expect(await servingVersion(service)).toBe('weak-1');
    } finally {
      await service.stop();
    }
  });

  it('records what its real telemetry ingest takes in, after the seeded trace, in nc-trace/1', async () => {
    const registry = join(root, 'record', 'models');
    const { service } = await forecaster('record', registry, { modelDir: weak, retrainInterval: 0 });
    const client = new TelemetryClient(`127.0.0.1:${service.telemetryPort}`, credentials.createInsecure());
    try {
      const call = client.stream();
      const acked = new Promise<TelemetryAck>((done) => call.once('data', done));
      const sample = (seq: number, cpu: number, signals: { source: string; kind: string }[] = []) => ({
        seq,
        timeUnixMs: NOW + seq * 15_000,
        cpuUtilisation: cpu,
        memory: { source: 1, someAvg10: 0, fullAvg10: 0, usedFraction: 0.5 },
        netRxBytesPerS: 100,
        netTxBytesPerS: 200,
        diskReadBytesPerS: 0,
        diskWriteBytesPerS: 4096,
        signals: signals.map((s) => ({ ...s, deadlineUnixMs: NOW + 120_000, observedUnixMs: NOW, detail: '' })),
        events: [],
        signalsOnly: false,
      });
      call.write({
        node: 'live-1',
        nodePool: 'spot',
        nodeClass: 'gpu',
        samples: [sample(1, 0.25), sample(2, 0.75, [{ source: 'aws-imds', kind: 'spot-interruption' }])],
      });
      expect(await acked).toEqual({ ackedSeq: 2, rejected: 0 });
      call.end();
      await service.recorder?.flush();
      const text = readFileSync(join(root, 'record', 'data', 'trace', TRACE_FILE), 'utf8');
      expect(text.startsWith(readFileSync(recorded, 'utf8'))).toBe(true);
      const added = text
        .slice(readFileSync(recorded, 'utf8').length)
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const metrics = (cpu: number): Record<string, number> => ({
        cpu,
        memSomeAvg10: 0,
        memFullAvg10: 0,
        memUsed: 0.5,
        netRxBps: 100,
        netTxBps: 200,
        diskReadBps: 0,
        diskWriteBps: 4096,
      });
      expect(added).toEqual([
        { t: NOW + 15_000, node: 'live-1', pool: 'spot', event: 'join' },
        { t: NOW + 15_000, node: 'live-1', metrics: metrics(0.25) },
        { t: NOW + 30_000, node: 'live-1', metrics: metrics(0.75) },
        { t: NOW + 30_000, node: 'live-1', pool: 'spot', event: 'notice' },
      ]);
    } finally {
      client.close();
      await service.stop();
    }
  });

  it('keeps the serving model when the candidate is worse: nothing changes', async () => {
    const registry = join(root, 'keep', 'models');
    // The incumbent was trained on the whole trace, the recent 6 h included: the retrain (which must hold them
    // out) cannot beat it there.
    const strong = join(root, 'strong');
    await trainer.run(['train', '--trace', recorded, '--out', strong]);
    await promote(trainer, { trace: recorded, registry, candidate: strong });
    const incumbent = readIndex(registry).current;
    expect(incumbent).not.toBeNull();

    const { service, clock } = await forecaster('keep', registry, {});
    try {
      expect(await servingVersion(service)).toBe(incumbent);
      await fireTimer(service, clock);
      expect(service.retrainTimer?.counts).toMatchObject({ kept: 1, promoted: 0, failed: 0 });
      const index = readIndex(registry);
      expect(index.current).toBe(incumbent);
      expect(index.history).toEqual([incumbent]);
      expect(index.decisions[index.decisions.length - 1]).toMatchObject({ promoted: false });
      expect(index.decisions[index.decisions.length - 1]?.reason).toMatch(/^PR-AUC [\d.]+ <= serving [\d.]+$/);
      expect(await servingVersion(service)).toBe(incumbent);
    } finally {
      await service.stop();
    }
  });
});
