import type { ModelCard } from './model-card';

/**
 * Scores a batch of nodes: `features` holds `rows` rows of `card.features.length` values, row-major. Returns one
 * probability of draining within the model's horizon per row. Implementations run the whole batch at once.
 */
export interface ModelRunner {
  readonly card: ModelCard;
  score(features: Float32Array, rows: number): Promise<Float32Array>;
}
