import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { errorMessage } from '../../../common/errors';
import { ForecastError } from '../errors';
import { parseModelCard } from './model-card';
import type { ModelCard } from './model-card';
import type { ModelRunner } from './model-runner';

/** What the serving side feeds: the model must have been trained on exactly these columns. */
export interface FeatureContract {
  readonly names: readonly string[];
  readonly specId: string;
  /** sha256 of the serving spec file; checked against the card's when both are known. */
  readonly specSha256?: string;
}

export const MODEL_FILE = 'model.onnx';
export const CARD_FILE = 'model-card.json';

/**
 * A model served with onnxruntime-node. `load` refuses, with a coded error, a file ONNX Runtime cannot open
 * (NC_MODEL_CORRUPT) and a model whose card, inputs or outputs do not fit the serving features
 * (NC_MODEL_INCOMPATIBLE); a model that loads has already scored a probe row.
 */
export class OnnxModelRunner implements ModelRunner {
  private constructor(
    readonly card: ModelCard,
    readonly dir: string,
    private readonly session: InferenceSession,
    private readonly inputName: string,
    private readonly outputName: string,
  ) {}

  static async load(dir: string, contract: FeatureContract): Promise<OnnxModelRunner> {
    const cardPath = join(dir, CARD_FILE);
    let cardText: string;
    try {
      cardText = await readFile(cardPath, 'utf8');
    } catch (cause) {
      throw new ForecastError('NC_MODEL_CARD_INVALID', `model card ${cardPath}: unreadable`, {
        cause,
        context: { path: cardPath },
      });
    }
    const card = parseModelCard(cardPath, cardText);
    checkFeatures(dir, card, contract);

    const modelPath = join(dir, MODEL_FILE);
    let session: InferenceSession;
    try {
      // One intra-op thread: scoring is one batched call per tick, and the machine's cores belong to the agents.
      session = await InferenceSession.create(modelPath, { intraOpNumThreads: 1, interOpNumThreads: 1 });
    } catch (cause) {
      throw new ForecastError('NC_MODEL_CORRUPT', `model ${modelPath} could not be loaded: ${errorMessage(cause)}`, {
        cause,
        context: { path: modelPath },
      });
    }
    try {
      const inputName = pickInput(modelPath, session, card);
      const outputName = pickOutput(modelPath, session, card);
      const runner = new OnnxModelRunner(card, dir, session, inputName, outputName);
      await runner.score(new Float32Array(card.features.length), 1);
      return runner;
    } catch (err) {
      await session.release();
      if (err instanceof ForecastError && err.code === 'NC_MODEL_INCOMPATIBLE') throw err;
      throw new ForecastError('NC_MODEL_INCOMPATIBLE', `model ${modelPath} failed its probe: ${errorMessage(err)}`, {
        cause: err,
        context: { path: modelPath },
      });
    }
  }

  async score(features: Float32Array, rows: number): Promise<Float32Array> {
    const width = this.card.features.length;
    if (rows === 0) return new Float32Array(0);
    if (features.length < rows * width) {
      throw new ForecastError(
        'NC_MODEL_SCORING_FAILED',
        `expected ${rows * width} feature values, got ${features.length}`,
      );
    }
    const input = new Tensor('float32', features.subarray(0, rows * width), [rows, width]);
    let result: InferenceSession.OnnxValueMapType;
    try {
      result = await this.session.run({ [this.inputName]: input }, [this.outputName]);
    } catch (cause) {
      throw new ForecastError('NC_MODEL_SCORING_FAILED', `scoring ${rows} rows failed: ${errorMessage(cause)}`, {
        cause,
      });
    }
    return positiveClass(this.outputName, result[this.outputName], rows);
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

function incompatible(dir: string, problem: string): never {
  throw new ForecastError('NC_MODEL_INCOMPATIBLE', `model in ${dir}: ${problem}`, { context: { path: dir } });
}

function checkFeatures(dir: string, card: ModelCard, contract: FeatureContract): void {
  if (card.featureSpec !== contract.specId) {
    incompatible(dir, `trained with feature spec ${card.featureSpec}, serving ${contract.specId}`);
  }
  if (
    card.featureSpecSha256 !== undefined &&
    contract.specSha256 !== undefined &&
    card.featureSpecSha256 !== contract.specSha256
  ) {
    incompatible(dir, `trained with a different ${card.featureSpec} specification file (sha256 differs)`);
  }
  if (card.features.length !== contract.names.length) {
    incompatible(dir, `expects ${card.features.length} features, serving ${contract.names.length}`);
  }
  card.features.forEach((name, i) => {
    if (name !== contract.names[i]) incompatible(dir, `feature ${i} is ${name}, serving ${String(contract.names[i])}`);
  });
}

function pickInput(path: string, session: InferenceSession, card: ModelCard): string {
  const name = card.input ?? (session.inputNames.length === 1 ? session.inputNames[0] : undefined);
  if (name === undefined || !session.inputNames.includes(name)) {
    incompatible(path, `input ${String(name)} not among the graph's inputs ${session.inputNames.join(', ')}`);
  }
  const meta = session.inputMetadata.find((m) => m.name === name);
  if (meta !== undefined && meta.isTensor) {
    if (meta.type !== 'float32') incompatible(path, `input ${name} has type ${meta.type}, serving float32`);
    const width = meta.shape[meta.shape.length - 1];
    if (typeof width === 'number' && width > 0 && width !== card.features.length) {
      incompatible(path, `input ${name} takes ${width} columns, the card names ${card.features.length}`);
    }
  }
  return name;
}

function pickOutput(path: string, session: InferenceSession, card: ModelCard): string {
  const tensorFloat = (n: string): boolean => {
    const meta = session.outputMetadata.find((m) => m.name === n);
    return meta === undefined || (meta.isTensor && (meta.type === 'float32' || meta.type === 'float64'));
  };
  const name =
    card.output ??
    (session.outputNames.includes('probabilities') ? 'probabilities' : session.outputNames.find((n) => tensorFloat(n)));
  if (name === undefined || !session.outputNames.includes(name)) {
    incompatible(path, `output ${String(name)} not among the graph's outputs ${session.outputNames.join(', ')}`);
  }
  if (!tensorFloat(name))
    incompatible(path, `output ${name} is not a float tensor (export classifiers without ZipMap)`);
  return name;
}

/** Probability of the positive class: column 1 of an [N, 2] output, or the only column of [N] / [N, 1]. */
function positiveClass(name: string, value: unknown, rows: number): Float32Array {
  if (!(value instanceof Tensor) || (value.type !== 'float32' && value.type !== 'float64')) {
    throw new ForecastError('NC_MODEL_INCOMPATIBLE', `output ${name} is not a float tensor`);
  }
  const data = value.data as Float32Array | Float64Array;
  const width = value.dims.length === 1 ? 1 : (value.dims[1] ?? 0);
  if (value.dims[0] !== rows || (width !== 1 && width !== 2)) {
    throw new ForecastError(
      'NC_MODEL_INCOMPATIBLE',
      `output ${name} has shape [${value.dims.join(', ')}], expected [${rows}, 2]`,
    );
  }
  const out = new Float32Array(rows);
  for (let i = 0; i < rows; i += 1) out[i] = data[i * width + (width - 1)] ?? 0;
  return out;
}
