import { status } from '@grpc/grpc-js';
import { CheckpointError, RestoreError, TaskError } from '../../../../sidecar/src/errors';
import { toGrpcStatus } from '../../../../sidecar/src/local-api/grpc-status';

describe('toGrpcStatus', () => {
  it.each([
    [new TaskError('NC_TASK_NOT_FOUND', 'x'), status.NOT_FOUND],
    [new TaskError('NC_TASK_EXISTS', 'x'), status.ALREADY_EXISTS],
    [new TaskError('NC_TASK_SPEC_INVALID', 'x'), status.INVALID_ARGUMENT],
    [new CheckpointError('NC_CHECKPOINT_TRUNCATED', 'x'), status.DATA_LOSS],
    [new CheckpointError('NC_LAZY_PAGES_TIMEOUT', 'x'), status.DEADLINE_EXCEEDED],
    [new RestoreError('NC_RESTORE_FAILED', 'x'), status.INTERNAL],
  ])('maps %s', (err, code) => {
    const mapped = toGrpcStatus(err);
    expect(mapped.code).toBe(code);
    expect(mapped.metadata?.get('nc-error-code')).toEqual([err.code]);
    expect(mapped.details).toBe('x');
  });

  it('sends UNKNOWN and no code for errors without one', () => {
    const mapped = toGrpcStatus(new Error('boom'));
    expect(mapped.code).toBe(status.UNKNOWN);
    expect(mapped.metadata?.get('nc-error-code')).toEqual([]);
  });
});
