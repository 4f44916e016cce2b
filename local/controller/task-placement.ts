import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../common/logging';
import type { Instance, Router } from '../../common/router';
import { pickTarget, type PlacementNode } from '../../common/scheduler/scheduler-adapter';
import type { TaskInfo } from '../../proto/gen/chain/v1/sidecar';
import { LocalClusterError } from '../cluster/errors';
import type { MigrationRecord, TaskSide } from '../migration/migration-record';
import type { NodeSidecars } from '../migration/migration-sequence';
import { ControllerError } from './errors';
import { taskSpecFor, type ServiceDefinition } from './service-definition';

export interface ControllerNode {
  readonly name: string;
  readonly address: string;
  readonly netnsPath: string;
  readonly dataDir: string;
  /** How many chained tasks the node may hold. */
  readonly capacity: number;
}

export interface PlacedTask {
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

export interface TaskPlacementDeps {
  readonly nodes: readonly ControllerNode[];
  readonly sidecars: NodeSidecars;
  readonly router: Router;
  readonly log: Logger;
  /** Where the placements and node flags are kept across restarts. */
  readonly stateFile: string;
  /** Room a node holds for reservations, counted against its capacity as tasks. */
  readonly reservedOn: (node: string) => number;
}

/**
 * Where each chained service runs and what each node may take: the node flags and placements (persisted),
 * starting and stopping a service's task, and the directories and identities a task has on a node.
 */
export class TaskPlacement {
  private readonly state: ControllerState;

  constructor(private readonly deps: TaskPlacementDeps) {
    this.state = TaskPlacement.load(deps.stateFile, deps.nodes);
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

  node(name: string): ControllerNode {
    const node = this.deps.nodes.find((n) => n.name === name);
    if (node === undefined)
      throw new LocalClusterError('NC_CLUSTER_NO_NODE', `no node ${JSON.stringify(name)}`, { context: { node: name } });
    return node;
  }

  tasks(): Readonly<Record<string, PlacedTask>> {
    return this.state.tasks;
  }

  /** The keys of the tasks placed on `node`. */
  tasksOn(node: string): string[] {
    return Object.entries(this.state.tasks)
      .filter(([, task]) => task.node === node)
      .map(([taskKey]) => taskKey);
  }

  placed(taskKey: string): PlacedTask {
    const task = this.state.tasks[taskKey];
    if (task === undefined)
      throw new ControllerError('NC_TASK_NOT_FOUND', `no task ${JSON.stringify(taskKey)}`, { context: { taskKey } });
    return task;
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
        return {
          name: node.name,
          address: node.address,
          transferAddress,
          eligible: flags.eligible,
          draining: flags.draining,
          healthy,
          tasks: this.tasksOn(node.name).length + this.deps.reservedOn(node.name),
          capacity: node.capacity,
        };
      }),
    );
  }

  /** Only a node this controller killed itself is known to be gone. */
  isDown(node: string): boolean {
    return this.state.nodes[node]?.up === false;
  }

  /** Returns whether this ended a drain: as in Nomad, marking a node eligible does. */
  setEligibility(node: string, eligible: boolean, reason: string): boolean {
    this.node(node);
    const flags = this.state.nodes[node] ?? { eligible, draining: false, reason };
    this.state.nodes[node] = { ...flags, eligible, draining: eligible ? false : flags.draining, reason };
    this.save();
    this.deps.log.info({ node, eligible, reason }, 'node eligibility changed');
    return eligible && flags.draining;
  }

  /** A drain starts: nothing new is placed on the node. */
  fence(node: string, reason: string): void {
    this.node(node);
    this.state.nodes[node] = { ...this.state.nodes[node], eligible: false, draining: true, reason };
    this.save();
  }

  markDown(node: string): void {
    this.state.nodes[node] = {
      ...(this.state.nodes[node] ?? { eligible: false, draining: false, reason: '' }),
      up: false,
      eligible: false,
      draining: false,
      reason: 'pre-empted',
    };
    this.save();
  }

  markReturned(node: string): void {
    this.state.nodes[node] = { eligible: true, draining: false, reason: 'returned', up: true };
    this.save();
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
    return this.startOn(target.name, service, 1, waitServing);
  }

  /** Starts generation `generation` of a service on `nodeName`, in rotation once it accepts connections. */
  async startOn(
    nodeName: string,
    service: ServiceDefinition,
    generation: number,
    waitServing: (instance: Instance) => Promise<void>,
  ): Promise<PlacedTask> {
    const node = this.node(nodeName);
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
    this.removeTaskDir(node.name, task.taskId);
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
    return this.startOn(targetNode, task.service, task.generation + 1, waitServing);
  }

  inspect(taskKey: string): Promise<TaskInfo> {
    const task = this.placed(taskKey);
    return this.deps.sidecars.sidecar(task.node).inspectTask(task.taskId);
  }

  /** The task runs as `taskId` on `node` now; its generation follows the id's suffix. */
  taskPlaced(taskKey: string, node: string, taskId: string): void {
    const task = this.state.tasks[taskKey];
    if (task === undefined) return;
    const generation = Number(taskId.slice(taskId.lastIndexOf('-') + 1)) || task.generation + 1;
    this.state.tasks[taskKey] = { ...task, node, taskId, generation };
    this.save();
  }

  /** A start of `generation` failed: the next attempt takes a new one, as the failed one's id may still be held. */
  skipGeneration(taskKey: string, generation: number): void {
    this.state.tasks[taskKey] = { ...this.placed(taskKey), generation };
  }

  /** The side of a placed task where it runs now. */
  currentSide(task: PlacedTask): TaskSide {
    const node = this.node(task.node);
    return this.side(task.service, node, task.taskId, this.taskDir(node, task.taskId));
  }

  /** A new side for the service on `nodeName` as `taskId`, its directories made there. */
  newSide(service: ServiceDefinition, nodeName: string, taskId: string): TaskSide {
    const node = this.node(nodeName);
    return this.side(service, node, taskId, this.prepareDirs(node, service, taskId));
  }

  /** The migrated task's side on `nodeName` under the migration's target task id, its directories made there. */
  sideFor(record: MigrationRecord, nodeName: string): TaskSide {
    return this.newSide(this.placed(record.taskKey).service, nodeName, record.target.taskId);
  }

  /**
   * Only after a move is done: until then a rollback restores the source onto its own directory. Synchronous,
   * as the directory's making is: awaiting the disk here let a replay's timeline overtake the drain's end.
   */
  removeTaskDir(nodeName: string, taskId: string): void {
    const node = this.node(nodeName);
    const dir = this.taskDir(node, taskId);
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      // The move itself succeeded; a directory left behind costs disk, not correctness.
      this.deps.log.warn({ err, node: node.name, dir }, 'cannot remove a moved task directory');
    }
  }

  private side(service: ServiceDefinition, node: ControllerNode, taskId: string, dir: string): TaskSide {
    return {
      node: node.name,
      taskId,
      identity: this.identity(service, taskId),
      spec: taskSpecFor(service, dir, node.netnsPath),
      instance: this.instance(service, node, taskId),
    };
  }

  private taskDir(node: ControllerNode, taskId: string): string {
    return join(node.dataDir, 'allocs', taskId);
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
}
