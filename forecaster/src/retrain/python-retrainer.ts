import { ForecastCliError } from '../cli/errors';
import { promote, retrain, RETRAIN_HOLDOUT_HOURS } from '../cli/forecast';
import type { PythonTrainer } from '../cli/python-trainer';
import { currentModelDir } from '../model/model-registry';
import type { ModelRetrainer, RetrainOutcome, RetrainRequest } from './model-retrainer';

/**
 * The retrain `npm run forecast -- retrain` runs (the project's .venv Python: train with the holdout, check the
 * export in the serving runner, promote if better), called in-process by the retrain timer.
 */
export class PythonRetrainer implements ModelRetrainer {
  readonly holdoutMs = Number(RETRAIN_HOLDOUT_HOURS) * 3_600_000;

  constructor(private readonly trainer: PythonTrainer) {}

  async retrain(request: RetrainRequest): Promise<RetrainOutcome> {
    const { trace, registry, seedModelDir } = request;
    if (seedModelDir !== undefined && (await currentModelDir(registry)) === undefined) {
      await promote(this.trainer, { trace, registry, candidate: seedModelDir, format: 'ndjson' });
    }
    return outcomeOf(await retrain(this.trainer, { trace, registry, format: 'ndjson' }));
  }
}

/** Reads the registry's decision (registry.py's promote_if_better) into its typed form. */
export function outcomeOf(decision: unknown): RetrainOutcome {
  const d = (decision ?? {}) as Record<string, unknown>;
  const prAuc = (metrics: unknown): number | null => {
    const value = (metrics as { prAuc?: unknown } | null | undefined)?.prAuc;
    return typeof value === 'number' ? value : null;
  };
  if (typeof d.promoted !== 'boolean' || typeof d.reason !== 'string' || typeof d.candidate !== 'string') {
    throw new ForecastCliError(
      'NC_FORECAST_PYTHON_FAILED',
      'trainer promote answered without promoted, reason, candidate',
    );
  }
  return {
    promoted: d.promoted,
    reason: d.reason,
    candidate: d.candidate,
    serving: typeof d.serving === 'string' ? d.serving : null,
    candidatePrAuc: prAuc(d.candidateMetrics),
    servingPrAuc: prAuc(d.servingMetrics),
    recentRows: typeof d.recentRows === 'number' ? d.recentRows : 0,
  };
}
