/**
 * Forecaster benchmark (npm run bench:forecaster): figures beside baselines measured in the same run.
 *   1. scoring 10,000 nodes per tick: one batched onnxruntime-node call vs one call per node (target <= 50 ms);
 *   2. feature building for those nodes (the rest of a tick);
 *   3. memory per tracked node: the typed-array windows vs the same samples kept as objects;
 *   4. telemetry ingest over real gRPC (127.0.0.1): batched streams vs one sample per message (target >= 20,000/s).
 * The model is the trainer's own (LightGBM or its rival, chosen by the trainer) trained on the largest shared trace,
 * unless `--model DIR` names one. Run with --expose-gc for the memory figure (the npm script does).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Server, credentials } from '@grpc/grpc-js';
import pino from 'pino';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { bindServer, shutdownServer } from '../common/grpc/server';
import { FeatureBuilder } from '../forecaster/src/features/feature-builder';
import { loadFeatureSpec } from '../forecaster/src/features/feature-spec';
import { TelemetryIngest } from '../forecaster/src/ingest/telemetry-ingest';
import { OnnxModelRunner } from '../forecaster/src/model/onnx-model-runner';
import { ClusterWindows } from '../forecaster/src/windows/cluster-windows';
import type { TelemetryPoint } from '../forecaster/src/windows/node-window';
import { TelemetryClient, TelemetryService } from '../proto/gen/chain/v1/telemetry';
import type { TelemetryAck, TelemetrySample } from '../proto/gen/chain/v1/telemetry';

const ROOT = resolve(__dirname, '..');
const NODES = 10_000;
const SAMPLES_PER_NODE = 96;
const log = pino({ level: 'silent' });

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function stats(ms: number[]): { median: number; p95: number; min: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { median: at(0.5), p95: at(0.95), min: s[0] ?? NaN };
}

const fmt = (x: number, digits = 1): string => x.toFixed(digits);

function trainModel(dir: string): string {
  const trace = resolve(ROOT, '../shared/data/aws-p3-spot-nodes-parcae.csv');
  const python = resolve(ROOT, '.venv/bin/python');
  const started = Date.now();
  execFileSync(python, ['-m', 'nc_forecast.cli', 'train', '--trace', trace, '--out', dir], {
    cwd: resolve(ROOT, 'forecaster/training'),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  console.log(`model: trained by nc_forecast on ${trace} in ${fmt((Date.now() - started) / 1000)} s`);
  return dir;
}

/**
 * The heaviest candidate the trainer may pick (LightGBM, 200 trees of 15 leaves, as nc_forecast/train.py sets it),
 * fitted on random rows and exported by the trainer's own to_onnx, so the scoring figure holds whichever model wins.
 */
