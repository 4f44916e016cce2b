import type { CallOptions, ServiceError } from '@grpc/grpc-js';
import { Metadata, credentials } from '@grpc/grpc-js';
import { ERROR_CODE_TRAILER } from '../../../common/grpc/status-codec';
import { SidecarClient } from '../../../proto/gen/chain/v1/sidecar';

// The generated methods are overloaded; inference reads the last overload, the one with every argument.
type Unary<Req, Res> = (
  req: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, res: Res) => void,
) => unknown;

/** Promisified unary call on the generated client: what the plugin does, minus its own wrapper. */
export function call<Req, Res>(method: Unary<Req, Res>, request: Req): Promise<Res> {
  return new Promise((resolve, reject) =>
    method(request, new Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

export function localClient(socketPath: string): SidecarClient {
  return new SidecarClient(`unix://${socketPath}`, credentials.createInsecure());
}

/** The stable code the sidecar put in the error's metadata. */
export function codeOf(err: unknown): string | undefined {
  const metadata = (err as { metadata?: Metadata }).metadata;
  const value = metadata?.get(ERROR_CODE_TRAILER)[0];
  return typeof value === 'string' ? value : undefined;
}
