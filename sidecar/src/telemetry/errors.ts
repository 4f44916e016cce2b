import { NomadChainError } from '../../../common/errors';
import type { NomadChainErrorOptions } from '../../../common/errors';

/** The telemetry agent's error family: reading /proc, asking the cloud's metadata service. */
export class TelemetryError extends NomadChainError {
  constructor(code: TelemetryErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}

export type TelemetryErrorCode =
  'NC_TELEMETRY_PROC_UNREADABLE' | 'NC_TELEMETRY_PROC_MALFORMED' | 'NC_SIGNAL_SOURCE_FAILED';
