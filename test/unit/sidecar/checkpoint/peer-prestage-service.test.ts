import { status } from '@grpc/grpc-js';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import pino from 'pino';
import { peerPrestageService } from '../../../../sidecar/src/checkpoint/peer-prestage-service';
import type { PrestageAllocTaskRequest } from '../../../../proto/gen/chain/v1/prestage';
import type { PrestageTaskResponse } from '../../../../proto/gen/chain/v1/sidecar';
import type { TaskRecord } from '../../../../sidecar/src/runtime/task-state';
import type { CheckpointMeta } from '../../../../sidecar/src/checkpoint/manifest';

function record(taskId: string, allocId: string, taskName: string, phase: TaskRecord['phase']): TaskRecord {
  return { taskId, identity: { taskId, allocId, taskName, jobId: 'j', namespace: 'default' }, phase } as TaskRecord;
}

function call(request: PrestageAllocTaskRequest): ServerUnaryCall<PrestageAllocTaskRequest, PrestageTaskResponse> {
  return {
    request,
    getAuthContext: () => ({ sslPeerCertificate: { subject: { CN: 'forecaster' } } }),
  } as unknown as ServerUnaryCall<PrestageAllocTaskRequest, PrestageTaskResponse>;
}

function answer(
  handler: ReturnType<typeof peerPrestageService>['prestageAllocTask'],
  request: PrestageAllocTaskRequest,
): Promise<{ err: { code?: number; metadata?: { get(k: string): unknown[] } } | null; res: unknown }> {
  return new Promise((resolve) => {
    const callback: sendUnaryData<PrestageTaskResponse> = (err, res) => resolve({ err: err as never, res });
    (handler as (c: unknown, cb: unknown) => void)(call(request), callback);
  });
}

function setup() {
  const asked: { taskId: string; peer: string }[] = [];
  const tasks = [
    record('a1_web_old', 'a1', 'web', 'migrated'),
    record('a1_web_1234', 'a1', 'web', 'running'),
    record('a2_db_5678', 'a2', 'db', 'running'),
  ];
  const service = peerPrestageService({
    tasks: { list: () => tasks },
    prestager: {
      prestage: (taskId: string, peer: string) => {
        asked.push({ taskId, peer });
        return Promise.resolve({
          meta: {
            checkpointId: 'ck-1',
            handoverKey: `prestage/${taskId}`,
            files: [{ path: 'pages-1.img', sizeBytes: 4096, sha256: 'ab' }],
          } as unknown as CheckpointMeta,
          wireBytes: 123,
          dumpMs: 4,
          shipMs: 5,
        });
      },
    },
    log: pino({ level: 'silent' }),
  });
  return { asked, service };
}

describe('peerPrestageService (chain.v1.PeerPrestage)', () => {
  it("pre-stages the running task Nomad names by allocation and task name, never an earlier run's record", async () => {
    const { asked, service } = setup();
    const { err, res } = await answer(service.prestageAllocTask, {
      allocId: 'a1',
      taskName: 'web',
      peerAddress: '10.0.0.2:7451',
    });
    expect(err).toBeNull();
    expect(asked).toEqual([{ taskId: 'a1_web_1234', peer: '10.0.0.2:7451' }]);
    expect(res).toMatchObject({
      checkpoint: { checkpointId: 'ck-1', handoverKey: 'prestage/a1_web_1234', sizeBytes: 4096 },
      wireBytes: 123,
      dumpMs: 4,
      shipMs: 5,
    });
  });

  it('answers NOT_FOUND with NC_TASK_NOT_FOUND for a task not running here, and asks no dump', async () => {
    const { asked, service } = setup();
    const { err } = await answer(service.prestageAllocTask, { allocId: 'a9', taskName: 'web', peerAddress: 'x:1' });
    expect(err?.code).toBe(status.NOT_FOUND);
    expect(err?.metadata?.get('nc-error-code')).toEqual(['NC_TASK_NOT_FOUND']);
    expect(asked).toEqual([]);
  });

  it('refuses a request without alloc_id or task_name', async () => {
    const { service } = setup();
    const { err } = await answer(service.prestageAllocTask, { allocId: '', taskName: 'web', peerAddress: 'x:1' });
    expect(err?.metadata?.get('nc-error-code')).toEqual(['NC_TASK_SPEC_INVALID']);
  });
});
