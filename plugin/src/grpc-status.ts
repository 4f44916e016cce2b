import { status } from '@grpc/grpc-js';
import { encodeStatus } from '../../common/grpc/status-codec';
import type { EncodedStatus } from '../../common/grpc/status-codec';
import { errorCode, NomadChainError } from '../../common/errors';
import { Any } from '../../proto/gen/google/protobuf/any';
import { Status } from '../../proto/gen/google/rpc/status';
import { RecoverableError } from '../../proto/gen/nomad/plugins/shared/structs/proto/recoverable_error';

/** The type URL Nomad's client unpacks the detail with (plugins/shared/structs/proto/recoverable_error.proto). */
export const RECOVERABLE_ERROR_TYPE_URL = 'type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError';

/**
 * The project's status codec, plus what Nomad reads: a recoverable error becomes FAILED_PRECONDITION with a
 * RecoverableError detail in `grpc-status-details-bin`, as Nomad's own plugin server does, so Nomad's client
 * retries it. Nomad shows only the message, so it names the code.
 */
export function toNomadStatus(err: unknown): EncodedStatus {
  const encoded = encodeStatus(err);
  const code = errorCode(err);
  const details = code === undefined ? encoded.details : `${encoded.details} (${code})`;
  if (!(err instanceof NomadChainError && err.recoverable)) return { ...encoded, message: details, details };
  encoded.metadata.set('grpc-status-details-bin', recoverableDetail(details));
  return { ...encoded, code: status.FAILED_PRECONDITION, message: details, details };
}

function recoverableDetail(message: string): Buffer {
  const detail = Any.fromPartial({
    typeUrl: RECOVERABLE_ERROR_TYPE_URL,
    value: Buffer.from(RecoverableError.encode({ recoverable: true }).finish()),
  });
  return Buffer.from(Status.encode({ code: status.FAILED_PRECONDITION, message, details: [detail] }).finish());
}
