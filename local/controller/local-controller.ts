import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '../../common/clock';
import { ConfigError } from '../../common/config-error';
import { errorCode, errorMessage } from '../../common/errors';
import { LocalClusterError } from '../cluster/errors';
import type { Logger } from '../../common/logging';
import type { Instance, Router } from '../../common/router';
import { pickTarget, type PlacementNode, type SchedulerAdapter } from '../../common/scheduler/scheduler-adapter';
import { MigrationMode, type TaskInfo } from '../../proto/gen/chain/v1/sidecar';
import type { MigrationJournal } from '../migration/migration-journal';
import type { MigrationRecord, TaskSide } from '../migration/migration-record';
import { MigrationError } from '../migration/errors';
import { MigrationSequence, type NodeSidecars } from '../migration/migration-sequence';
import { ControllerEventLog, type ControllerEvent } from './controller-events';
import { ControllerError } from './errors';
import { ReservationPrestager, type PrestageItem, type PrestageOutcome } from './reservation-prestager';
import { taskSpecFor, type ServiceDefinition } from './service-definition';

export interface ControllerNode {
  readonly name: string;
  readonly address: string;
  readonly netnsPath: string;
  readonly dataDir: string;
  /** How many chained tasks the node may hold. */
  readonly capacity: number;
}

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

export interface NodeMachines {
  kill(node: string): Promise<void>;
  restart(node: string): Promise<void>;
}

export interface Reservation {
  readonly id: string;
  readonly node: string;
  readonly targets: readonly string[];
  readonly tasks: number;
  /** taskKey → the node holding room for it: where it is pre-staged and where its drain moves it. */
  readonly assignments: Readonly<Record<string, string>>;
}

export interface PrestageReport {
  readonly node: string;
  readonly reservation: string;
  readonly staged: readonly PrestageOutcome[];
}

export interface PreemptionOutcome {
  readonly node: string;
  /** Chained tasks that were still on the node when it went: cold-started elsewhere, their memory lost. */
  readonly caught: readonly string[];
  readonly restartedOn: Readonly<Record<string, string>>;
}

interface PlacedTask {
  readonly service: ServiceDefinition;
  readonly node: string;
  readonly taskId: string;
  readonly generation: number;
}

interface NodeFlags {
  eligible: boolean;
  draining: boolean;
  reason: string;
  /** False while the node is gone (pre-empted and not back). */
  up?: boolean;
}

interface ControllerState {
  nodes: Record<string, NodeFlags>;
  tasks: Record<string, PlacedTask>;
}

export type DrainOutcome =
  | { readonly taskKey: string; readonly outcome: 'moved'; readonly migration: MigrationRecord }
  | { readonly taskKey: string; readonly outcome: 'rolled-back' | 'failed'; readonly migration: MigrationRecord }
  | { readonly taskKey: string; readonly outcome: 'stayed'; readonly reason: string };

/**
 * Local mode's stand-in for Nomad's placement: picks a healthy node with room, starts chained services
 * there, and on a drain moves each of the node's tasks through the migration sequence. It never grows
 * into a scheduler: one instance per service, first fit by load.
 */
export class LocalController implements SchedulerAdapter {
  private readonly sequence: MigrationSequence;
  private readonly prestager: ReservationPrestager;
  private state: ControllerState;
  readonly events: ControllerEventLog;
  private readonly reservations = new Map<string, Reservation>();
  /** Pre-emptions per node so far: a cold start whose target was pre-empted meanwhile did not start anything. */
  private readonly kills = new Map<string, number>();
  private nextReservation = 1;
  /** Replay: a trace node's name → the local node standing in for it, and back. */
  private readonly aliases = new Map<string, string>();
  private readonly aliasOf = new Map<string, string>();
  /** Replay: trace nodes with no local node; their events are told, actions on them do nothing. */
  private readonly virtualNodes = new Set<string>();
  /** Replay: trace nodes that have left; a watcher may still act on them, and that too does nothing. */
  private readonly departed = new Set<string>();
  /** Moves under way per target node: counted against its room until the task is placed there. */
  private readonly inbound = new Map<string, number>();
  private readonly drainLimit: number;

