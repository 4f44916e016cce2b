import { NomadChainError } from '../../common/errors';
import type { NomadChainErrorOptions } from '../../common/errors';

/** A Nomad job file local mode cannot run as written, or a job request naming one it does not run. */
export class JobFileError extends NomadChainError {
  declare readonly code: JobFileErrorCode;

  constructor(code: JobFileErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}

export type JobFileErrorCode =
  | 'NC_JOB_FILE_INVALID'
  | 'NC_JOB_UNSUPPORTED'
  | 'NC_JOB_FIELD_INVALID'
  | 'NC_JOB_ALREADY_RUNNING'
  | 'NC_JOB_NOT_RUNNING';
