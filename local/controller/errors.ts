import { NomadChainError } from '../../common/errors';
import type { NomadChainErrorOptions } from '../../common/errors';

/** Local mode's controller refused a request: the node, task, capacity or reservation it names is not there. */
export class ControllerError extends NomadChainError {
  declare readonly code: ControllerErrorCode;

  constructor(code: ControllerErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}

export type ControllerErrorCode =
  'NC_CONTROLLER_NO_CAPACITY' | 'NC_CONTROLLER_NO_MACHINES' | 'NC_CONTROLLER_NO_RESERVATION' | 'NC_TASK_NOT_FOUND';

/** `npm start -- -replay` could not read its trace, run its tools or its forecaster, or was interrupted. */
export class ReplayError extends NomadChainError {
  declare readonly code: ReplayErrorCode;

  constructor(code: ReplayErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}

export type ReplayErrorCode =
  'NC_REPLAY_TRACE_INVALID' | 'NC_REPLAY_TOOL_FAILED' | 'NC_REPLAY_FORECASTER_FAILED' | 'NC_REPLAY_INTERRUPTED';
