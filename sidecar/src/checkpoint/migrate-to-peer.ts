import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { filesAheadKey } from '../../../common/checkpoint-keys';
import type { Clock } from '../../../common/clock';
import { errorMessage } from '../../../common/errors';
import { CheckpointError } from '../errors';
import { MigrationMode } from '../../../proto/gen/chain/v1/sidecar';
import type { TaskRuntime } from '../runtime/task-runtime';
import type { Dumper } from './dump';
import type { LazyDumper } from './lazy-dump';
import type { Logger as PinoLogger } from 'pino';
import type { Features, ModeUsed } from './features';
import { chooseMode } from './features';
import type { CheckpointMeta } from './manifest';
import type { Restorer } from './restore';
import type { RetainedCheckpoints } from './retained';
import type { CheckpointShipper } from './staging';
import type { StepsMs } from './step-times';
import { StepTimes } from './step-times';

export interface MigrateRequest {
  readonly taskId: string;
  readonly peerAddress: string;
  readonly mode: MigrationMode;
  readonly handoverKey: string;
}

export interface MigrateResult {
  readonly meta: CheckpointMeta;
  readonly modeUsed: ModeUsed;
  readonly fallbackReason: string;
  readonly wireBytes: number;
  /** From the freeze to the moment the peer holds the checkpoint. */
  readonly freezeMs: number;
  /** Where the hand-over's time went: the dump's steps, then the ship and the retained copy. */
  readonly stepsMs: StepsMs;
}

export interface PeerMigratorDeps {
  readonly runtime: TaskRuntime;
  readonly dumper: Dumper;
  readonly restorer: Restorer;
  readonly shipper: CheckpointShipper;
  readonly retained: RetainedCheckpoints;
  readonly lazyDumper?: LazyDumper;
  readonly features: () => Features;
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * Hands a task over to a peer: final dump (memory and files), ship, done. If the peer never gets a complete
 * checkpoint, the task is restored here from the same dump; once it has, this node keeps its own copy
 * (`RetainedCheckpoints`) until the migration ends, so a restore that fails on the target can still put the
 * task back here. At every moment the task runs or a restorable checkpoint exists, never neither.
 */
export class PeerMigrator {
  constructor(private readonly deps: PeerMigratorDeps) {}

  async migrate(request: MigrateRequest): Promise<MigrateResult> {
    const choice = chooseMode(request.mode, this.deps.features());
    const log = this.deps.log.child({ taskId: request.taskId, peer: request.peerAddress });
    if (choice.fallbackReason !== undefined) log.warn({ reason: choice.fallbackReason }, 'migration mode fell back');
    await this.sendFilesAhead(request, log);
    await this.deps.shipper.prepare?.(request.peerAddress);
    if (choice.mode === MigrationMode.MIGRATION_MODE_LAZY) return this.migrateLazy(request, log);
    const started = this.deps.clock.now();
    // The source's housekeeping (runc, CRIU's network lock) runs while the checkpoint travels.
    const { released, ...dumped } = await this.deps.dumper.dumpReleasingLater({
      taskId: request.taskId,
      leaveRunning: false,
      handoverKey: request.handoverKey,
    });
    const steps = new StepTimes(this.deps.clock);
    let wireBytes: number;
    try {
      ({ wireBytes } = await steps.time('ship', () =>
        this.deps.shipper.ship(dumped.dir, dumped.meta, request.peerAddress),
      ));
    } catch (shipError) {
      log.error({ err: shipError, checkpointId: dumped.meta.checkpointId }, 'ship failed; restoring the task here');
      await released.catch((err: unknown) => log.warn({ err }, 'the dumped task was not released cleanly'));
      try {
        await this.deps.restorer.restore({
          identity: dumped.meta.source,
          checkpointDir: dumped.dir,
          spec: dumped.meta.spec,
        });
      } catch (restoreError) {
        // The dump stays on disk: restorable by hand or by a retry, never lost.
        throw new CheckpointError(
          'NC_MIGRATION_ROLLBACK_FAILED',
          `ship failed (${errorMessage(shipError)}) and the local restore failed too: ${errorMessage(restoreError)}`,
          { cause: restoreError, context: { taskId: request.taskId, checkpointDir: dumped.dir } },
        );
      }
      await rm(dumped.dir, { recursive: true, force: true });
      throw shipError;
    }
    const freezeMs = this.deps.clock.now() - (dumped.frozenAtMs ?? started);
    const { checkpointId } = dumped.meta;
    // The peer holds the checkpoint: a source not cleanly released is the clean-up's to finish, not a failure.
    const releaseSteps = await steps.time('releaseWait', () =>
      released.catch((err: unknown) => {
        log.warn({ err, checkpointId }, 'the dumped task was not released cleanly');
        return {};
      }),
    );
    // The peer holds the checkpoint now: failing to keep a copy here only loses the rollback, never the task.
    await steps.time('keep', () =>
      this.deps.retained.keep(dumped.dir, dumped.meta).catch(async (err: unknown) => {
        log.warn(
          { err, checkpointId },
          'could not keep the hand-over copy: a failed restore on the target cannot roll back',
        );
        await rm(dumped.dir, { recursive: true, force: true });
      }),
    );
    const stepsMs = { ...dumped.stepsMs, ...releaseSteps, ...steps.ms };
    log.info(
      { checkpointId, wireBytes, freezeMs, stepsMs, fileBytes: dumped.meta.fileTree?.totalBytes ?? 0 },
      'task handed over',
    );
    return {
      meta: dumped.meta,
      modeUsed: choice.mode,
      fallbackReason: choice.fallbackReason ?? '',
      wireBytes,
      freezeMs,
      stepsMs,
    };
  }

