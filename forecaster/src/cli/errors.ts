import { NomadChainError } from '../../../common/errors';
import type { NomadChainErrorOptions } from '../../../common/errors';

/**
 * Errors of `npm run forecast`: its own (usage, the trainer's environment) and those the Python trainer reports
 * on stderr as {"error": {"code", "message"}}, which keep the trainer's code.
 */
export type ForecastCliErrorCode =
  | 'NC_FORECAST_USAGE'
  | 'NC_FORECAST_PYTHON_MISSING'
  | 'NC_FORECAST_PYTHON_FAILED'
  | 'NC_FORECAST_TRACE_INVALID'
  | 'NC_FORECAST_TRAINING_FAILED'
  | 'NC_FORECAST_REGISTRY_REFUSED'
  | 'NC_FORECAST_INPUT_MISSING'
  | 'NC_FEATURE_SPEC_INVALID';

export const TRAINER_CODES: readonly ForecastCliErrorCode[] = [
  'NC_FORECAST_TRACE_INVALID',
  'NC_FORECAST_TRAINING_FAILED',
  'NC_FORECAST_REGISTRY_REFUSED',
  'NC_FORECAST_INPUT_MISSING',
  'NC_FEATURE_SPEC_INVALID',
];

export class ForecastCliError extends NomadChainError {
  constructor(code: ForecastCliErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}
