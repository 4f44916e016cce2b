import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ForecastError } from '../errors';
import { HISTORY_KINDS, METRICS } from '../windows/node-window';
import type { HistoryKind, Metric } from '../windows/node-window';

/**
 * The feature specification shared with the Python trainer (forecaster/training/feature-spec.json, semantics in
 * forecaster/training/README.md). One file drives both sides; a parity test proves they compute the same values.
 */
export type FeatureDef =
  | { readonly name: string; readonly op: 'age'; readonly capS: number }
  | {
      readonly name: string;
      readonly op: 'since';
      readonly scope: Scope;
      readonly event: HistoryKind;
      readonly capS: number;
    }
  | {
      readonly name: string;
      readonly op: 'count';
      readonly scope: Scope;
      readonly event: HistoryKind;
      readonly windowS: number;
    }
  | { readonly name: string; readonly op: 'alive' }
  | { readonly name: string; readonly op: 'aliveMax'; readonly windowS: number }
  | {
      readonly name: string;
      readonly op: 'metric';
      readonly metric: Metric;
      readonly agg: Agg;
      readonly windowS: number;
    };

export type Scope = 'node' | 'pool';
export type Agg = 'mean' | 'max' | 'last';

export interface FeatureSpec {
  readonly id: string;
  readonly tickS: number;
  readonly horizonS: number;
  readonly missingValue: number;
  readonly features: readonly FeatureDef[];
  readonly names: readonly string[];
  /** sha256 of the file's bytes when loaded from a file (model cards record the one they were trained with). */
  readonly sha256?: string;
  /** Longest pool-scope window (count, aliveMax), so pool history older than that can go. */
  readonly poolRetainMs: number;
}

function bad(where: string, problem: string): never {
  throw new ForecastError('NC_FEATURE_SPEC_INVALID', `feature spec ${where}: ${problem}`, {
    context: { field: where },
  });
}

function positive(where: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) bad(where, 'expected a positive number');
  return value;
}

function oneOf<T extends string>(where: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    bad(where, `expected one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

/** Validates a parsed spec; errors name the feature and field at fault. */
export function parseFeatureSpec(raw: unknown): FeatureSpec {
  if (typeof raw !== 'object' || raw === null) bad('(root)', 'expected an object');
  const spec = raw as Record<string, unknown>;
  if (typeof spec.id !== 'string' || spec.id === '') bad('id', 'expected a non-empty string');
  if (spec.specVersion !== 1)
    bad('specVersion', `this forecaster reads version 1, got ${JSON.stringify(spec.specVersion)}`);
  if (typeof spec.missingValue !== 'number') bad('missingValue', 'expected a number');
  if (!Array.isArray(spec.features) || spec.features.length === 0) bad('features', 'expected a non-empty array');
  const seen = new Set<string>();
  let poolRetainS = 0;
  const features = spec.features.map((f: unknown, i): FeatureDef => {
    if (typeof f !== 'object' || f === null) bad(`features[${i}]`, 'expected an object');
    const d = f as Record<string, unknown>;
    const at = `features[${i}]`;
    if (typeof d.name !== 'string' || d.name === '') bad(`${at}.name`, 'expected a non-empty string');
    if (seen.has(d.name)) bad(`${at}.name`, `duplicate feature ${d.name}`);
    seen.add(d.name);
    const name = d.name;
    const op = oneOf(`${at}.op`, d.op, ['age', 'since', 'count', 'alive', 'aliveMax', 'metric'] as const);
    switch (op) {
      case 'age':
        return { name, op, capS: positive(`${at}.capS`, d.capS) };
      case 'since':
        return {
          name,
          op,
          scope: oneOf(`${at}.scope`, d.scope, ['node', 'pool'] as const),
          event: oneOf(`${at}.event`, d.event, HISTORY_KINDS),
          capS: positive(`${at}.capS`, d.capS),
        };
      case 'count': {
        const scope = oneOf(`${at}.scope`, d.scope, ['node', 'pool'] as const);
        const windowS = positive(`${at}.windowS`, d.windowS);
        if (scope === 'pool') poolRetainS = Math.max(poolRetainS, windowS);
        return { name, op, scope, event: oneOf(`${at}.event`, d.event, HISTORY_KINDS), windowS };
      }
      case 'alive':
        return { name, op };
      case 'aliveMax': {
        const windowS = positive(`${at}.windowS`, d.windowS);
        poolRetainS = Math.max(poolRetainS, windowS);
        return { name, op, windowS };
      }
      case 'metric':
        return {
          name,
          op,
          metric: oneOf(`${at}.metric`, d.metric, METRICS),
          agg: oneOf(`${at}.agg`, d.agg, ['mean', 'max', 'last'] as const),
          windowS: positive(`${at}.windowS`, d.windowS),
        };
    }
  });
  return Object.freeze({
    id: spec.id,
    tickS: positive('tickS', spec.tickS),
    horizonS: positive('horizonS', spec.horizonS),
    missingValue: spec.missingValue,
    features,
    names: features.map((f) => f.name),
    poolRetainMs: poolRetainS * 1000,
  });
}

export function loadFeatureSpec(path: string): FeatureSpec {
  let raw: unknown;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw new ForecastError('NC_FEATURE_SPEC_INVALID', `feature spec ${path}: unreadable or not JSON`, {
      cause,
      context: { path },
    });
  }
  return Object.freeze({ ...parseFeatureSpec(raw), sha256: createHash('sha256').update(bytes).digest('hex') });
}
