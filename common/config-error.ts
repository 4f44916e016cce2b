import { NomadChainError } from './errors';

/** Bad configuration: always names the field path, so an operator can find it. */
export class ConfigError extends NomadChainError {
  readonly field: string;

  constructor(field: string, problem: string, options: ErrorOptions = {}) {
    super('NC_CONFIG_INVALID', `invalid configuration: ${field}: ${problem}`, { ...options, context: { field } });
    this.field = field;
  }
}