function lightgbmModel(dir: string): string {
  const code = `
import json, sys
import numpy as np, lightgbm as lgb
from nc_forecast.features import load_spec
from nc_forecast.export import to_onnx
spec = load_spec()
rng = np.random.default_rng(0)
X = rng.uniform(0, 1, size=(20000, len(spec.names))).astype(np.float32)
y = (X[:, 0] + X[:, -1] + rng.normal(0, 0.3, len(X)) > 1).astype(int)
m = lgb.LGBMClassifier(n_estimators=200, num_leaves=15, num_threads=1, verbose=-1).fit(X, y)
open(sys.argv[1] + "/model.onnx", "wb").write(to_onnx(m, len(spec.names)).SerializeToString())
json.dump({"version": "bench-lightgbm", "features": spec.names, "featureSpec": spec.id, "input": "features",
           "output": "probabilities", "algorithm": "lightgbm (bench: 200 trees, 15 leaves)"}, open(sys.argv[1] + "/model-card.json", "w"))
`;
  mkdirSync(dir, { recursive: true });
  execFileSync(resolve(ROOT, '.venv/bin/python'), ['-c', code, dir], {
    cwd: resolve(ROOT, 'forecaster/training'),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return dir;
}

function point(t: number, i: number): TelemetryPoint {
  const x = (i * 7919) % 1000;
  return {
    timeMs: t,
    cpu: x / 1000,
    memSomeAvg10: x % 17,
    memFullAvg10: x % 5,
    memUsed: 0.3 + (x % 500) / 1000,
    netRxBps: x * 1000.5,
    netTxBps: x * 500.25,
    diskReadBps: x * 4096,
    diskWriteBps: x * 8192,
  };
}

function heap(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

async function scoring(modelDir: string, withMemory: boolean): Promise<void> {
  const spec = loadFeatureSpec(resolve(ROOT, 'forecaster/training/feature-spec.json'));
  const runner = await OnnxModelRunner.load(modelDir, { names: spec.names, specId: spec.id });
  const card = JSON.parse(readFileSync(join(modelDir, 'model-card.json'), 'utf8')) as { algorithm?: string };
  console.log(
    `model: ${runner.card.version} (${card.algorithm ?? 'algorithm not recorded'}), ${spec.names.length} features`,
  );
  const now = 1_764_000_000_000;

  // Memory: 10,000 nodes with full windows, against the same samples kept as plain objects.
  const before = heap();
  const windows = new ClusterWindows(
    { maxNodes: NODES * 2, samplesPerNode: SAMPLES_PER_NODE, eventsPerNode: 256, staleAfterMs: 0 },
    spec.poolRetainMs,
    () => now,
  );
  for (let n = 0; n < NODES; n += 1) {
    const points = Array.from({ length: SAMPLES_PER_NODE }, (_, i) =>
      point(now - (SAMPLES_PER_NODE - i) * 15_000, n + i),
    );
    windows.ingest({ node: `node-${n}`, pool: `pool-${n % 20}`, nodeClass: '', points, signals: [], events: [] });
  }
  const windowBytes = (heap() - before) / NODES;
  const beforeObjects = heap();
  const objects = new Map<string, TelemetryPoint[]>();
  for (let n = 0; n < NODES; n += 1) {
    objects.set(
      `node-${n}`,
      Array.from({ length: SAMPLES_PER_NODE }, (_, i) => ({ ...point(now - (SAMPLES_PER_NODE - i) * 15_000, n + i) })),
    );
  }
  const objectBytes = (heap() - beforeObjects) / NODES;
  if (withMemory)
    console.log(
      `memory per tracked node (${SAMPLES_PER_NODE} samples): typed-array window ${fmt(windowBytes / 1024, 2)} KiB | baseline objects ${fmt(objectBytes / 1024, 2)} KiB` +
        ((globalThis as { gc?: unknown }).gc === undefined ? ' (no --expose-gc: approximate)' : ''),
    );
  objects.clear();

  // Features for every node (the other half of a tick).
  const builder = new FeatureBuilder(spec);
  const alive = windows.alive();
  const batch = new Float32Array(alive.length * builder.width);
  const featureMs: number[] = [];
  for (let r = 0; r < 10; r += 1) {
    const t0 = performance.now();
    alive.forEach((w, i) => builder.row(w, windows.poolOf(w), now, batch, i * builder.width));
    featureMs.push(performance.now() - t0);
  }
  const f = stats(featureMs);
  if (withMemory) console.log(`features for ${alive.length} nodes: median ${fmt(f.median)} ms, p95 ${fmt(f.p95)} ms`);

  // Scoring: one batched call per tick vs one call per node, same rows, same session settings.
  await runner.score(batch, alive.length);
  const batchedMs: number[] = [];
  for (let r = 0; r < 30; r += 1) {
    const t0 = performance.now();
    await runner.score(batch, alive.length);
    batchedMs.push(performance.now() - t0);
  }
  const session = await InferenceSession.create(join(modelDir, 'model.onnx'), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  const input = runner.card.input ?? session.inputNames[0] ?? 'features';
  const output = runner.card.output ?? 'probabilities';
  const perNodeMs: number[] = [];
  for (let r = 0; r < 3; r += 1) {
    const t0 = performance.now();
    for (let i = 0; i < alive.length; i += 1) {
      const row = batch.subarray(i * builder.width, (i + 1) * builder.width);
      await session.run({ [input]: new Tensor('float32', row, [1, builder.width]) }, [output]);
    }
    perNodeMs.push(performance.now() - t0);
  }
  await session.release();
  await runner.release();
  const b = stats(batchedMs);
  const p = stats(perNodeMs);
  console.log(
    `scoring ${alive.length} nodes per tick: batched session.run median ${fmt(b.median)} ms, p95 ${fmt(b.p95)} ms (target <= 50 ms: ${b.p95 <= 50 ? 'met' : 'NOT met'}) | baseline per-node session.run median ${fmt(p.median)} ms (${fmt(p.median / b.median)}x slower)`,
  );
}

async function ingest(): Promise<void> {
  const spec = loadFeatureSpec(resolve(ROOT, 'forecaster/training/feature-spec.json'));
  let now = 1_764_000_000_000;
  const windows = new ClusterWindows(
    { maxNodes: 100_000, samplesPerNode: SAMPLES_PER_NODE, eventsPerNode: 256, staleAfterMs: 0 },
    spec.poolRetainMs,
    () => now,
  );
  const service = new TelemetryIngest(windows, log);
  const server = new Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  server.addService(TelemetryService, service.handlers());
  const port = await bindServer(server, '127.0.0.1:0');
  const client = new TelemetryClient(`127.0.0.1:${port}`, credentials.createInsecure());

  const sample = (seq: number, t: number): TelemetrySample => ({
    seq,
    timeUnixMs: t,
    cpuUtilisation: (seq % 100) / 100,
    memory: { source: 1, someAvg10: 1.5, fullAvg10: 0.25, usedFraction: 0.5 },
    netRxBytesPerS: 1e6,
    netTxBytesPerS: 5e5,
    diskReadBytesPerS: 4096,
    diskWriteBytesPerS: 8192,
    signals: [],
    events: [],
    signalsOnly: false,
  });

  /** `agents` streams each sending `perAgent` samples in batches of `batchSize`; resolves samples/s acknowledged. */
  const run = async (agents: number, perAgent: number, batchSize: number): Promise<number> => {
    now += 10_000_000;
    const base = now;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: agents }, (_, a) => {
        return new Promise<void>((done, fail) => {
          const call = client.stream();
          call.on('data', (ack: TelemetryAck) => {
            if (ack.ackedSeq >= perAgent) {
              call.end();
              done();
            }
          });
          call.on('error', fail);
          let seq = 0;
          const pump = (): void => {
            while (seq < perAgent) {
              const samples: TelemetrySample[] = [];
              for (let i = 0; i < batchSize && seq < perAgent; i += 1) {
                seq += 1;
                samples.push(sample(seq, base + seq * 1000));
              }
              if (!call.write({ node: `bench-${batchSize}-${a}`, nodePool: 'bench', nodeClass: '', samples })) {
                call.once('drain', pump);
                return;
              }
            }
          };
          pump();
        });
      }),
    );
    return (agents * perAgent) / ((performance.now() - t0) / 1000);
  };

  await run(2, 2000, 256);
  const batched = await run(8, 40_000, 256);
  const single = await run(8, 2_500, 1);
  console.log(
    `telemetry ingest over gRPC (8 streams, client and server in this one process): batches of 256 ${fmt(batched, 0)} samples/s (target >= 20,000: ${batched >= 20_000 ? 'met' : 'NOT met'}) | baseline one sample per message ${fmt(single, 0)} samples/s`,
  );
  client.close();
  await shutdownServer(server, 1000);
}

async function main(): Promise<void> {
  console.log(`nomad-chain forecaster bench, ${new Date().toISOString()}, node ${process.version}`);
  const given = arg('--model');
  const scratch = mkdtempSync(join(tmpdir(), 'nc-bench-forecaster-'));
  try {
    const modelDir = given ?? trainModel(join(scratch, 'model'));
    await scoring(modelDir, true);
    if (given === undefined) await scoring(lightgbmModel(join(scratch, 'lightgbm')), false);
    await ingest();
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
