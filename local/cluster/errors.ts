import { NomadChainError } from '../../common/errors';
import type { NomadChainErrorOptions } from '../../common/errors';

/** The local cluster (local mode's ground and the integration tests' harness) could not be set up or reached. */
export class LocalClusterError extends NomadChainError {
  declare readonly code: LocalClusterErrorCode;

  constructor(code: LocalClusterErrorCode, message: string, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
  }
}

export type LocalClusterErrorCode =
  | 'NC_CONFIG_INVALID'
  | 'NC_CLUSTER_NO_NODE'
  | 'NC_CLUSTER_NO_SUBNET'
  | 'NC_CLUSTER_SIDECAR_UNHEALTHY'
  | 'NC_HAPROXY_START'
  | 'NC_HAPROXY_RUNTIME';