  /**
   * The task's files go to the peer while it still runs, filed under a key no restore asks for; the final
   * round's files are then mostly chunks the peer already holds. Best effort: if it fails, the final round
   * sends them whole.
   */
  private async sendFilesAhead(request: MigrateRequest, log: PinoLogger): Promise<void> {
    let copy: Awaited<ReturnType<Dumper['copyFiles']>>;
    try {
      copy = await this.deps.dumper.copyFiles(request.taskId, filesAheadKey(request.taskId));
      if (copy === undefined) return;
      const { wireBytes } = await this.deps.shipper.ship(copy.dir, copy.meta, request.peerAddress);
      log.info({ wireBytes, fileBytes: copy.meta.fileTree?.totalBytes ?? 0 }, 'task files sent ahead of the freeze');
    } catch (err) {
      log.warn({ err }, 'sending the files ahead failed: the final round sends them whole');
    } finally {
      if (copy !== undefined) await rm(copy.dir, { recursive: true, force: true });
    }
  }

  /**
   * Post-copy: the images without memory travel, the target restores at once and pulls pages from the frozen
   * source. If shipping fails or no daemon connects in time, the source resumes. Once pages flow, a failure
   * of either side loses the task or runs it twice (DESIGN.md): lazy is a per-migration opt-in for that reason.
   */
  private async migrateLazy(request: MigrateRequest, log: PinoLogger): Promise<MigrateResult> {
    const { lazyDumper } = this.deps;
    if (!lazyDumper) {
      throw new CheckpointError('NC_FEATURE_UNAVAILABLE', 'this sidecar has no lazy-pages support configured', {
        context: { taskId: request.taskId },
      });
    }
    const started = this.deps.clock.now();
    const lazy = await lazyDumper.start(request.taskId, request.handoverKey);
    let wireBytes: number;
    try {
      ({ wireBytes } = await this.deps.shipper.ship(lazy.dir, lazy.meta, request.peerAddress));
    } catch (shipError) {
      log.error({ err: shipError, checkpointId: lazy.meta.checkpointId }, 'ship failed; source resumes');
      await lazy.abort();
      await rm(lazy.dir, { recursive: true, force: true });
      throw shipError;
    }
    const freezeMs = this.deps.clock.now() - started;
    const stepsMs = { dump: lazy.dumpMs, ship: freezeMs - lazy.dumpMs };
    try {
      await lazy.finish();
    } finally {
      await rm(lazy.dir, { recursive: true, force: true });
    }
    log.info({ checkpointId: lazy.meta.checkpointId, wireBytes, freezeMs, stepsMs }, 'task handed over lazily');
    return {
      meta: lazy.meta,
      modeUsed: MigrationMode.MIGRATION_MODE_LAZY,
      fallbackReason: '',
      wireBytes,
      freezeMs,
      stepsMs,
    };
  }
}
