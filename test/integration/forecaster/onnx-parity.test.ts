/**
 * @jest-environment ./test/fixtures/forecaster/onnx-environment.js
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { errorCode } from '../../../common/errors';
import { SPEC_PATH } from '../../../forecaster/src/cli/forecast';
import { checkServable, scoreWithServingModel } from '../../../forecaster/src/cli/model-scorer';
import { PythonTrainer } from '../../../forecaster/src/cli/python-trainer';
import { readRows } from '../../../forecaster/src/cli/row-files';

const ROOT = resolve(__dirname, '..', '..', '..');
const TRACE = resolve(ROOT, '..', 'shared', 'data', 'aws-p3-spot-nodes-parcae.csv');

async function rejectionCode(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return errorCode(err);
  }
  throw new Error('expected a rejection');
}

describe('ONNX export parity: onnxruntime-node scores == the Python model', () => {
  let dir: string;
  let trainer: PythonTrainer;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nc-c1-parity-'));
    trainer = PythonTrainer.locate(ROOT);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['lightgbm', 'logistic_regression', 'random_forest'])(
    '%s: every row within 1e-5',
    async (algorithm) => {
      const out = join(dir, algorithm);
      await trainer.run(['fixture', '--trace', TRACE, '--out', out, '--algorithm', algorithm]);
      const { meta, features } = await readRows(out);
      expect(meta.rows).toBeGreaterThan(1000);
      const served = await scoreWithServingModel(join(out, 'model'), SPEC_PATH, features, meta.rows);
      const bytes = readFileSync(join(out, 'python-scores.f64'));
      const python = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      expect(python.length).toBe(meta.rows);
      let worst = 0;
      python.forEach((p, i) => {
        worst = Math.max(worst, Math.abs(p - (served[i] as number)));
      });
      expect(worst).toBeLessThan(1e-5);
      // Scores that vary: parity over a constant would prove nothing.
      expect(new Set(served).size).toBeGreaterThan(10);
    },
    240_000,
  );

  it('refuses a corrupt model file with NC_MODEL_CORRUPT', async () => {
    const good = join(dir, 'lightgbm', 'model');
    const bad = join(dir, 'corrupt');
    mkdirSync(bad);
    copyFileSync(join(good, 'model-card.json'), join(bad, 'model-card.json'));
    const onnx = readFileSync(join(good, 'model.onnx'));
    writeFileSync(join(bad, 'model.onnx'), onnx.subarray(0, Math.floor(onnx.length / 3)));
    expect(await rejectionCode(checkServable(bad, SPEC_PATH))).toBe('NC_MODEL_CORRUPT');
  }, 60_000);

  it('refuses a model trained on another feature specification with NC_MODEL_INCOMPATIBLE', async () => {
    const other = join(dir, 'other-spec.json');
    const spec = JSON.parse(readFileSync(SPEC_PATH, 'utf8')) as { id: string; features: unknown[] };
    writeFileSync(other, JSON.stringify({ ...spec, id: 'narrow-v1', features: spec.features.slice(0, 5) }));
    const out = join(dir, 'narrow');
    await trainer.run([
      'fixture',
      '--trace',
      TRACE,
      '--out',
      out,
      '--spec',
      other,
      '--algorithm',
      'logistic_regression',
    ]);
    const model = join(out, 'model');
    expect(await rejectionCode(checkServable(model, SPEC_PATH))).toBe('NC_MODEL_INCOMPATIBLE');
    // Even with a card that claims the serving features, the graph's 5 inputs give it away.
    const cardPath = join(model, 'model-card.json');
    const card = JSON.parse(readFileSync(cardPath, 'utf8')) as Record<string, unknown>;
    const serving = JSON.parse(readFileSync(SPEC_PATH, 'utf8')) as { id: string; features: { name: string }[] };
    writeFileSync(
      cardPath,
      JSON.stringify({ ...card, featureSpec: serving.id, features: serving.features.map((f) => f.name) }),
    );
    expect(await rejectionCode(checkServable(model, SPEC_PATH))).toBe('NC_MODEL_INCOMPATIBLE');
  }, 240_000);
});
