import { METRICS } from '../windows/node-window';
import type { NodeWindow } from '../windows/node-window';
import type { PoolState } from '../windows/pool-state';
import type { FeatureDef, FeatureSpec } from './feature-spec';

/**
 * The TypeScript side of the shared feature specification: one row per node at time t, computed exactly as
 * forecaster/training/nc_forecast/features.py does (float64 arithmetic, float32 output).
 */
export class FeatureBuilder {
  readonly width: number;
  private readonly metricIndex: readonly number[];
  private readonly poolScoped: readonly boolean[];
  /** Pool features are the same for every node of a pool at one time: computed once per pool and tick. */
  private readonly poolCache = new WeakMap<PoolState, { tMs: number; version: number; values: Float64Array }>();

  constructor(readonly spec: FeatureSpec) {
    this.width = spec.features.length;
    this.metricIndex = spec.features.map((f) => (f.op === 'metric' ? METRICS.indexOf(f.metric) : -1));
    this.poolScoped = spec.features.map(
      (f) => f.op === 'alive' || f.op === 'aliveMax' || ('scope' in f && f.scope === 'pool'),
    );
  }

  /** Writes node `window`'s features at `tMs` into out[offset … offset + width). */
  row(window: NodeWindow, pool: PoolState, tMs: number, out: Float32Array, offset: number): void {
    const poolValues = this.poolValues(pool, tMs);
    this.spec.features.forEach((f, i) => {
      out[offset + i] =
        this.poolScoped[i] === true
          ? (poolValues[i] as number)
          : this.value(f, this.metricIndex[i] ?? -1, window, pool, tMs);
    });
  }

  private poolValues(pool: PoolState, tMs: number): Float64Array {
    const cached = this.poolCache.get(pool);
    if (cached !== undefined && cached.tMs === tMs && cached.version === pool.version) return cached.values;
    const values = new Float64Array(this.width);
    this.spec.features.forEach((f, i) => {
      if (this.poolScoped[i] === true) values[i] = this.value(f, -1, undefined, pool, tMs);
    });
    this.poolCache.set(pool, { tMs, version: pool.version, values });
    return values;
  }

  /** `w` is undefined only for pool-scoped features. */
  private value(f: FeatureDef, metric: number, w: NodeWindow | undefined, pool: PoolState, t: number): number {
    if (w === undefined) return this.poolValue(f, pool, t);
    switch (f.op) {
      case 'age': {
        const joined = w.latest('join', t);
        return joined === undefined ? f.capS : Math.min((t - joined) / 1000, f.capS);
      }
      case 'since': {
        const at = w.latest(f.event, t);
        return at === undefined ? f.capS : Math.min((t - at) / 1000, f.capS);
      }
      case 'count':
        return w.count(f.event, t - f.windowS * 1000, t);
      case 'metric':
        return metricAgg(w, metric, f.agg, t - f.windowS * 1000, t, this.spec.missingValue);
      default:
        return this.poolValue(f, pool, t);
    }
  }

  private poolValue(f: FeatureDef, pool: PoolState, t: number): number {
    switch (f.op) {
      case 'since': {
        const at = pool.latest(f.event);
        return at === undefined || at > t ? f.capS : Math.min((t - at) / 1000, f.capS);
      }
      case 'count':
        return pool.count(f.event, t - f.windowS * 1000, t);
      case 'alive':
        return pool.aliveCount;
      case 'aliveMax':
        return pool.aliveMax(t - f.windowS * 1000, t);
      default:
        return NaN;
    }
  }
}

/** Over samples with fromMs < time <= toMs, oldest first with one float64 accumulator (as features.py sums). */
function metricAgg(
  w: NodeWindow,
  metric: number,
  agg: 'mean' | 'max' | 'last',
  fromMs: number,
  toMs: number,
  missing: number,
): number {
  let first = w.length;
  while (first > 0 && w.timeAt(first - 1) > fromMs) first -= 1;
  let n = 0;
  let sum = 0;
  let max = -Infinity;
  let last = missing;
  for (let i = first; i < w.length; i += 1) {
    if (w.timeAt(i) > toMs) break;
    const v = w.valueAt(metric, i);
    if (Number.isNaN(v)) continue;
    n += 1;
    sum += v;
    if (v > max) max = v;
    last = v;
  }
  if (n === 0) return missing;
  if (agg === 'last') return last;
  if (agg === 'max') return max;
  return sum / n;
}
