import { ForecastError } from '../errors';

/**
 * What the trainer writes beside each model.onnx: enough for the serving side to refuse a model it cannot feed.
 * Unknown keys are kept out of the type but tolerated, so the trainer may record more (metrics, data ranges).
 */
export interface ModelCard {
  readonly version: string;
  /** Feature names in the column order the model expects; must equal the serving feature specification's. */
  readonly features: readonly string[];
  /** Identity of the feature specification the model was trained with (e.g. its hash or version). */
  readonly featureSpec: string;
  /** sha256 of the feature specification file the model was trained with, when the trainer recorded it. */
  readonly featureSpecSha256?: string;
  /** ONNX input name; default: the graph's only input. */
  readonly input?: string;
  /** ONNX output holding probabilities; default: "probabilities", else the graph's first float output. */
  readonly output?: string;
  /** Horizon the probability refers to, in seconds (for the record and the risk API). */
  readonly horizonS?: number;
}

function fail(path: string, problem: string): never {
  throw new ForecastError('NC_MODEL_CARD_INVALID', `model card ${path}: ${problem}`, { context: { path } });
}

/** Parses a model card's JSON text, naming the file and the field at fault. */
export function parseModelCard(path: string, text: string): ModelCard {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new ForecastError('NC_MODEL_CARD_INVALID', `model card ${path}: not valid JSON`, {
      cause,
      context: { path },
    });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(path, 'expected an object');
  const card = raw as Record<string, unknown>;
  const version = card.version;
  if (typeof version !== 'string' || version === '') fail(path, 'version: expected a non-empty string');
  const features = card.features;
  if (!Array.isArray(features) || features.length === 0 || !features.every((f) => typeof f === 'string' && f !== '')) {
    fail(path, 'features: expected a non-empty array of names');
  }
  const featureSpec = card.featureSpec ?? card.feature_spec;
  if (typeof featureSpec !== 'string' || featureSpec === '') fail(path, 'featureSpec: expected a non-empty string');
  const optionalString = (key: string): string | undefined => {
    const value = card[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value === '') fail(path, `${key}: expected a non-empty string`);
    return value;
  };
  const horizon = card.horizonS ?? card.horizon_s;
  if (horizon !== undefined && (typeof horizon !== 'number' || !(horizon > 0)))
    fail(path, 'horizonS: expected a positive number');
  const parsed: ModelCard = {
    version,
    features: [...(features as string[])],
    featureSpec,
    ...(optionalString('featureSpecSha256') === undefined
      ? {}
      : { featureSpecSha256: optionalString('featureSpecSha256') }),
    ...(optionalString('input') === undefined ? {} : { input: optionalString('input') }),
    ...(optionalString('output') === undefined ? {} : { output: optionalString('output') }),
    ...(horizon === undefined ? {} : { horizonS: horizon }),
  };
  return Object.freeze(parsed);
}
