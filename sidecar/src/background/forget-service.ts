import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { backgroundKey } from '../../../common/checkpoint-keys';
import { encodeStatus } from '../../../common/grpc/status-codec';
import type { Logger } from '../../../common/logging';
import type { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import type {
  BackgroundCheckpointsServer,
  ForgetBackgroundRequest,
  ForgetBackgroundResponse,
} from '../../../proto/gen/chain/v1/transfer';
import { peerNodeName } from '../transfer/tls';

/** The buddy's checkpoint store (CheckpointStore): one checkpoint per handover key. */
export interface BuddyStore {
  find(handoverKey: string, waitMs: number): Promise<CheckpointInfo | undefined>;
  delete(checkpointId: string): boolean;
}

export interface ForgetServiceDeps {
  readonly store: BuddyStore;
  readonly log: Logger;
}

const UNEXPECTED = { unexpected: { code: 'NC_TRANSFER_REMOTE', message: 'internal error' } } as const;

/**
 * `chain.v1.BackgroundCheckpoints`: a node drops the background checkpoint it keeps here of a task that left
 * it. A caller may drop only what its own certificate's node sent, so one node cannot erase another's safety
 * copy; anything else answers `deleted: false`, as a checkpoint already gone does.
 */
export function backgroundForgetService(deps: ForgetServiceDeps): BackgroundCheckpointsServer {
  return {
    forget: (
      call: ServerUnaryCall<ForgetBackgroundRequest, ForgetBackgroundResponse>,
      callback: sendUnaryData<ForgetBackgroundResponse>,
    ) => {
      const caller = peerNodeName(call);
      const { taskId } = call.request;
      deps.store
        .find(backgroundKey(taskId), 0)
        .then((found) => {
          const theirs = found !== undefined && caller !== undefined && found.sourceNode === caller;
          const deleted = theirs && deps.store.delete(found.checkpointId);
          if (deleted)
            deps.log.info({ caller, taskId, checkpointId: found.checkpointId }, 'background checkpoint forgotten');
          callback(null, { deleted });
        })
        .catch((err: unknown) => {
          deps.log.warn({ err, caller, taskId }, 'forgetting a background checkpoint failed');
          callback(encodeStatus(err, UNEXPECTED), null);
        });
    },
  };
}
