import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { encodeStatus } from '../../../common/grpc/status-codec';
import type { Logger } from '../../../common/logging';
import type { PeerPrestageServer, PrestageAllocTaskRequest } from '../../../proto/gen/chain/v1/prestage';
import type { PrestageTaskResponse } from '../../../proto/gen/chain/v1/sidecar';
import { TaskError } from '../errors';
import type { TaskRecord } from '../runtime/task-state';
import { peerNodeName } from '../transfer/tls';
import type { TaskPrestager } from './prestager';
import { checkpointInfo } from './staging';

export interface PeerPrestageDeps {
  readonly tasks: { list(): TaskRecord[] };
  readonly prestager: Pick<TaskPrestager, 'prestage'>;
  readonly log: Logger;
}

/** A caller on another host is told a failure of this node's own without its internals. */
const UNEXPECTED = { unexpected: { code: 'NC_PRESTAGE_FAILED', message: 'internal error' } } as const;

/**
 * `chain.v1.PeerPrestage`: pre-staging asked from off the node (the forecaster in Nomad mode), served on the
 * transfer port, so only a caller holding a certificate of the cluster's CA is heard. The caller names the task
 * as Nomad does (allocation and task name); this node resolves its own task id. What it may ask is bounded by
 * the pre-stage itself: a running copy, to a peer that must prove the same CA, never a restore.
 */
export function peerPrestageService(deps: PeerPrestageDeps): PeerPrestageServer {
  return {
    prestageAllocTask: (
      call: ServerUnaryCall<PrestageAllocTaskRequest, PrestageTaskResponse>,
      callback: sendUnaryData<PrestageTaskResponse>,
    ) => {
      const caller = peerNodeName(call);
      const { allocId, taskName, peerAddress } = call.request;
      Promise.resolve()
        .then(async () => {
          const taskId = runningTaskOf(deps.tasks.list(), allocId, taskName);
          const copy = await deps.prestager.prestage(taskId, peerAddress);
          deps.log.info(
            { caller, allocId, taskName, taskId, peer: peerAddress, wireBytes: copy.wireBytes },
            'pre-stage asked by a peer done',
          );
          return {
            checkpoint: checkpointInfo(copy.meta),
            wireBytes: copy.wireBytes,
            dumpMs: copy.dumpMs,
            shipMs: copy.shipMs,
          };
        })
        .then(
          (response) => callback(null, response),
          (err: unknown) => {
            deps.log.warn({ err, caller, allocId, taskName, peer: peerAddress }, 'pre-stage asked by a peer failed');
            callback(encodeStatus(err, UNEXPECTED), null);
          },
        );
    },
  };
}

function runningTaskOf(tasks: readonly TaskRecord[], allocId: string, taskName: string): string {
  if (allocId === '' || taskName === '') {
    throw new TaskError('NC_TASK_SPEC_INVALID', 'a pre-stage needs alloc_id and task_name', {
      context: { allocId, taskName },
    });
  }
  const found = tasks.find(
    (t) => t.phase === 'running' && t.identity.allocId === allocId && t.identity.taskName === taskName,
  );
  if (found === undefined) {
    throw new TaskError('NC_TASK_NOT_FOUND', `no running task ${taskName} of allocation ${allocId} on this node`, {
      context: { allocId, taskName },
    });
  }
  return found.taskId;
}
