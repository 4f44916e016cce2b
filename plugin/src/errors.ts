import { NomadChainError } from '../../common/errors';
import type { ErrorContext } from '../../common/errors';

interface FamilyOptions extends ErrorOptions {
  readonly context?: ErrorContext;
  readonly recoverable?: boolean;
}

/** The plugin was launched wrongly: not by Nomad, or by a host speaking another protocol version. */
export class LaunchError extends NomadChainError {
  constructor(code: 'NC_PLUGIN_COOKIE_MISMATCH' | 'NC_PLUGIN_PROTOCOL_UNSUPPORTED', message: string) {
    super(code, message);
  }
}

/**
 * An attribute of the agent's `plugin "chain" { config {} }` block or of a job's task `config {}` is wrong.
 * The message always names the HCL attribute, so the operator can find it in the file.
 */
export class HclConfigError extends NomadChainError {
  readonly attribute: string;

  constructor(
    code: 'NC_PLUGIN_CONFIG_INVALID' | 'NC_PLUGIN_TASK_CONFIG_INVALID',
    attribute: string,
    problem: string,
    options: ErrorOptions = {},
  ) {
    const where = code === 'NC_PLUGIN_CONFIG_INVALID' ? 'plugin config' : 'task config';
    super(code, `${where}: attribute "${attribute}": ${problem}`, { ...options, context: { attribute } });
    this.attribute = attribute;
  }
}

export type DriverErrorCode =
  | 'NC_PLUGIN_NOT_CONFIGURED'
  | 'NC_PLUGIN_REQUEST_INVALID'
  | 'NC_PLUGIN_TASK_NOT_FOUND'
  | 'NC_PLUGIN_TASK_EXISTS'
  | 'NC_PLUGIN_TASK_RUNNING'
  | 'NC_PLUGIN_TASK_STATE_INVALID'
  | 'NC_PLUGIN_UNSUPPORTED'
  | 'NC_PLUGIN_MIGRATION_TARGET_UNKNOWN'
  | 'NC_PLUGIN_SIDECAR_ANSWER_INVALID';

/** A driver RPC that cannot be served as asked. */
export class DriverError extends NomadChainError {
  constructor(code: DriverErrorCode, message: string, options: FamilyOptions = {}) {
    super(code, message, options);
  }
}
