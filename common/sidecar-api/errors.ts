import type { status } from '@grpc/grpc-js';
import { NomadChainError, type NomadChainErrorOptions } from '../errors';

/** A call to the node's sidecar failed; carries the gRPC status so callers can tell "not found" from "down". */
export class SidecarError extends NomadChainError {
  /** The gRPC status code the sidecar (or the channel) reported. */
  readonly grpcCode: status;

  constructor(code: string, message: string, grpcCode: status, options: NomadChainErrorOptions = {}) {
    // Both pass: a sidecar restarting, or one busy past a call's deadline; Nomad retries the call. Otherwise
    // the sidecar's own error says whether it is recoverable.
    super(code, message, {
      ...options,
      recoverable: code === 'NC_SIDECAR_UNREACHABLE' || code === 'NC_SIDECAR_TIMEOUT' || options.recoverable === true,
    });
    this.grpcCode = grpcCode;
  }
}