  private constructor(private readonly deps: LocalControllerDeps) {
    this.drainLimit = deps.drainConcurrency ?? 1;
    if (!Number.isInteger(this.drainLimit) || this.drainLimit < 1)
      throw new ConfigError('drainConcurrency', `expected a whole number of at least 1, got ${this.drainLimit}`);
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
      nodeDown: (node) => this.state.nodes[node]?.up === false,
      sideOn: (record, node) => this.sideFor(record, node),
      ...(deps.afterStep !== undefined ? { afterStep: deps.afterStep } : {}),
    });
    this.prestager = new ReservationPrestager({
      sidecars: deps.sidecars,
      clock: deps.clock,
      log: deps.log.child({ component: 'prestage' }),
    });
    this.state = LocalController.load(deps.stateFile, deps.nodes);
    this.events = deps.events ?? new ControllerEventLog();
    if (deps.announceNodes !== false)
      for (const node of deps.nodes)
        this.emit({
          type: 'node-joined',
          node: node.name,
          pool: 'default',
          nodeClass: 'local',
          timeMs: this.eventNow(),
        });
  }

  private eventNow(): number {
    return (this.deps.eventClock ?? this.deps.clock).now();
  }

  /** Watchers know a node by its alias while it has one. */
  private emit(event: ControllerEvent): void {
    this.events.append({ ...event, node: this.publicName(event.node) });
  }

  /** Lets `alias` (a trace node) stand for local node `node` in the API and the events, until `unalias`. */
  alias(alias: string, node: string): void {
    this.node(node);
    const previous = this.aliasOf.get(node);
    if (previous !== undefined) this.aliases.delete(previous);
    this.aliases.set(alias, node);
    this.aliasOf.set(node, alias);
    this.departed.delete(alias);
  }

  unalias(alias: string): void {
    const node = this.aliases.get(alias);
    if (node === undefined) return;
    this.aliases.delete(alias);
    this.aliasOf.delete(node);
    this.departed.add(alias);
  }

  /** The local node a name (alias or local name) stands for. */
  resolveNode(name: string): string {
    return this.aliases.get(name) ?? name;
  }

  publicName(node: string): string {
    return this.aliasOf.get(node) ?? node;
  }

  /** A replay's trace node with no local node behind it: virtual, or gone. */
  isVirtual(name: string): boolean {
    return this.virtualNodes.has(name) || this.departed.has(name);
  }

  /** A trace node with no local node joins: watchers hear of it, nothing runs. */
  virtualJoined(name: string): void {
    this.virtualNodes.add(name);
    this.departed.delete(name);
    this.emit({ type: 'node-joined', node: name, pool: 'default', nodeClass: 'local', timeMs: this.eventNow() });
  }

  /** A trace node with no local node is pre-empted: watchers hear of it, nothing was on it. */
  virtualLeft(name: string): void {
    if (!this.virtualNodes.delete(name)) return;
    this.departed.add(name);
    this.emit({ type: 'node-left', node: name, preempted: true, timeMs: this.eventNow(), detail: 'pre-empted' });
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

  private static load(stateFile: string, nodes: readonly ControllerNode[]): ControllerState {
    let state: ControllerState = { nodes: {}, tasks: {} };
    try {
      state = JSON.parse(readFileSync(stateFile, 'utf8')) as ControllerState;
    } catch {
      // First start: nothing placed yet.
    }
    for (const node of nodes) state.nodes[node.name] ??= { eligible: true, draining: false, reason: '' };
    return state;
  }

  private save(): void {
    const tmp = `${this.deps.stateFile}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.state, null, 2)}\n`);
    renameSync(tmp, this.deps.stateFile);
  }

  private node(name: string): ControllerNode {
    const node = this.deps.nodes.find((n) => n.name === name);
    if (node === undefined)
      throw new LocalClusterError('NC_CLUSTER_NO_NODE', `no node ${JSON.stringify(name)}`, { context: { node: name } });
    return node;
  }

  tasks(): Readonly<Record<string, PlacedTask>> {
    return this.state.tasks;
  }

  migrations(): MigrationRecord[] {
    return this.deps.journal.list();
  }

  async nodes(): Promise<PlacementNode[]> {
    return Promise.all(
      this.deps.nodes.map(async (node) => {
        const flags = this.state.nodes[node.name] ?? { eligible: true, draining: false, reason: '' };
        let healthy = false;
        // Peers reach a node's transfer server where its sidecar says, not at an assumed port.
        let transferAddress = '';
        if (flags.up !== false) {
          try {
            const features = await this.deps.sidecars.sidecar(node.name).features();
            healthy = features.healthy && features.transferAddress !== '';
            transferAddress = features.transferAddress;
          } catch {
            healthy = false;
          }
        }
        const reserved = [...this.reservations.values()].reduce(
          (n, r) => n + r.targets.filter((t) => t === node.name).length,
          0,
        );
        return {
          name: node.name,
          address: node.address,
          transferAddress,
          eligible: flags.eligible,
          draining: flags.draining,
          healthy,
          tasks: Object.values(this.state.tasks).filter((t) => t.node === node.name).length + reserved,
          capacity: node.capacity,
        };
      }),
    );
  }

  async setEligibility(node: string, eligible: boolean, reason: string): Promise<void> {
    this.node(node);
    const flags = this.state.nodes[node] ?? { eligible, draining: false, reason };
    // As in Nomad: marking a node eligible ends its drain.
    this.state.nodes[node] = { ...flags, eligible, draining: eligible ? false : flags.draining, reason };
    if (eligible && flags.draining) this.emit({ type: 'drain-canceled', node, timeMs: this.eventNow() });
    this.save();
    this.deps.log.info({ node, eligible, reason }, 'node eligibility changed');
    return Promise.resolve();
  }

  async drain(node: string, options: { readonly deadlineMs: number; readonly reason: string }): Promise<void> {
    await this.drainNode(node, options.reason);
  }

  /** Fences the node and moves each of its chained tasks; a task with nowhere to go keeps running. */
  async drainNode(node: string, reason: string): Promise<DrainOutcome[]> {
    this.node(node);
    this.state.nodes[node] = { ...this.state.nodes[node], eligible: false, draining: true, reason };
    this.save();
    this.deps.log.info({ node, reason }, 'node drain started');
    this.emit({ type: 'drain-started', node, timeMs: this.eventNow(), detail: reason });
    const keys = Object.entries(this.state.tasks)
      .filter(([, task]) => task.node === node)
      .map(([taskKey]) => taskKey);
    const outcomes = await this.moveAll(keys, this.drainLimit);
    this.deps.log.info(
      { node, moved: outcomes.filter((o) => o.outcome === 'moved').length, tasks: outcomes.length },
      'node drain finished',
    );
    this.emit({ type: 'drain-complete', node, timeMs: this.eventNow() });
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

  private taskDir(node: ControllerNode, taskId: string): string {
    return join(node.dataDir, 'allocs', taskId);
  }

  /**
   * Only after a move is done: until then a rollback restores the source onto its own directory. Synchronous,
   * as the directory's making is: awaiting the disk here let a replay's timeline overtake the drain's end.
   */
  private removeTaskDir(node: ControllerNode, taskId: string): void {
    const dir = this.taskDir(node, taskId);
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      // The move itself succeeded; a directory left behind costs disk, not correctness.
      this.deps.log.warn({ err, node: node.name, dir }, 'cannot remove a moved task directory');
    }
  }

  /** Watchers learn that a task came back from a background checkpoint, and how old its state is. */
  private announceBuddyRestore(record: MigrationRecord): void {
    const buddy = record.restoredFromBuddy;
    if (buddy === undefined || record.stepsAtUnixMs.restored === undefined) return;
    this.emit({
      type: 'task-restored-from-checkpoint',
      node: record.target.node,
      taskKey: record.taskKey,
      lostOn: this.publicName(record.source.node),
      buddy: this.publicName(buddy.node),
      checkpointAgeMs: buddy.ageMs,
      timeMs: this.eventNow(),
      detail: `${record.source.node} gone before the hand-over (${buddy.fencedBy}): state as of the background checkpoint ${buddy.checkpointId}, ${buddy.ageMs} ms old`,
    });
  }

  /** The task's side on `nodeName` under the migration's target task id, its directories made there. */
  private sideFor(record: MigrationRecord, nodeName: string): TaskSide {
    const { service } = this.placed(record.taskKey);
    const node = this.node(nodeName);
    const dir = this.prepareDirs(node, service, record.target.taskId);
    return {
      node: node.name,
      taskId: record.target.taskId,
      identity: this.identity(service, record.target.taskId),
      spec: taskSpecFor(service, dir, node.netnsPath),
      instance: this.instance(service, node, record.target.taskId),
    };
  }

  private prepareDirs(node: ControllerNode, service: ServiceDefinition, taskId: string): string {
    const dir = this.taskDir(node, taskId);
    for (const sub of ['alloc', 'local', 'secrets']) mkdirSync(join(dir, sub), { recursive: true });
    for (const [hostPath, name] of Object.entries(service.localFiles)) copyFileSync(hostPath, join(dir, 'local', name));
    return dir;
  }

  private instance(service: ServiceDefinition, node: ControllerNode, taskId: string): Instance {
    return { service: service.name, id: taskId, address: node.address, port: service.port, node: node.name };
  }

  private identity(service: ServiceDefinition, taskId: string) {
    return { taskId, allocId: taskId, taskName: service.name, jobId: service.name, namespace: 'local' };
  }

  private async startOn(
    node: ControllerNode,
    service: ServiceDefinition,
    generation: number,
    waitServing: (instance: Instance) => Promise<void>,
  ): Promise<PlacedTask> {
    const taskId = `${service.name}-${generation}`;
    const dir = this.prepareDirs(node, service, taskId);
    await this.deps.sidecars
      .sidecar(node.name)
      .startTask({ identity: this.identity(service, taskId), spec: taskSpecFor(service, dir, node.netnsPath) });
    const instance = this.instance(service, node, taskId);
    await waitServing(instance);
    await this.deps.router.joinRotation(instance);
    const placed = { service, node: node.name, taskId, generation };
    this.state.tasks[service.name] = placed;
    this.save();
    this.deps.log.info({ service: service.name, node: node.name, taskId }, 'service started');
    return placed;
  }

  /** Starts a service on the emptiest healthy node and puts it in rotation once it accepts connections. */
  async runService(
    service: ServiceDefinition,
    waitServing: (instance: Instance) => Promise<void>,
  ): Promise<PlacedTask> {
    const target = pickTarget(await this.nodes(), '');
    if (target === undefined) {
      throw new ControllerError('NC_CONTROLLER_NO_CAPACITY', `no healthy eligible node with room for ${service.name}`, {
        context: { service: service.name },
      });
    }
    return this.startOn(this.node(target.name), service, 1, waitServing);
  }

  /** Stops a service and forgets it: out of rotation first, so no request reaches a stopping process. */
  async stopService(name: string, signal: string, timeoutMs: number): Promise<void> {
    const task = this.placed(name);
    const node = this.node(task.node);
    await this.deps.router.leaveRotation(this.instance(task.service, node, task.taskId));
    const sidecar = this.deps.sidecars.sidecar(node.name);
    await sidecar.stopTask({ taskId: task.taskId, signal, timeoutMs });
    await sidecar.destroyTask({ taskId: task.taskId, force: true });
    delete this.state.tasks[name];
    this.save();
    this.removeTaskDir(node, task.taskId);
    this.deps.log.info({ service: name, node: node.name, taskId: task.taskId }, 'service stopped');
  }

  /**
   * What Nomad's own drivers do on a drain, kept as the baseline the demo measures against: stop the task,
   * start a fresh copy elsewhere. Its memory is lost.
   */
  async coldRestart(
    taskKey: string,
    targetNode: string,
    waitServing: (instance: Instance) => Promise<void>,
  ): Promise<PlacedTask> {
    const task = this.placed(taskKey);
    const source = this.node(task.node);
    await this.deps.router.leaveRotation(this.instance(task.service, source, task.taskId));
    const sidecar = this.deps.sidecars.sidecar(source.name);
    await sidecar.stopTask({ taskId: task.taskId, signal: 'SIGTERM', timeoutMs: 5000 });
    await sidecar.destroyTask({ taskId: task.taskId, force: true });
    return this.startOn(this.node(targetNode), task.service, task.generation + 1, waitServing);
  }

  inspect(taskKey: string): Promise<TaskInfo> {
    const task = this.placed(taskKey);
    return this.deps.sidecars.sidecar(task.node).inspectTask(task.taskId);
  }

  private placed(taskKey: string): PlacedTask {
    const task = this.state.tasks[taskKey];
    if (task === undefined)
      throw new ControllerError('NC_TASK_NOT_FOUND', `no task ${JSON.stringify(taskKey)}`, { context: { taskKey } });
    return task;
  }

  /** Moves one task to the best other node through the migration sequence. */
  async migrateTask(taskKey: string): Promise<DrainOutcome> {
    const task = this.state.tasks[taskKey];
    if (task === undefined)
      throw new ControllerError('NC_TASK_NOT_FOUND', `no task ${JSON.stringify(taskKey)}`, { context: { taskKey } });
    const nodes = await this.nodes();
    const reserved = this.reservedTarget(nodes, taskKey, task.node);
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
    const source = this.node(task.node);
    const targetNode = this.node(target.name);
    const generation = task.generation + 1;
    const targetTaskId = `${task.service.name}-${generation}`;
    const targetDir = this.prepareDirs(targetNode, task.service, targetTaskId);
    const now = this.deps.clock.now();
    const record: MigrationRecord = {
      id: `${taskKey}-${generation}-${now}`,
      taskKey,
      handoverKey: `${targetTaskId}/${task.service.name}`,
      mode: task.service.migrationMode ?? this.deps.mode ?? MigrationMode.MIGRATION_MODE_AUTO,
      source: {
        node: source.name,
        taskId: task.taskId,
        identity: this.identity(task.service, task.taskId),
        spec: taskSpecFor(task.service, this.taskDir(source, task.taskId), source.netnsPath),
        instance: this.instance(task.service, source, task.taskId),
      },
      target: {
        node: targetNode.name,
        taskId: targetTaskId,
        identity: this.identity(task.service, targetTaskId),
        spec: taskSpecFor(task.service, targetDir, targetNode.netnsPath),
        instance: this.instance(task.service, targetNode, targetTaskId),
      },
      targetTransferAddress: target.transferAddress,
      step: 'planned',
      createdAtUnixMs: now,
      updatedAtUnixMs: now,
      stepsAtUnixMs: { planned: now },
    };
    let result: MigrationRecord;
    // A reserved slot is already counted against its node.
    if (reserved === undefined) this.inbound.set(targetNode.name, (this.inbound.get(targetNode.name) ?? 0) + 1);
    try {
      result = await this.sequence.run(record);
    } catch (err) {
      this.deps.log.error({ err, taskKey }, 'migration aborted');
      throw new MigrationError('NC_MIGRATION_STEP_FAILED', `migration of ${taskKey} aborted: ${errorMessage(err)}`, {
        cause: err,
      });
    } finally {
      if (reserved === undefined) this.inbound.set(targetNode.name, (this.inbound.get(targetNode.name) ?? 1) - 1);
    }
    this.announceBuddyRestore(result);
    if (result.step === 'done') {
      this.consumeReservation(taskKey, task.node, targetNode.name);
      await this.prestager.discard(taskKey);
      this.removeTaskDir(source, task.taskId);
      return { taskKey, outcome: 'moved', migration: result };
    }
    return { taskKey, outcome: result.step === 'rolled-back' ? 'rolled-back' : 'failed', migration: result };
  }

  private reservationFor(taskKey: string, source: string): Reservation | undefined {
    return [...this.reservations.values()].find((r) => r.node === source && r.assignments[taskKey] !== undefined);
  }

  /**
   * The node a reservation holds room on for this task: where it was pre-staged, so its migration sends only
   * what changed since. Its slot is already counted against that node's capacity, so only health and
   * eligibility are checked; an unusable one falls back to ordinary placement.
   */
  private reservedTarget(nodes: readonly PlacementNode[], taskKey: string, source: string): PlacementNode | undefined {
    const name = this.reservationFor(taskKey, source)?.assignments[taskKey];
    if (name === undefined) return undefined;
    const node = nodes.find((n) => n.name === name);
    if (node !== undefined && node.name !== source && node.healthy && node.eligible && !node.draining) return node;
    this.deps.log.warn({ taskKey, reserved: name }, 'reserved target unusable: placing the task elsewhere');
    return undefined;
  }

  /** The task has moved: its reserved slot turned into the task itself, so it stops counting twice. */
  private consumeReservation(taskKey: string, source: string, movedTo: string): void {
    const reservation = this.reservationFor(taskKey, source);
    if (reservation === undefined) return;
    const slot = reservation.assignments[taskKey] ?? '';
    const assignments = Object.fromEntries(Object.entries(reservation.assignments).filter(([k]) => k !== taskKey));
    // The targets are the assignments' nodes, in the same order (reserve builds both in one loop).
    this.reservations.set(reservation.id, { ...reservation, targets: Object.values(assignments), assignments });
    if (slot !== movedTo) this.deps.log.info({ taskKey, reserved: slot, movedTo }, 'task moved off its reserved slot');
  }

  /** Holds room on healthy nodes for each chained task of `node`, counted against their capacity. */
  async reserve(node: string, reason: string): Promise<Reservation> {
    this.node(node);
    const tasks = Object.keys(this.state.tasks).filter((key) => this.state.tasks[key]?.node === node);
    const targets: string[] = [];
    const assignments: Record<string, string> = {};
    let nodes = await this.nodes();
    for (const taskKey of tasks) {
      const target = pickTarget(nodes, node);
      if (target === undefined) break;
      targets.push(target.name);
      assignments[taskKey] = target.name;
      // Count it at once, so the next task of the same node does not take the same slot.
      nodes = nodes.map((n) => (n.name === target.name ? { ...n, tasks: n.tasks + 1 } : n));
    }
    const reservation = {
      id: `reservation-${this.nextReservation++}`,
      node,
      targets,
      tasks: tasks.length,
      assignments,
    };
    this.reservations.set(reservation.id, reservation);
    this.deps.log.info({ node, reason, targets }, 'capacity reserved');
    return reservation;
  }

  /** Gives the room back; copies pre-staged for it are deleted in the background (they are never restored). */
  release(id: string): void {
    const reservation = this.reservations.get(id);
    if (reservation === undefined) return;
    this.reservations.delete(id);
    this.deps.log.info({ reservation: id }, 'reservation released');
    for (const taskKey of Object.keys(reservation.assignments)) void this.prestager.discard(taskKey);
  }

  /**
   * Copies each chained task of a fenced node, still running, to the node its reservation holds room on.
   * Per-task failures are in the report, never thrown: the drain moves every task with or without its copy.
   */
  async prestage(node: string, reservationId: string): Promise<PrestageReport> {
    this.node(node);
    const reservation = this.reservations.get(reservationId);
    if (reservation === undefined || reservation.node !== node) {
      throw new ControllerError('NC_CONTROLLER_NO_RESERVATION', `no reservation ${reservationId} for ${node}`, {
        context: { node, reservation: reservationId },
      });
    }
    const nodes = await this.nodes();
    const items: PrestageItem[] = [];
    for (const [taskKey, targetNode] of Object.entries(reservation.assignments)) {
      const task = this.state.tasks[taskKey];
      // Moved or gone since the reservation: nothing of it is left here to copy.
      if (task === undefined || task.node !== node) continue;
      const target = nodes.find((n) => n.name === targetNode && n.healthy);
      items.push({
        taskKey,
        taskId: task.taskId,
        sourceNode: node,
        targetNode,
        targetAddress: target?.transferAddress ?? '',
      });
    }
    const staged = await this.prestager.prestage(items);
    this.deps.log.info(
      {
        node,
        reservation: reservationId,
        staged: staged.filter((o) => o.outcome === 'staged').length,
        tasks: staged.length,
        wireBytes: staged.reduce((sum, o) => sum + (o.outcome === 'staged' ? o.wireBytes : 0), 0),
      },
      'pre-stage finished',
    );
    return { node, reservation: reservationId, staged };
  }

  reservationsHeld(): Reservation[] {
    return [...this.reservations.values()];
  }

  /**
   * The cloud takes the node: everything on it dies at once. Chained tasks still there are caught: they
   * are cold-started elsewhere (as Nomad would reschedule them) and their memory is lost.
   */
  async preempt(node: string): Promise<PreemptionOutcome> {
    this.node(node);
    const machines = this.deps.machines;
    if (machines === undefined)
      throw new ControllerError('NC_CONTROLLER_NO_MACHINES', 'this controller cannot pre-empt nodes', {
        context: { node },
      });
    this.kills.set(node, (this.kills.get(node) ?? 0) + 1);
    await machines.kill(node);
    this.state.nodes[node] = {
      ...(this.state.nodes[node] ?? { eligible: false, draining: false, reason: '' }),
      up: false,
      eligible: false,
      draining: false,
      reason: 'pre-empted',
    };
    this.save();
    this.emit({ type: 'node-left', node, preempted: true, timeMs: this.eventNow(), detail: 'pre-empted' });
    const caught = Object.entries(this.state.tasks).filter(([, t]) => t.node === node);
    const restartedOn: Record<string, string> = {};
    for (const [taskKey, task] of caught) {
      this.deps.log.warn({ taskKey, node }, 'pre-emption caught a chained task: memory lost');
      const placed = await this.coldStartElsewhere(taskKey, task, node);
      if (placed !== undefined) restartedOn[taskKey] = placed.node;
    }
    return { node, caught: caught.map(([k]) => k), restartedOn };
  }

  /**
   * Cold-starts a caught task on the emptiest healthy node, and on the next one if that start fails (the target
   * may go too while the task comes up, in a burst of pre-emptions): every caught task is tried on every node
   * before it is given up, and each failed start is destroyed so no half-started copy lingers.
   */
  private async coldStartElsewhere(taskKey: string, task: PlacedTask, gone: string): Promise<PlacedTask | undefined> {
    const tried = new Set([gone]);
    for (;;) {
      const target = pickTarget(
        (await this.nodes()).filter((n) => !tried.has(n.name)),
        '',
      );
      if (target === undefined) {
        this.deps.log.error({ taskKey, node: gone, tried: [...tried] }, 'caught task lost: no node could start it');
        return undefined;
      }
      tried.add(target.name);
      const generation = this.placed(taskKey).generation + 1;
      const kills = this.kills.get(target.name) ?? 0;
      try {
        const placed = await this.startOn(
          this.node(target.name),
          task.service,
          generation,
          this.deps.waitServing ?? (() => Promise.resolve()),
        );
        if ((this.kills.get(target.name) ?? 0) === kills) return placed;
        // The target was pre-empted while the task came up, after that pre-emption looked for what it caught.
        this.deps.log.warn(
          { taskKey, target: target.name },
          'cold start target was pre-empted meanwhile; trying another node',
        );
      } catch (err) {
        this.deps.log.warn(
          { err, code: errorCode(err), taskKey, target: target.name },
          'cold start failed; trying another node',
        );
        await this.deps.sidecars
          .sidecar(target.name)
          .destroyTask({ taskId: `${task.service.name}-${generation}`, force: true })
          .catch(() => undefined);
        // The next attempt takes a new generation: the failed one's id may still be held on that node.
        this.state.tasks[taskKey] = { ...this.placed(taskKey), generation };
      }
    }
  }

  /** A pre-empted node comes back (a new spot instance in its place); a node that never went is only announced. */
  async nodeReturned(node: string): Promise<void> {
    this.node(node);
    const machines = this.deps.machines;
    if (machines === undefined)
      throw new ControllerError('NC_CONTROLLER_NO_MACHINES', 'this controller cannot restart nodes', {
        context: { node },
      });
    if (this.state.nodes[node]?.up === false) await machines.restart(node);
    this.state.nodes[node] = { eligible: true, draining: false, reason: 'returned', up: true };
    this.save();
    this.emit({ type: 'node-joined', node, pool: 'default', nodeClass: 'local', timeMs: this.eventNow() });
  }

  async taskPlaced(taskKey: string, node: string, taskId: string): Promise<void> {
    const task = this.state.tasks[taskKey];
    if (task === undefined) return;
    const generation = Number(taskId.slice(taskId.lastIndexOf('-') + 1)) || task.generation + 1;
    this.state.tasks[taskKey] = { ...task, node, taskId, generation };
    this.save();
    return Promise.resolve();
  }
}
