import { link, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError } from '../errors';
import type { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import type { CheckpointMeta } from './manifest';
import { checkpointSizeBytes, manifestDigest, readMeta } from './manifest';

/**
 * Checkpoints staged on this node, waiting for a restore: this node's own dumps and those peers sent. The
 * real store (the transfer layer's: encrypted at rest, bounded) and the plain-directory one both fit; the
 * full metadata (`checkpoint.json`) travels inside the checkpoint and is read after `materialize`.
 */
export interface StagedCheckpoints {
  /** Files a complete checkpoint directory; the directory itself is the caller's to remove. */
  adopt(dir: string, meta: CheckpointMeta): Promise<CheckpointInfo>;
  get(checkpointId: string): Promise<CheckpointInfo | undefined>;
  /**
   * The newest checkpoint filed under a handover key, waiting up to `waitMs` for one to arrive; no longer once
   * `signal` aborts (the caller has gone).
   */
  find(handoverKey: string, waitMs: number, signal?: AbortSignal): Promise<CheckpointInfo | undefined>;
  list(): Promise<CheckpointInfo[]>;
  /** Writes the checkpoint as a plain directory (checkpoint.json + images/) at `dir`, verified. */
  materialize(checkpointId: string, dir: string): Promise<void>;
  /** `materialize` writes only bytes checked against their digests, so a restore need not hash them again. */
  readonly materializesVerified: boolean;
  delete(checkpointId: string): Promise<void>;
}

/** Sends a checkpoint directory to a peer's sidecar, which stages it under the checkpoint's handover key. */
export interface CheckpointShipper {
  /** Connects to the peer ahead of a ship, so that a freeze does not wait for the handshake; best effort. */
  prepare?(peerAddress: string): Promise<void>;
  ship(dir: string, meta: CheckpointMeta, peerAddress: string): Promise<{ wireBytes: number }>;
}

/** The local API's view of a checkpoint's metadata. */
export function checkpointInfo(meta: CheckpointMeta): CheckpointInfo {
  return {
    checkpointId: meta.checkpointId,
    handoverKey: meta.handoverKey,
    source: meta.source,
    manifestDigest: manifestDigest(meta),
    sizeBytes: checkpointSizeBytes(meta),
    createdAtUnixMs: meta.createdAtMs,
    spec: meta.spec,
    sourceNode: meta.sourceNode,
  };
}

/** Staged checkpoints as plain directories: `<root>/<checkpointId>/`. */
export class DirectoryStagedCheckpoints implements StagedCheckpoints {
  /** Hard links to files on disk that nothing checked since: the restore verifies them. */
  readonly materializesVerified = false;

  constructor(private readonly root: string) {}

  private dirOf(checkpointId: string): string {
    if (!/^(?!\.\.?$)[\w.-]+$/.test(checkpointId)) {
      throw new CheckpointError('NC_CHECKPOINT_NOT_FOUND', 'malformed checkpoint id', { context: { checkpointId } });
    }
    return join(this.root, checkpointId);
  }

  async adopt(dir: string, meta: CheckpointMeta): Promise<CheckpointInfo> {
    await mkdir(this.root, { recursive: true });
    const target = this.dirOf(meta.checkpointId);
    await rm(target, { recursive: true, force: true });
    await linkTree(dir, target);
    return checkpointInfo(meta);
  }

  async get(checkpointId: string): Promise<CheckpointInfo | undefined> {
    const meta = await readMeta(this.dirOf(checkpointId)).catch(() => undefined);
    return meta && checkpointInfo(meta);
  }

  async find(handoverKey: string, waitMs: number, signal?: AbortSignal): Promise<CheckpointInfo | undefined> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const matches = (await this.list()).filter((m) => m.handoverKey === handoverKey);
      const newest = matches.sort((a, b) => b.createdAtUnixMs - a.createdAtUnixMs)[0];
      if (newest !== undefined || Date.now() >= deadline || signal?.aborted === true) return newest;
      await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now()))));
    }
  }

  async list(): Promise<CheckpointInfo[]> {
    const entries = await readdir(this.root, { withFileTypes: true }).catch(() => []);
    const metas = await Promise.all(
      entries.filter((e) => e.isDirectory()).map((e) => readMeta(join(this.root, e.name)).catch(() => undefined)),
    );
    return metas.filter((m): m is CheckpointMeta => m !== undefined).map(checkpointInfo);
  }

  async materialize(checkpointId: string, dir: string): Promise<void> {
    if ((await this.get(checkpointId)) === undefined) {
      throw new CheckpointError('NC_CHECKPOINT_NOT_FOUND', 'no such staged checkpoint', { context: { checkpointId } });
    }
    await linkTree(this.dirOf(checkpointId), dir);
  }

  async delete(checkpointId: string): Promise<void> {
    await rm(this.dirOf(checkpointId), { recursive: true, force: true });
  }
}

/** Hard-links a tree: a restore only reads its images, and a copy of gigabytes would add to the downtime. */
async function linkTree(source: string, target: string): Promise<void> {
  await mkdir(target, { recursive: true });
  for (const entry of await readdir(source, { withFileTypes: true })) {
    const from = join(source, entry.name);
    const to = join(target, entry.name);
    if (entry.isDirectory()) await linkTree(from, to);
    else if (entry.isFile()) await link(from, to);
  }
}
