import { loadFeatureSpec } from '../features/feature-spec';
import { OnnxModelRunner } from '../model/onnx-model-runner';

/** Rows per onnxruntime-node call: big enough to amortise the call, small enough to bound the output tensors. */
const BATCH_ROWS = 8192;

/**
 * Scores feature rows through the serving path: the forecaster's own OnnxModelRunner, which refuses a corrupt or
 * incompatible model with NC_MODEL_* before any row is scored.
 */
export async function scoreWithServingModel(
  modelDir: string,
  specPath: string,
  features: Float32Array,
  rows: number,
): Promise<Float32Array> {
  const spec = loadFeatureSpec(specPath);
  const runner = await OnnxModelRunner.load(modelDir, { names: spec.names, specId: spec.id });
  try {
    const width = spec.names.length;
    const scores = new Float32Array(rows);
    for (let start = 0; start < rows; start += BATCH_ROWS) {
      const n = Math.min(BATCH_ROWS, rows - start);
      scores.set(await runner.score(features.subarray(start * width, (start + n) * width), n), start);
    }
    return scores;
  } finally {
    await runner.release();
  }
}

/** Loads and releases a model: the serving side's verdict on a freshly exported model directory. */
export async function checkServable(modelDir: string, specPath: string): Promise<string> {
  const spec = loadFeatureSpec(specPath);
  const runner = await OnnxModelRunner.load(modelDir, { names: spec.names, specId: spec.id });
  const version = runner.card.version;
  await runner.release();
  return version;
}
