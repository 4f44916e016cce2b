import { status } from '@grpc/grpc-js';
import { NomadChainError } from '../../../common/errors';
import { Status } from '../../../proto/gen/google/rpc/status';
import { RecoverableError } from '../../../proto/gen/nomad/plugins/shared/structs/proto/recoverable_error';
import { SidecarError } from '../../../common/sidecar-api/errors';
import { DriverError, HclConfigError } from '../../../plugin/src/errors';
import { RECOVERABLE_ERROR_TYPE_URL, toNomadStatus } from '../../../plugin/src/grpc-status';

describe('toNomadStatus', () => {
  it('maps a recoverable error to FAILED_PRECONDITION with a RecoverableError detail, as Nomad reads it', () => {
    const mapped = toNomadStatus(new SidecarError('NC_SIDECAR_UNREACHABLE', 'sidecar down', status.UNAVAILABLE));
    expect(mapped.code).toBe(status.FAILED_PRECONDITION);
    expect(mapped.details).toBe('sidecar down (NC_SIDECAR_UNREACHABLE)');
    const [bin] = mapped.metadata?.get('grpc-status-details-bin') ?? [];
    const rich = Status.decode(bin as Buffer);
    expect(rich.code).toBe(status.FAILED_PRECONDITION);
    expect(rich.details).toHaveLength(1);
    expect(rich.details[0]?.typeUrl).toBe(RECOVERABLE_ERROR_TYPE_URL);
    expect(RecoverableError.decode(rich.details[0]?.value ?? Buffer.alloc(0))).toEqual({ recoverable: true });
  });

  it.each([
    [new HclConfigError('NC_PLUGIN_TASK_CONFIG_INVALID', 'args', 'bad'), status.INVALID_ARGUMENT],
    [new HclConfigError('NC_PLUGIN_CONFIG_INVALID', 'sidecar_socket', 'bad'), status.INVALID_ARGUMENT],
    [new DriverError('NC_PLUGIN_TASK_NOT_FOUND', 'x'), status.NOT_FOUND],
    [new DriverError('NC_PLUGIN_TASK_EXISTS', 'x'), status.ALREADY_EXISTS],
    [new DriverError('NC_PLUGIN_TASK_RUNNING', 'x'), status.FAILED_PRECONDITION],
    [new DriverError('NC_PLUGIN_UNSUPPORTED', 'x'), status.UNIMPLEMENTED],
    [new SidecarError('NC_TASK_SPEC_INVALID', 'x', status.INVALID_ARGUMENT), status.INVALID_ARGUMENT],
    [new SidecarError('NC_SIDECAR_CALL_FAILED', 'x', status.UNAVAILABLE), status.INTERNAL],
    [new NomadChainError('NC_SOMETHING_ELSE', 'x'), status.INTERNAL],
    [new Error('plain'), status.INTERNAL],
  ])('maps %p to gRPC status %p, never UNAVAILABLE, with no recoverable detail', (err, code) => {
    const mapped = toNomadStatus(err);
    expect(mapped.code).toBe(code);
    expect(mapped.metadata?.get('grpc-status-details-bin')).toEqual([]);
  });

  it('carries the project codec trailers too, so a nomad-chain client reads the code back', () => {
    const mapped = toNomadStatus(new DriverError('NC_PLUGIN_TASK_NOT_FOUND', 'x'));
    expect(mapped.metadata?.get('nc-error-code')).toEqual(['NC_PLUGIN_TASK_NOT_FOUND']);
  });

  it('keeps the message and names the code', () => {
    const mapped = toNomadStatus(new HclConfigError('NC_PLUGIN_TASK_CONFIG_INVALID', 'command', 'is required'));
    expect(mapped.details).toBe('task config: attribute "command": is required (NC_PLUGIN_TASK_CONFIG_INVALID)');
  });
});
