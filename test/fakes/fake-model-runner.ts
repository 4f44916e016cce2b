import type { ModelCard } from '../../forecaster/src/model/model-card';
import type { LoadedModel } from '../../forecaster/src/model/serving-model';

/** Scores each row with a function of its features; counts calls so tests can assert one batch per tick. */
export class FakeModelRunner implements LoadedModel {
  calls = 0;
  released = false;

  constructor(
    readonly card: ModelCard,
    private readonly scoreRow: (row: Float32Array) => number,
  ) {}

  async score(features: Float32Array, rows: number): Promise<Float32Array> {
    this.calls += 1;
    const width = this.card.features.length;
    const out = new Float32Array(rows);
    for (let r = 0; r < rows; r += 1) out[r] = this.scoreRow(features.subarray(r * width, (r + 1) * width));
    return out;
  }

  async release(): Promise<void> {
    this.released = true;
  }
}
