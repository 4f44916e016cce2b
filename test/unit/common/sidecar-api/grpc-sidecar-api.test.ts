import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import type { sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import { NomadChainError } from '../../../../common/errors';
import { encodeStatus } from '../../../../common/grpc/status-codec';
import {
  FeaturesResponse,
  SidecarService,
  TakeOverRequest,
  TakeOverResponse,
} from '../../../../proto/gen/chain/v1/sidecar';
import { GrpcSidecarApi } from '../../../../common/sidecar-api/grpc-sidecar-api';

let dir: string;
let server: Server | undefined;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nc-sidecar-api-'));
});

afterEach(() => {
  server?.forceShutdown();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A sidecar that answers Features and TakeOver (with no task) at once, never finishes InspectTask and refuses
 * StopTask with `refusal`.
 */
async function slowSidecar(socketPath: string, refusal: unknown = new Error('unused')): Promise<void> {
  server = new Server();
  const handlers: UntypedServiceImplementation = {
    features: (_call: unknown, callback: (err: null, res: object) => void) =>
      callback(null, FeaturesResponse.fromPartial({ healthy: true })),
    inspectTask: () => undefined,
    takeOver: (_call: unknown, callback: (err: null, res: object) => void) =>
      callback(null, TakeOverResponse.fromPartial({ noCheckpoint: true })),
    stopTask: (_call: unknown, callback: sendUnaryData<null>) => callback(encodeStatus(refusal), null),
  };
  server.addService(SidecarService, handlers);
  await new Promise<void>((resolve, reject) =>
    server?.bindAsync(`unix:${socketPath}`, ServerCredentials.createInsecure(), (err) =>
      err === null ? resolve() : reject(err),
    ),
  );
}

test('a call that outlives its deadline on a connected sidecar is NC_SIDECAR_TIMEOUT, not unreachable', async () => {
  const socketPath = path.join(dir, 'sidecar.sock');
  await slowSidecar(socketPath);
  const api = new GrpcSidecarApi({ socketPath, timeoutMs: 300 });
  await api.features();
  const err = await api.inspectTask('t1').catch((e: unknown) => e);
  api.close();
  expect(err).toMatchObject({ code: 'NC_SIDECAR_TIMEOUT', recoverable: true });
  expect((err as Error).message).toContain('is up but did not finish InspectTask within 300 ms');
});

test('a sidecar that is not there is NC_SIDECAR_UNREACHABLE', async () => {
  const api = new GrpcSidecarApi({ socketPath: path.join(dir, 'absent.sock'), timeoutMs: 300 });
  const err = await api.inspectTask('t1').catch((e: unknown) => e);
  api.close();
  expect(err).toMatchObject({ code: 'NC_SIDECAR_UNREACHABLE', recoverable: true });
});

// The two reconnect tests wait on gRPC's reconnect backoff (about 1 s, then more), a timer, not a speed.
test('a bounded call made while the sidecar restarts waits for it instead of failing at once', async () => {
  const socketPath = path.join(dir, 'sidecar.sock');
  const api = new GrpcSidecarApi({ socketPath, timeoutMs: 3000 });
  // The channel has failed to connect (nothing listens yet), as it has just after a sidecar exited.
  await expect(api.features()).rejects.toMatchObject({ code: 'NC_SIDECAR_UNREACHABLE' });
  const call = api.features();
  await slowSidecar(socketPath);
  await expect(call).resolves.toMatchObject({ healthy: true });
  api.close();
}, 30_000);

test('an unbounded call made while the sidecar restarts waits for it to connect, bounded by the timeout', async () => {
  const socketPath = path.join(dir, 'sidecar.sock');
  const api = new GrpcSidecarApi({ socketPath, timeoutMs: 3000 });
  const request = TakeOverRequest.fromPartial({ handoverKey: 'alloc-2/web' });
  await expect(api.features()).rejects.toMatchObject({ code: 'NC_SIDECAR_UNREACHABLE' });
  // A take-over has no deadline (it waits for its checkpoint): without the wait it failed at once here.
  const call = api.takeOver(request);
  await slowSidecar(socketPath);
  await expect(call).resolves.toMatchObject({ noCheckpoint: true });
  api.close();

  const absent = new GrpcSidecarApi({ socketPath: path.join(dir, 'absent.sock'), timeoutMs: 300 });
  const err = await absent.takeOver(request).catch((e: unknown) => e);
  absent.close();
  expect(err).toMatchObject({ code: 'NC_SIDECAR_UNREACHABLE', recoverable: true });
  expect((err as Error).message).toContain('unreachable (TakeOver): not connected within 300 ms');
}, 30_000);

test("the sidecar's own error comes back with its code, recoverable and context, and the status it chose", async () => {
  const socketPath = path.join(dir, 'sidecar.sock');
  await slowSidecar(
    socketPath,
    new NomadChainError('NC_TASK_NOT_RUNNING', 'task exited', { recoverable: true, context: { taskId: 't1' } }),
  );
  const api = new GrpcSidecarApi({ socketPath, timeoutMs: 3000 });
  const err = await api.stopTask({ taskId: 't1', timeoutMs: 1, signal: '' }).catch((e: unknown) => e);
  api.close();
  expect(err).toMatchObject({
    code: 'NC_TASK_NOT_RUNNING',
    message: 'sidecar StopTask: task exited',
    recoverable: true,
    grpcCode: status.FAILED_PRECONDITION,
    context: { taskId: 't1', rpc: 'StopTask' },
  });
});

test("the sidecar's own code wins over the status it travels under, DEADLINE_EXCEEDED included", async () => {
  const socketPath = path.join(dir, 'sidecar.sock');
  await slowSidecar(socketPath, new NomadChainError('NC_LAZY_PAGES_TIMEOUT', 'no lazy-pages daemon connected in time'));
  const api = new GrpcSidecarApi({ socketPath, timeoutMs: 3000 });
  const err = await api.stopTask({ taskId: 't1', timeoutMs: 1, signal: '' }).catch((e: unknown) => e);
  api.close();
  expect(err).toMatchObject({
    code: 'NC_LAZY_PAGES_TIMEOUT',
    message: 'sidecar StopTask: no lazy-pages daemon connected in time',
    grpcCode: status.DEADLINE_EXCEEDED,
  });
});

test('an answer without a code is NC_SIDECAR_CALL_FAILED, not recoverable, keeping the status', async () => {
  const socketPath = path.join(dir, 'sidecar.sock');
  await slowSidecar(socketPath, new Error('boom'));
  const api = new GrpcSidecarApi({ socketPath, timeoutMs: 3000 });
  const err = await api.stopTask({ taskId: 't1', timeoutMs: 1, signal: '' }).catch((e: unknown) => e);
  api.close();
  expect(err).toMatchObject({ code: 'NC_SIDECAR_CALL_FAILED', recoverable: false, grpcCode: status.INTERNAL });
});
