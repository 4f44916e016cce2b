import type { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import type { CheckpointMeta as StoreMeta, CheckpointStore } from '../store/checkpoint-store';
import type { TransferClient } from '../transfer/client';
import type { CheckpointMeta } from './manifest';
import type { CheckpointShipper, StagedCheckpoints } from './staging';

function storeMeta(meta: CheckpointMeta): StoreMeta {
  return {
    checkpointId: meta.checkpointId,
    handoverKey: meta.handoverKey,
    source: meta.source,
    spec: meta.spec,
    sourceNode: meta.sourceNode,
    createdAtUnixMs: meta.createdAtMs,
  };
}

/** Staged checkpoints in the transfer layer's store: chunked, encrypted at rest, bounded. */
export class StoreStagedCheckpoints implements StagedCheckpoints {
  /** The store hashed every chunk as it took it in and authenticates each as it reads it back. */
  readonly materializesVerified = true;

  constructor(private readonly store: CheckpointStore) {}

  adopt(dir: string, meta: CheckpointMeta): Promise<CheckpointInfo> {
    return this.store.stageFromDirectory(dir, storeMeta(meta));
  }

  get(checkpointId: string): Promise<CheckpointInfo | undefined> {
    return Promise.resolve(this.store.get(checkpointId));
  }

  find(handoverKey: string, waitMs: number, signal?: AbortSignal): Promise<CheckpointInfo | undefined> {
    return this.store.find(handoverKey, waitMs, signal);
  }

  list(): Promise<CheckpointInfo[]> {
    return Promise.resolve(this.store.list());
  }

  materialize(checkpointId: string, dir: string): Promise<void> {
    return this.store.materialize(checkpointId, dir);
  }

  delete(checkpointId: string): Promise<void> {
    this.store.delete(checkpointId);
    return Promise.resolve();
  }
}

/** Ships checkpoints with the State Transfer Protocol (mutual TLS, only missing chunks travel). */
export class TransferShipper implements CheckpointShipper {
  constructor(private readonly client: TransferClient) {}

  prepare(peerAddress: string): Promise<void> {
    return this.client.prepare(peerAddress);
  }

  async ship(dir: string, meta: CheckpointMeta, peerAddress: string): Promise<{ wireBytes: number }> {
    const result = await this.client.push(peerAddress, { directory: dir }, storeMeta(meta));
    return { wireBytes: result.wireBytes };
  }
}
