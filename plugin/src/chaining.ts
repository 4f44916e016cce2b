import { errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logging';
import { MigrationMode } from '../../proto/gen/chain/v1/sidecar';
import type { TaskIdentity, TaskInfo, TaskSpec } from '../../proto/gen/chain/v1/sidecar';
import type { AllocationLookup } from './allocation-lookup';
import type { PluginRuntime } from './base-plugin';
import type { MigrationModeName, PluginConfig, TaskDriverConfig } from './config';
import type { ConsulHandover } from './consul-handover';
import { DriverError } from './errors';
import { TRANSFER_ADDRESS_ATTRIBUTE } from './fingerprint';
import type { TaskEventBus } from './task-events';
import type { TaskHandle } from './task-handle';

/** The key a checkpoint is filed under for its replacement: "<replacement alloc id>/<task name>". */
export function handoverKey(allocId: string, taskName: string): string {
  return `${allocId}/${taskName}`;
}

const MODES: Readonly<Record<MigrationModeName, MigrationMode>> = {
  auto: MigrationMode.MIGRATION_MODE_AUTO,
  'stop-and-copy': MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
  'pre-copy': MigrationMode.MIGRATION_MODE_PRE_COPY,
  lazy: MigrationMode.MIGRATION_MODE_LAZY,
};

/**
 * Why a task configured for post-copy moves by stop-and-copy in Nomad mode. Nomad (checked on v1.6.3) starts a
 * drained allocation's replacement only once the previous allocation's tasks ended (its client logs "waiting
 * for remote previous alloc to terminate"), while a post-copy source must stay frozen and serve its pages to a
 * replacement that already runs. Asked for anyway, the source's sidecar waited for a page daemon that could not
 * come, timed out, the source was stopped and its replacement started cold: the task's memory was lost.
 */
const LAZY_IN_NOMAD =
  'post-copy needs the replacement running while the source serves its pages, and Nomad starts a replacement ' +
  'only after the previous allocation ended; stop-and-copy used';

/** The configuration's name of a mode the sidecar reports, if it is one of them. */
function modeName(mode: MigrationMode): MigrationModeName | undefined {
  return (Object.keys(MODES) as MigrationModeName[]).find((name) => MODES[name] === mode);
}

interface MigrationTarget {
  readonly nextAllocId: string;
  readonly nodeId: string;
  readonly peerAddress: string;
}

export interface StartOutcome {
  readonly info: TaskInfo;
  readonly restoredFromCheckpoint: string;
}

/**
 * The plugin's share of chaining, kept thin: decide whether a stop is a migration and whether a start has a
 * checkpoint to restore, then ask the sidecar, whose migration sequence does the work. Every fallback (no
 * checkpoint, a failed hand-over) ends where any driver would, and a task event says why.
 */
export class Chaining {
  /**
   * @param consulHandover for the plugin's configuration, what lists a restored task in Consul ahead of its
   *   check; undefined (or none) leaves that to Nomad's registration alone.
   */
  constructor(
    private readonly events: TaskEventBus,
    private readonly log: Logger,
    private readonly consulHandover: (config: PluginConfig) => ConsulHandover | undefined = () => undefined,
  ) {}

  /** Restores the predecessor's checkpoint when one arrives within the bounded wait, else starts cold. */
  async start(
    runtime: PluginRuntime,
    nomadTaskId: string,
    identity: TaskIdentity,
    spec: TaskSpec,
    driverConfig: TaskDriverConfig,
  ): Promise<StartOutcome> {
    const source = { taskId: nomadTaskId, allocId: identity.allocId, taskName: identity.taskName };
    if (!driverConfig.chain)
      return { info: await runtime.sidecar.startTask({ identity, spec }), restoredFromCheckpoint: '' };

    const waitMs = driverConfig.checkpointWaitMs ?? runtime.config.checkpointWaitMs;
    const previous = await this.previousAllocation(runtime.lookup, identity.allocId);
    // Without a known predecessor only a checkpoint already staged for this key is taken, without waiting.
    const taken = await runtime.sidecar.takeOver({
      identity,
      spec,
      handoverKey: handoverKey(identity.allocId, identity.taskName),
      waitMs: previous === undefined ? 0 : waitMs,
      coldStartFallback: true,
    });
    const info = taken.task;
    if (info === undefined) {
      throw new DriverError('NC_PLUGIN_SIDECAR_ANSWER_INVALID', 'the sidecar took the task over but named no task', {
        context: { taskId: identity.taskId },
      });
    }
    const checkpoint = taken.restoredFrom;
    if (checkpoint === undefined) {
      if (!taken.noCheckpoint) {
        this.log.warn({ taskId: identity.taskId, reason: taken.coldReason }, 'restore failed, started cold');
        const reason = taken.coldReason.charAt(0).toUpperCase() + taken.coldReason.slice(1);
        this.events.emit({ ...source, message: `${reason}; started cold` });
      } else if (previous !== undefined) {
        this.events.emit({
          ...source,
          message: `No checkpoint from previous allocation ${previous} within ${waitMs} ms; started cold`,
        });
      }
      return { info, restoredFromCheckpoint: '' };
    }
    this.events.emit({
      ...source,
      message: `Restored from checkpoint ${checkpoint.checkpointId} of allocation ${checkpoint.source?.allocId ?? 'unknown'}`,
      annotations: { checkpoint_id: checkpoint.checkpointId, source_node: checkpoint.sourceNode },
    });
    // Not awaited: StartTask returns now, and Nomad registers task-level services only after it does.
    void this.consulHandover(runtime.config)?.bridge(identity.allocId);
    return { info, restoredFromCheckpoint: checkpoint.checkpointId };
  }

  /**
   * Hands a migrating task over to its replacement's node; returns false when the stop is a plain stop (not
   * migrating, chain = false, lineage unknown) or the hand-over failed, and the caller stops the task.
   */
  async migrate(runtime: PluginRuntime, handle: TaskHandle): Promise<boolean> {
    if (!handle.driverConfig.chain || runtime.lookup === undefined) return false;
    let target: MigrationTarget | undefined;
    try {
      target = await this.migrationTarget(runtime.lookup, handle.config.allocId);
    } catch (err) {
      this.log.warn({ err, taskId: handle.id }, 'allocation lineage unreadable, stopping task');
      this.events.emit({
        ...handle.eventSource,
        message: `Could not tell whether the allocation is migrating (${errorMessage(err)}); task stopped`,
      });
      return false;
    }
    if (target === undefined) return false;
    const asked = handle.driverConfig.migrationMode ?? runtime.config.migrationMode;
    const mode = asked === 'lazy' ? 'stop-and-copy' : asked;
    try {
      const result = await runtime.sidecar.migrateToPeer({
        taskId: handle.sidecarTaskId,
        peerAddress: target.peerAddress,
        mode: MODES[mode],
        handoverKey: handoverKey(target.nextAllocId, handle.config.name),
      });
      const used = modeName(result.modeUsed);
      const fallback = asked === 'lazy' ? LAZY_IN_NOMAD : result.fallbackReason;
      this.events.emit({
        ...handle.eventSource,
        message: `Handed over to allocation ${target.nextAllocId} (frozen ${result.freezeMs} ms, ${result.wireBytes} bytes sent)`,
        annotations: {
          next_alloc_id: target.nextAllocId,
          node_id: target.nodeId,
          ...(used === undefined ? {} : { mode: used }),
          ...(fallback === '' ? {} : { mode_fallback: fallback }),
        },
      });
      return true;
    } catch (err) {
      this.log.warn({ err, taskId: handle.id, nextAllocId: target.nextAllocId }, 'hand-over failed, stopping task');
      this.events.emit({
        ...handle.eventSource,
        message: `Hand-over to allocation ${target.nextAllocId} failed (${errorMessage(err)}); task stopped`,
      });
      return false;
    }
  }

  /** The predecessor worth waiting for: one that was migrating (drained or preempted), not one that failed. */
  private async previousAllocation(lookup: AllocationLookup | undefined, allocId: string): Promise<string | undefined> {
    if (lookup === undefined) return undefined;
    try {
      const previous = (await lookup.allocation(allocId)).previousAllocation;
      if (previous === undefined) return undefined;
      const before = await lookup.allocation(previous);
      return before.migrate || before.desiredStatus === 'evict' ? previous : undefined;
    } catch (err) {
      this.log.warn({ err, allocId }, 'allocation lineage unreadable, not waiting for a checkpoint');
      return undefined;
    }
  }

  /** Where a migrating allocation's task goes: its NextAllocation's node, by that node's published address. */
  private async migrationTarget(lookup: AllocationLookup, allocId: string): Promise<MigrationTarget | undefined> {
    const alloc = await lookup.allocation(allocId);
    const moving = alloc.migrate || alloc.desiredStatus === 'evict';
    if (alloc.nextAllocation === undefined || !moving) return undefined;
    const next = await lookup.allocation(alloc.nextAllocation);
    const attributes = await lookup.nodeAttributes(next.nodeId);
    const peerAddress = attributes[TRANSFER_ADDRESS_ATTRIBUTE];
    if (peerAddress === undefined || peerAddress === '') {
      throw new DriverError(
        'NC_PLUGIN_MIGRATION_TARGET_UNKNOWN',
        `node ${next.nodeId} of allocation ${next.id} publishes no ${TRANSFER_ADDRESS_ATTRIBUTE}`,
        { context: { nodeId: next.nodeId, allocId: next.id } },
      );
    }
    return { nextAllocId: next.id, nodeId: next.nodeId, peerAddress };
  }
}
