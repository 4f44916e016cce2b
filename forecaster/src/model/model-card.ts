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
  /** The two-level policy's thresholds the trainer chose for an alert budget; absent on older cards. */
  readonly policy?: ModelPolicy;
}

/** The card's `policy`: the levels the serving policy uses for any pool or class the operator's config leaves open. */
export interface ModelPolicy {
  /** Risk at or above which a node is fenced, capacity reserved and its checkpoints pre-staged. */
  readonly prewarnThreshold: number;
  /** Risk at or above which a fenced node is drained; never below prewarnThreshold. */
  readonly drainThreshold: number;
  /** The alert budget the thresholds were chosen for. */
  readonly budget: {
    /** Most share of node-time fenced or draining. */
    readonly maxFencedShare: number;
    /** Most drains not followed by a pre-emption within the horizon, per 100 node-days. */
    readonly maxFalseDrainsPer100NodeDays: number;
  };
  /** Which span of data the thresholds were chosen on. */
  readonly chosenOn?: string;
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
    ...(card.policy === undefined ? {} : { policy: parsePolicy(path, card.policy) }),
  };
  return Object.freeze(parsed);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The card's `policy` object; unknown keys (the trainer's own figures) are tolerated as elsewhere in the card. */
function parsePolicy(path: string, raw: unknown): ModelPolicy {
  if (!isObject(raw)) fail(path, 'policy: expected an object');
  const share = (key: string, value: unknown): number => {
    if (typeof value !== 'number' || !(value >= 0 && value <= 1)) fail(path, `${key}: expected a number in [0, 1]`);
    return value;
  };
  const prewarnThreshold = share('policy.prewarnThreshold', raw.prewarnThreshold);
  const drainThreshold = share('policy.drainThreshold', raw.drainThreshold);
  if (drainThreshold < prewarnThreshold) fail(path, 'policy.drainThreshold: must be at or above prewarnThreshold');
  const budget = raw.budget;
  if (!isObject(budget)) fail(path, 'policy.budget: expected an object');
  const positive = (key: string, value: unknown): number => {
    if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value))
      fail(path, `${key}: expected a positive number`);
    return value;
  };
  const maxFencedShare = positive('policy.budget.maxFencedShare', budget.maxFencedShare);
  if (maxFencedShare > 1) fail(path, 'policy.budget.maxFencedShare: expected a share in (0, 1]');
  const maxFalseDrainsPer100NodeDays = positive(
    'policy.budget.maxFalseDrainsPer100NodeDays',
    budget.maxFalseDrainsPer100NodeDays,
  );
  const chosenOn = raw.chosenOn;
  if (chosenOn !== undefined && (typeof chosenOn !== 'string' || chosenOn === ''))
    fail(path, 'policy.chosenOn: expected a non-empty string');
  return Object.freeze({
    prewarnThreshold,
    drainThreshold,
    budget: Object.freeze({ maxFencedShare, maxFalseDrainsPer100NodeDays }),
    ...(chosenOn === undefined ? {} : { chosenOn }),
  });
}
