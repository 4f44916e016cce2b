import { Metadata, status } from '@grpc/grpc-js';
import type { ServerErrorResponse } from '@grpc/grpc-js';
import { errorCode, errorMessage } from '../../../common/errors';
import { ERROR_CODE_METADATA } from '../../../common/sidecar-api/grpc-sidecar-api';

const BY_CODE: Readonly<Record<string, status>> = {
  NC_TASK_NOT_FOUND: status.NOT_FOUND,
  NC_CHECKPOINT_NOT_FOUND: status.NOT_FOUND,
  NC_TASK_EXISTS: status.ALREADY_EXISTS,
  NC_TASK_SPEC_INVALID: status.INVALID_ARGUMENT,
  NC_CONFIG_INVALID: status.INVALID_ARGUMENT,
  NC_TASK_NOT_RUNNING: status.FAILED_PRECONDITION,
  NC_CHECKPOINT_ALREADY_RESTORED: status.FAILED_PRECONDITION,
  NC_FEATURE_UNAVAILABLE: status.FAILED_PRECONDITION,
  NC_CHECKPOINT_CORRUPT: status.DATA_LOSS,
  NC_CHECKPOINT_TRUNCATED: status.DATA_LOSS,
  NC_LAZY_PAGES_TIMEOUT: status.DEADLINE_EXCEEDED,
  NC_TASK_EXEC_FAILED: status.DEADLINE_EXCEEDED,
};

/** The one mapping from the sidecar's errors to gRPC status; the code itself travels in metadata. */
export function toGrpcStatus(err: unknown): ServerErrorResponse {
  const code = errorCode(err);
  const metadata = new Metadata();
  if (code !== undefined && code.startsWith('NC_')) metadata.set(ERROR_CODE_METADATA, code);
  const grpcCode = code === undefined || !code.startsWith('NC_') ? status.UNKNOWN : (BY_CODE[code] ?? status.INTERNAL);
  return { name: 'Error', message: errorMessage(err), code: grpcCode, details: errorMessage(err), metadata };
}
