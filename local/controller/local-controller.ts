import type { Clock } from '../../common/clock';
import { ConfigError } from '../../common/config-error';
import { errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logging';
import type { Instance, Router } from '../../common/router';
import { pickTarget, type PlacementNode, type SchedulerAdapter } from '../../common/scheduler/scheduler-adapter';
import { MigrationMode, type TaskInfo } from '../../proto/gen/chain/v1/sidecar';
import type { MigrationJournal } from '../migration/migration-journal';
import type { MigrationRecord } from '../migration/migration-record';
import { MigrationError } from '../migration/errors';
import { MigrationSequence, type NodeSidecars } from '../migration/migration-sequence';
import { ControllerEventLog, type ControllerEvent } from './controller-events';
import { ReservationBook, type PrestageReport, type Reservation } from './reservation-book';
import { ReservationPrestager } from './reservation-prestager';
import type { ServiceDefinition } from './service-definition';
import { SimulatedPreemption, type NodeMachines, type PreemptionOutcome } from './simulated-preemption';
import { TaskPlacement, type ControllerNode, type PlacedTask } from './task-placement';
import { TraceNodeAliases } from './trace-node-aliases';

// What preempt() answers: its callers (the replay) take the facade's result types from the facade.
export type { PreemptionOutcome } from './simulated-preemption';

export interface LocalControllerDeps {
  readonly nodes: readonly ControllerNode[];
  readonly sidecars: NodeSidecars;
  readonly router: Router;
  readonly journal: MigrationJournal;
  readonly clock: Clock;
  readonly log: Logger;
  /** Where the controller keeps its placements and node flags across restarts. */
  readonly stateFile: string;
  readonly checkpointWaitMs: number;
  readonly mode?: MigrationMode;
  readonly afterStep?: (record: MigrationRecord) => void | Promise<void>;
  readonly events?: ControllerEventLog;
  /** What a pre-emption does to a node (local mode: kill everything in its namespace) and how it returns. */
  readonly machines?: NodeMachines;
  /** Waits until a (re)started instance accepts connections. */
  readonly waitServing?: (instance: Instance) => Promise<void>;
  /**
   * The time events carry. A trace replay passes its scaled clock so watchers read trace time, while
   * migrations keep `clock`: their timeouts are about real processes. @default clock
   */
  readonly eventClock?: Clock;
  /** Announce every node as joined at start. A replay does not: its trace says when nodes join. @default true */
  readonly announceNodes?: boolean;
  /**
   * How many of a draining node's tasks move at once. Each move freezes its task only for its own dump and
   * restore, so a node with many tasks empties in fewer rounds; the bound keeps the node's disk, CPU and link
   * (and its peers') from serving every dump at once. @default 1
   */
  readonly drainConcurrency?: number;
}

export type DrainOutcome =
  | { readonly taskKey: string; readonly outcome: 'moved'; readonly migration: MigrationRecord }
  | { readonly taskKey: string; readonly outcome: 'rolled-back' | 'failed'; readonly migration: MigrationRecord }
  | { readonly taskKey: string; readonly outcome: 'stayed'; readonly reason: string };

/**
 * Local mode's stand-in for Nomad's placement: picks a healthy node with room, starts chained services
 * there, and on a drain moves each of the node's tasks through the migration sequence. It never grows
 * into a scheduler: one instance per service, first fit by load. This class is the facade its users call
 * and the journaled orchestration of drains; placement, reservations, simulated pre-emption and a replay's
 * trace-node aliases each live in their own class.
 */
export class LocalController implements SchedulerAdapter {
  private readonly sequence: MigrationSequence;
  private readonly placement: TaskPlacement;
  private readonly reservations: ReservationBook;
  private readonly preemption: SimulatedPreemption;
  private readonly aliases = new TraceNodeAliases();
  private readonly eventClock: Clock;
  readonly events: ControllerEventLog;
  /** Moves under way per target node: counted against its room until the task is placed there. */
  private readonly inbound = new Map<string, number>();
  private readonly drainLimit: number;

  private constructor(private readonly deps: LocalControllerDeps) {
    this.drainLimit = deps.drainConcurrency ?? 1;
    if (!Number.isInteger(this.drainLimit) || this.drainLimit < 1)
      throw new ConfigError('drainConcurrency', `expected a whole number of at least 1, got ${this.drainLimit}`);
    this.placement = new TaskPlacement({
      nodes: deps.nodes,
      sidecars: deps.sidecars,
      router: deps.router,
      log: deps.log,
      stateFile: deps.stateFile,
      reservedOn: (node) => this.reservations.reservedOn(node),
    });
    this.reservations = new ReservationBook({
      placement: this.placement,
      prestager: new ReservationPrestager({
        sidecars: deps.sidecars,
        clock: deps.clock,
        log: deps.log.child({ component: 'prestage' }),
      }),
      log: deps.log,
    });
    this.eventClock = deps.eventClock ?? deps.clock;
    this.preemption = new SimulatedPreemption({
      placement: this.placement,
      sidecars: deps.sidecars,
      log: deps.log,
      ...(deps.machines !== undefined ? { machines: deps.machines } : {}),
      ...(deps.waitServing !== undefined ? { waitServing: deps.waitServing } : {}),
      emit: (event) => this.emit(event),
      eventClock: this.eventClock,
    });
    this.sequence = new MigrationSequence({
      journal: deps.journal,
      sidecars: deps.sidecars,
      router: deps.router,
      scheduler: this,
      clock: deps.clock,
      log: deps.log,
      checkpointWaitMs: deps.checkpointWaitMs,
      nodes: () => deps.nodes.map((n) => n.name),
      // The fence for a source that does not answer: only a node this controller killed itself is known dead.
      nodeDown: (node) => this.placement.isDown(node),
      sideOn: (record, node) => this.placement.sideFor(record, node),
      ...(deps.afterStep !== undefined ? { afterStep: deps.afterStep } : {}),
    });
    this.events = deps.events ?? new ControllerEventLog();
    if (deps.announceNodes !== false)
      for (const node of deps.nodes)
        this.emit({
          type: 'node-joined',
          node: node.name,
          pool: 'default',
          nodeClass: 'local',
          timeMs: this.eventClock.now(),
        });
  }

  /** Loads the controller's state and finishes any migration a crash left half-done. */
  static async create(deps: LocalControllerDeps): Promise<LocalController> {
    const controller = new LocalController(deps);
    const resumed = await controller.sequence.resumeAll();
    for (const record of resumed) {
      deps.log.info({ migrationId: record.id, step: record.step }, 'resumed migration finished');
      controller.announceBuddyRestore(record);
    }
    return controller;
  }

  /** Watchers know a node by its alias while it has one. */
  private emit(event: ControllerEvent): void {
    this.events.append({ ...event, node: this.aliases.publicName(event.node) });
  }

  /** Lets `alias` (a trace node) stand for local node `node` in the API and the events, until `unalias`. */
  alias(alias: string, node: string): void {
    this.placement.node(node);
    this.aliases.alias(alias, node);
  }

  unalias(alias: string): void {
    this.aliases.unalias(alias);
  }

  /** The local node a name (alias or local name) stands for. */
  resolveNode(name: string): string {
    return this.aliases.resolve(name);
  }

  publicName(node: string): string {
    return this.aliases.publicName(node);
  }

  /** A replay's trace node with no local node behind it: virtual, or gone. */
  isVirtual(name: string): boolean {
    return this.aliases.isVirtual(name);
  }

  /** A trace node with no local node joins: watchers hear of it, nothing runs. */
  virtualJoined(name: string): void {
    this.aliases.virtualJoined(name);
    this.emit({ type: 'node-joined', node: name, pool: 'default', nodeClass: 'local', timeMs: this.eventClock.now() });
  }

  /** A trace node with no local node is pre-empted: watchers hear of it, nothing was on it. */
  virtualLeft(name: string): void {
    if (!this.aliases.virtualLeft(name)) return;
    this.emit({
      type: 'node-left',
      node: name,
      preempted: true,
      timeMs: this.eventClock.now(),
      detail: 'pre-empted',
    });
  }

  tasks(): Readonly<Record<string, PlacedTask>> {
    return this.placement.tasks();
  }

  migrations(): MigrationRecord[] {
    return this.deps.journal.list();
  }

  nodes(): Promise<PlacementNode[]> {
    return this.placement.nodes();
  }

  async setEligibility(node: string, eligible: boolean, reason: string): Promise<void> {
    const drainEnded = this.placement.setEligibility(node, eligible, reason);
    if (drainEnded) this.emit({ type: 'drain-canceled', node, timeMs: this.eventClock.now() });
    return Promise.resolve();
  }

  async drain(node: string, options: { readonly deadlineMs: number; readonly reason: string }): Promise<void> {
    await this.drainNode(node, options.reason);
  }

  /** Fences the node and moves each of its chained tasks; a task with nowhere to go keeps running. */
  async drainNode(node: string, reason: string): Promise<DrainOutcome[]> {
    this.placement.fence(node, reason);
    this.deps.log.info({ node, reason }, 'node drain started');
    this.emit({ type: 'drain-started', node, timeMs: this.eventClock.now(), detail: reason });
    const outcomes = await this.moveAll(this.placement.tasksOn(node), this.drainLimit);
    this.deps.log.info(
      { node, moved: outcomes.filter((o) => o.outcome === 'moved').length, tasks: outcomes.length },
      'node drain finished',
    );
    this.emit({ type: 'drain-complete', node, timeMs: this.eventClock.now() });
    return outcomes;
  }

  /**
   * Migrates the tasks, at most `limit` at a time, outcomes in the tasks' order. A migration that throws
   * stops new ones from starting; those under way finish (a task is never left mid-move), then it is rethrown.
   */
  private async moveAll(keys: readonly string[], limit: number): Promise<DrainOutcome[]> {
    const outcomes: DrainOutcome[] = [];
    let next = 0;
    let failure: { err: unknown } | undefined;
    const worker = async (): Promise<void> => {
      while (failure === undefined && next < keys.length) {
        const index = next++;
        try {
          outcomes[index] = await this.migrateTask(keys[index] ?? '');
        } catch (err) {
          failure ??= { err };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, keys.length) }, worker));
    if (failure !== undefined) throw failure.err;
    return outcomes;
  }

  /** Watchers learn that a task came back from a background checkpoint, and how old its state is. */
  private announceBuddyRestore(record: MigrationRecord): void {
    const buddy = record.restoredFromBuddy;
    if (buddy === undefined || record.stepsAtUnixMs.restored === undefined) return;
    this.emit({
      type: 'task-restored-from-checkpoint',
      node: record.target.node,
      taskKey: record.taskKey,
      lostOn: this.aliases.publicName(record.source.node),
      buddy: this.aliases.publicName(buddy.node),
      checkpointAgeMs: buddy.ageMs,
      timeMs: this.eventClock.now(),
      detail: `${record.source.node} gone before the hand-over (${buddy.fencedBy}): state as of the background checkpoint ${buddy.checkpointId}, ${buddy.ageMs} ms old`,
    });
  }

  /** Starts a service on the emptiest healthy node and puts it in rotation once it accepts connections. */
  runService(service: ServiceDefinition, waitServing: (instance: Instance) => Promise<void>): Promise<PlacedTask> {
    return this.placement.runService(service, waitServing);
  }

  /** Stops a service and forgets it: out of rotation first, so no request reaches a stopping process. */
  stopService(name: string, signal: string, timeoutMs: number): Promise<void> {
    return this.placement.stopService(name, signal, timeoutMs);
  }

  /** The baseline the demo measures against: stop the task, start a fresh copy elsewhere, its memory lost. */
  coldRestart(
    taskKey: string,
    targetNode: string,
    waitServing: (instance: Instance) => Promise<void>,
  ): Promise<PlacedTask> {
    return this.placement.coldRestart(taskKey, targetNode, waitServing);
  }

  inspect(taskKey: string): Promise<TaskInfo> {
    return this.placement.inspect(taskKey);
  }

  /** Moves one task to the best other node through the migration sequence. */
  async migrateTask(taskKey: string): Promise<DrainOutcome> {
    const task = this.placement.placed(taskKey);
    const nodes = await this.placement.nodes();
    const reserved = this.reservations.targetFor(nodes, taskKey, task.node);
    // Moves under way count against their targets' room (no await from here to the count), so concurrent
    // moves of a drain spread out instead of all picking the emptiest node.
    const target =
      reserved ??
      pickTarget(
        nodes.map((n) => ({ ...n, tasks: n.tasks + (this.inbound.get(n.name) ?? 0) })),
        task.node,
      );
    if (target === undefined) {
      const reason = 'no healthy eligible node with room: the task keeps running where it is';
      this.deps.log.warn({ taskKey, node: task.node }, 'drain cannot move task: no healthy target');
      return { taskKey, outcome: 'stayed', reason };
    }
    const generation = task.generation + 1;
    const targetTaskId = `${task.service.name}-${generation}`;
    const targetSide = this.placement.newSide(task.service, target.name, targetTaskId);
    const now = this.deps.clock.now();
    const record: MigrationRecord = {
      id: `${taskKey}-${generation}-${now}`,
      taskKey,
      handoverKey: `${targetTaskId}/${task.service.name}`,
      mode: task.service.migrationMode ?? this.deps.mode ?? MigrationMode.MIGRATION_MODE_AUTO,
      source: this.placement.currentSide(task),
      target: targetSide,
      targetTransferAddress: target.transferAddress,
      step: 'planned',
      createdAtUnixMs: now,
      updatedAtUnixMs: now,
      stepsAtUnixMs: { planned: now },
    };
    let result: MigrationRecord;
    // A reserved slot is already counted against its node.
    if (reserved === undefined) this.inbound.set(target.name, (this.inbound.get(target.name) ?? 0) + 1);
    try {
      result = await this.sequence.run(record);
    } catch (err) {
      this.deps.log.error({ err, taskKey }, 'migration aborted');
      throw new MigrationError('NC_MIGRATION_STEP_FAILED', `migration of ${taskKey} aborted: ${errorMessage(err)}`, {
        cause: err,
      });
    } finally {
      if (reserved === undefined) this.inbound.set(target.name, (this.inbound.get(target.name) ?? 1) - 1);
    }
    this.announceBuddyRestore(result);
    if (result.step === 'done') {
      await this.reservations.moved(taskKey, task.node, target.name);
      this.placement.removeTaskDir(task.node, task.taskId);
      return { taskKey, outcome: 'moved', migration: result };
    }
    // Rolled back, the target's copy never runs again: the directory made (and filled by the restore) for it goes.
    // A failed move keeps everything for the operator.
    if (result.step === 'rolled-back') this.placement.removeTaskDir(target.name, targetTaskId);
    return { taskKey, outcome: result.step === 'rolled-back' ? 'rolled-back' : 'failed', migration: result };
  }

  /** Holds room on healthy nodes for each chained task of `node`, counted against their capacity. */
  reserve(node: string, reason: string): Promise<Reservation> {
    return this.reservations.reserve(node, reason);
  }

  /** Gives the room back; copies pre-staged for it are deleted in the background (they are never restored). */
  release(id: string): void {
    this.reservations.release(id);
  }

  /** Copies each chained task of a fenced node, still running, to the node its reservation holds room on. */
  prestage(node: string, reservationId: string): Promise<PrestageReport> {
    return this.reservations.prestage(node, reservationId);
  }

  reservationsHeld(): Reservation[] {
    return this.reservations.held();
  }

  /** The cloud takes the node: everything on it dies; chained tasks still there are cold-started elsewhere. */
  preempt(node: string): Promise<PreemptionOutcome> {
    return this.preemption.preempt(node);
  }

  /** A pre-empted node comes back (a new spot instance in its place); a node that never went is only announced. */
  nodeReturned(node: string): Promise<void> {
    return this.preemption.nodeReturned(node);
  }

  async taskPlaced(taskKey: string, node: string, taskId: string): Promise<void> {
    this.placement.taskPlaced(taskKey, node, taskId);
    return Promise.resolve();
  }
}
