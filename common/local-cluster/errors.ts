import { NomadChainError } from '../errors';

/** The local cluster (local mode's ground and the integration tests' harness) could not be set up or reached. */
export class LocalClusterError extends NomadChainError {}
