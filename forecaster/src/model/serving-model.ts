import type { Logger } from '../../../common/logging';
import { ForecastError } from '../errors';
import type { ModelCard } from './model-card';
import type { ModelRunner } from './model-runner';

/** A model that can be released once it stops serving. */
export interface LoadedModel extends ModelRunner {
  release(): Promise<void>;
}

/**
 * The model in service, swapped atomically: a candidate that fails to load is refused with its coded error and
 * the model already serving keeps serving. Scoring calls in flight finish on the model they started with.
 */
export class ServingModel implements ModelRunner {
  private current: LoadedModel | undefined;
  private refused = 0;
  private readonly inFlight = new Map<LoadedModel, number>();
  private readonly retired = new Set<LoadedModel>();

  constructor(private readonly log: Logger) {}

  get card(): ModelCard {
    if (this.current === undefined) throw new ForecastError('NC_MODEL_NOT_LOADED', 'no model is serving yet');
    return this.current.card;
  }

  get loaded(): boolean {
    return this.current !== undefined;
  }

  get refusals(): number {
    return this.refused;
  }

  /** Loads a candidate; on success it replaces the serving model, on failure the error propagates. */
  async replace(load: () => Promise<LoadedModel>): Promise<ModelCard> {
    let next: LoadedModel;
    try {
      next = await load();
    } catch (err) {
      this.refused += 1;
      this.log.warn({ err, serving: this.current?.card.version }, 'model refused; serving model unchanged');
      throw err;
    }
    const previous = this.current;
    this.current = next;
    this.log.info({ version: next.card.version, previous: previous?.card.version }, 'model serving');
    if (previous !== undefined) {
      // A score() already running on the previous model finishes there; the session goes when the last one does.
      this.retired.add(previous);
      this.releaseIfIdle(previous);
    }
    return next.card;
  }

  score(features: Float32Array, rows: number): Promise<Float32Array> {
    if (this.current === undefined) {
      return Promise.reject(new ForecastError('NC_MODEL_NOT_LOADED', 'no model is serving yet'));
    }
    const model = this.current;
    this.inFlight.set(model, (this.inFlight.get(model) ?? 0) + 1);
    return model.score(features, rows).finally(() => {
      this.inFlight.set(model, (this.inFlight.get(model) ?? 1) - 1);
      this.releaseIfIdle(model);
    });
  }

  private releaseIfIdle(model: LoadedModel): void {
    if (!this.retired.has(model) || (this.inFlight.get(model) ?? 0) > 0) return;
    this.retired.delete(model);
    this.inFlight.delete(model);
    model.release().catch((err: unknown) => this.log.warn({ err }, 'releasing a retired model failed'));
  }
}
