import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../../../common/clock';
import type { Logger } from '../../../common/logging';
import type { CheckpointMeta } from './manifest';

export interface RetainedCheckpointsConfig {
  readonly dir: string;
  /** A copy older than this is removed: by then its migration ended one way or the other. */
  readonly retentionMs: number;
}

/** One entry of the directory: never '.' or '..', which name the directory itself and the sidecar's data dir. */
const CHECKPOINT_ID = /^(?!\.\.?$)[\w.-]+$/;

/**
 * The source's own copy of each final checkpoint it handed over. After a stop-and-copy dump the source
 * process is gone; until the target runs the restored task, this copy is what can put it back here (the
 * migration's rollback restores from it by checkpoint id). Released when the migration is done or rolled
 * back, and in any case after `retentionMs`, so the directory stays bounded.
 */
export class RetainedCheckpoints {
  constructor(
    private readonly config: RetainedCheckpointsConfig,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Takes over a checkpoint directory (renamed, never copied: this happens inside the freeze). */
  async keep(dir: string, meta: CheckpointMeta): Promise<void> {
    await mkdir(this.config.dir, { recursive: true });
    await this.sweep();
    await rename(dir, join(this.config.dir, meta.checkpointId));
  }

  /** The retained directory of a checkpoint, if this node still holds it. */
  async path(checkpointId: string): Promise<string | undefined> {
    if (!CHECKPOINT_ID.test(checkpointId)) return undefined;
    const dir = join(this.config.dir, checkpointId);
    return (await stat(dir).catch(() => undefined))?.isDirectory() === true ? dir : undefined;
  }

  async release(checkpointId: string): Promise<boolean> {
    const dir = await this.path(checkpointId);
    if (dir === undefined) return false;
    await rm(dir, { recursive: true, force: true });
    return true;
  }

  private async sweep(): Promise<void> {
    const cutoff = this.clock.now() - this.config.retentionMs;
    for (const name of await readdir(this.config.dir).catch(() => [])) {
      const dir = join(this.config.dir, name);
      const info = await stat(dir).catch(() => undefined);
      if (info === undefined || info.mtimeMs >= cutoff) continue;
      await rm(dir, { recursive: true, force: true });
      this.log.info({ checkpointId: name }, 'retained hand-over copy expired');
    }
  }
}
