import { NomadChainError } from '../../common/errors';
import type { NomadChainErrorOptions } from '../../common/errors';

/** The forecaster's error family: model serving, features, scoring, ingest. */
export class ForecastError extends NomadChainError {
  constructor(code: ForecastErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}

/** A scheduler action (fence, reserve, pre-stage, drain, undo) the adapter could not carry out. */
export class SchedulerActionError extends NomadChainError {
  constructor(message: string, options: NomadChainErrorOptions = {}) {
    super('NC_SCHEDULER_ACTION_FAILED', message, options);
  }
}

export type ForecastErrorCode =
  | 'NC_MODEL_CORRUPT'
  | 'NC_MODEL_INCOMPATIBLE'
  | 'NC_MODEL_CARD_INVALID'
  | 'NC_MODEL_NOT_LOADED'
  | 'NC_MODEL_SCORING_FAILED'
  | 'NC_MODEL_REGISTRY_INVALID'
  | 'NC_FEATURE_SPEC_INVALID';
