/**
 * @jest-environment ./test/fixtures/forecaster/onnx-environment.js
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { errorCode } from '../../../common/errors';
import { loadFeatureSpec } from '../../../forecaster/src/features/feature-spec';
import { OnnxModelRunner } from '../../../forecaster/src/model/onnx-model-runner';
import { ServingModel } from '../../../forecaster/src/model/serving-model';
import { FEATURE_SPEC } from '../../fixtures/forecaster/python';
import { buildTestModel, copyModel } from '../../fixtures/forecaster/test-model';
import type { TestModel } from '../../fixtures/forecaster/test-model';

const spec = loadFeatureSpec(FEATURE_SPEC);
const contract = { names: spec.names, specId: spec.id, specSha256: spec.sha256 as string };
const cpu = spec.names.indexOf('cpu_mean_5m');
const log = pino({ level: 'silent' });

async function refusal(dir: string): Promise<string | undefined> {
  try {
    await OnnxModelRunner.load(dir, contract);
    return undefined;
  } catch (err) {
    return errorCode(err);
  }
}

describe('OnnxModelRunner with real onnxruntime-node', () => {
  let root: string;
  let model: TestModel;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'nc-c2-onnx-'));
    model = await buildTestModel(join(root, 'good'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('scores a whole batch in one call, matching the Python model within 1e-5', async () => {
    const runner = await OnnxModelRunner.load(model.dir, contract);
    const rows = 1000;
    const batch = new Float32Array(rows * spec.names.length);
    for (let r = 0; r < rows; r += 1) batch[r * spec.names.length + cpu] = r % 2 === 0 ? 0.95 : 0.05;
    const scores = await runner.score(batch, rows);
    expect(scores).toHaveLength(rows);
    expect(Math.abs((scores[0] as number) - model.high)).toBeLessThan(1e-5);
    expect(Math.abs((scores[1] as number) - model.low)).toBeLessThan(1e-5);
    expect(model.high).toBeGreaterThan(0.7);
    expect(model.low).toBeLessThan(0.3);
    await runner.release();
  });

  it('refuses a corrupt file with NC_MODEL_CORRUPT and keeps serving the model it had', async () => {
    const serving = new ServingModel(log);
    await serving.replace(() => OnnxModelRunner.load(model.dir, contract));
    const corrupt = join(root, 'corrupt');
    copyModel(model.dir, corrupt);
    const bytes = readFileSync(join(corrupt, 'model.onnx'));
    writeFileSync(join(corrupt, 'model.onnx'), bytes.subarray(0, Math.floor(bytes.length / 3)));
    writeFileSync(
      join(corrupt, 'model-card.json'),
      JSON.stringify({ ...JSON.parse(readFileSync(join(model.dir, 'model-card.json'), 'utf8')), version: 'corrupt' }),
    );

    await expect(serving.replace(() => OnnxModelRunner.load(corrupt, contract))).rejects.toMatchObject({
      code: 'NC_MODEL_CORRUPT',
    });
    expect(serving.card.version).toBe('test-1');
    expect(serving.refusals).toBe(1);
    const row = new Float32Array(spec.names.length);
    row[cpu] = 0.95;
    expect(Math.abs(((await serving.score(row, 1))[0] as number) - model.high)).toBeLessThan(1e-5);
  });

  it('refuses incompatible models and cards with coded errors naming the problem', async () => {
    const card = JSON.parse(readFileSync(join(model.dir, 'model-card.json'), 'utf8')) as Record<string, unknown>;
    const variant = (name: string, patch: Record<string, unknown>): string => {
      const dir = join(root, name);
      copyModel(model.dir, dir);
      writeFileSync(join(dir, 'model-card.json'), JSON.stringify({ ...card, ...patch }));
      return dir;
    };
    expect(await refusal(variant('other-spec', { featureSpec: 'nc-preempt-v0' }))).toBe('NC_MODEL_INCOMPATIBLE');
    expect(await refusal(variant('other-spec-file', { featureSpecSha256: 'f'.repeat(64) }))).toBe(
      'NC_MODEL_INCOMPATIBLE',
    );
    expect(await refusal(variant('reordered', { features: [...spec.names].reverse() }))).toBe('NC_MODEL_INCOMPATIBLE');
    expect(await refusal(variant('wrong-output', { output: 'label' }))).toBe('NC_MODEL_INCOMPATIBLE');
    expect(await refusal(variant('wrong-input', { input: 'x' }))).toBe('NC_MODEL_INCOMPATIBLE');
    expect(await refusal(variant('no-version', { version: '' }))).toBe('NC_MODEL_CARD_INVALID');
    const garbled = join(root, 'garbled-card');
    copyModel(model.dir, garbled);
    writeFileSync(join(garbled, 'model-card.json'), '{"version": ');
    expect(await refusal(garbled)).toBe('NC_MODEL_CARD_INVALID');
  });

  it('swaps in a new model atomically', async () => {
    const serving = new ServingModel(log);
    await serving.replace(() => OnnxModelRunner.load(model.dir, contract));
    const next = await buildTestModel(join(root, 'next'), 'test-2');
    await serving.replace(() => OnnxModelRunner.load(next.dir, contract));
    expect(serving.card.version).toBe('test-2');
  });
});
