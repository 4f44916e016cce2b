import { Metadata, status } from '@grpc/grpc-js';
import type { StatusObject } from '@grpc/grpc-js';
import { errorCode, errorMessage, NomadChainError } from '../../common/errors';
import { Any } from '../../proto/gen/google/protobuf/any';
import { Status } from '../../proto/gen/google/rpc/status';
import { RecoverableError } from '../../proto/gen/nomad/plugins/shared/structs/proto/recoverable_error';

/** The type URL Nomad's client unpacks the detail with (plugins/shared/structs/proto/recoverable_error.proto). */
export const RECOVERABLE_ERROR_TYPE_URL = 'type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError';

const BY_CODE: Readonly<Record<string, status>> = {
  NC_PLUGIN_CONFIG_INVALID: status.INVALID_ARGUMENT,
  NC_PLUGIN_TASK_CONFIG_INVALID: status.INVALID_ARGUMENT,
  NC_PLUGIN_REQUEST_INVALID: status.INVALID_ARGUMENT,
  NC_PLUGIN_TASK_STATE_INVALID: status.INVALID_ARGUMENT,
  NC_PLUGIN_NOT_CONFIGURED: status.FAILED_PRECONDITION,
  NC_PLUGIN_TASK_RUNNING: status.FAILED_PRECONDITION,
  NC_PLUGIN_TASK_NOT_FOUND: status.NOT_FOUND,
  NC_PLUGIN_TASK_EXISTS: status.ALREADY_EXISTS,
  NC_PLUGIN_UNSUPPORTED: status.UNIMPLEMENTED,
};

/**
 * The one mapping from errors to gRPC statuses at the plugin's boundary. Recoverable errors become
 * FAILED_PRECONDITION with a RecoverableError detail in `grpc-status-details-bin`, as Nomad's own plugin
 * server does, so Nomad's client retries them. UNAVAILABLE is never returned: Nomad reads it as "the plugin
 * process is gone" and relaunches the plugin.
 */
export function toGrpcStatus(err: unknown): Partial<StatusObject> {
  const code = errorCode(err);
  const details = code === undefined ? errorMessage(err) : `${errorMessage(err)} (${code})`;
  if (err instanceof NomadChainError && err.recoverable) {
    return { code: status.FAILED_PRECONDITION, details, metadata: recoverableMetadata(details) };
  }
  // A sidecar's answer keeps the status the sidecar chose (NOT_FOUND, INVALID_ARGUMENT, …).
  const fromSidecar = (err as { grpcCode?: unknown }).grpcCode;
  let grpcCode = typeof fromSidecar === 'number' ? (fromSidecar as status) : undefined;
  grpcCode ??= (code === undefined ? undefined : BY_CODE[code]) ?? status.INTERNAL;
  if (grpcCode === status.UNAVAILABLE || grpcCode === status.OK) grpcCode = status.INTERNAL;
  return { code: grpcCode, details };
}

function recoverableMetadata(message: string): Metadata {
  const detail = Any.fromPartial({
    typeUrl: RECOVERABLE_ERROR_TYPE_URL,
    value: Buffer.from(RecoverableError.encode({ recoverable: true }).finish()),
  });
  const rich = Status.encode({ code: status.FAILED_PRECONDITION, message, details: [detail] }).finish();
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(rich));
  return metadata;
}
