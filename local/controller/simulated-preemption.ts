import type { Clock } from '../../common/clock';
import { errorCode } from '../../common/errors';
import type { Logger } from '../../common/logging';
import type { Instance } from '../../common/router';
import { pickTarget } from '../../common/scheduler/scheduler-adapter';
import type { NodeSidecars } from '../migration/migration-sequence';
import type { ControllerEvent } from './controller-events';
import { ControllerError } from './errors';
import type { PlacedTask, TaskPlacement } from './task-placement';

export interface NodeMachines {
  kill(node: string): Promise<void>;
  restart(node: string): Promise<void>;
}

export interface PreemptionOutcome {
  readonly node: string;
  /** Chained tasks that were still on the node when it went: cold-started elsewhere, their memory lost. */
  readonly caught: readonly string[];
  readonly restartedOn: Readonly<Record<string, string>>;
}

export interface SimulatedPreemptionDeps {
  readonly placement: TaskPlacement;
  readonly sidecars: NodeSidecars;
  readonly log: Logger;
  /** What a pre-emption does to a node and how it returns; without it, nodes cannot be pre-empted. */
  readonly machines?: NodeMachines;
  /** Waits until a cold-started instance accepts connections. */
  readonly waitServing?: (instance: Instance) => Promise<void>;
  readonly emit: (event: ControllerEvent) => void;
  /** The time events carry. */
  readonly eventClock: Clock;
}

/**
 * Local mode's spot market: the cloud takes a node and everything on it dies at once; Nomad's rescheduling of
 * what it caught is a cold start elsewhere; a new instance comes back in its place.
 */
export class SimulatedPreemption {
  /** Pre-emptions per node so far: a cold start whose target was pre-empted meanwhile did not start anything. */
  private readonly kills = new Map<string, number>();

  constructor(private readonly deps: SimulatedPreemptionDeps) {}

  /**
   * The cloud takes the node: everything on it dies at once. Chained tasks still there are caught: they
   * are cold-started elsewhere (as Nomad would reschedule them) and their memory is lost.
   */
  async preempt(node: string): Promise<PreemptionOutcome> {
    const machines = this.machines(node, 'this controller cannot pre-empt nodes');
    this.kills.set(node, (this.kills.get(node) ?? 0) + 1);
    await machines.kill(node);
    this.deps.placement.markDown(node);
    this.deps.emit({
      type: 'node-left',
      node,
      preempted: true,
      timeMs: this.deps.eventClock.now(),
      detail: 'pre-empted',
    });
    const caught = Object.entries(this.deps.placement.tasks()).filter(([, t]) => t.node === node);
    const restartedOn: Record<string, string> = {};
    for (const [taskKey, task] of caught) {
      this.deps.log.warn({ taskKey, node }, 'pre-emption caught a chained task: memory lost');
      const placed = await this.coldStartElsewhere(taskKey, task, node);
      if (placed !== undefined) restartedOn[taskKey] = placed.node;
    }
    return { node, caught: caught.map(([k]) => k), restartedOn };
  }

  /** A pre-empted node comes back (a new spot instance in its place); a node that never went is only announced. */
  async nodeReturned(node: string): Promise<void> {
    const machines = this.machines(node, 'this controller cannot restart nodes');
    if (this.deps.placement.isDown(node)) await machines.restart(node);
    this.deps.placement.markReturned(node);
    this.deps.emit({
      type: 'node-joined',
      node,
      pool: 'default',
      nodeClass: 'local',
      timeMs: this.deps.eventClock.now(),
    });
  }

  private machines(node: string, refusal: string): NodeMachines {
    this.deps.placement.node(node);
    const machines = this.deps.machines;
    if (machines === undefined)
      throw new ControllerError('NC_CONTROLLER_NO_MACHINES', refusal, {
        context: { node },
      });
    return machines;
  }

  /**
   * Cold-starts a caught task on the emptiest healthy node, and on the next one if that start fails (the target
   * may go too while the task comes up, in a burst of pre-emptions): every caught task is tried on every node
   * before it is given up, and each failed start is destroyed so no half-started copy lingers.
   */
  private async coldStartElsewhere(taskKey: string, task: PlacedTask, gone: string): Promise<PlacedTask | undefined> {
    const { placement } = this.deps;
    const tried = new Set([gone]);
    for (;;) {
      const target = pickTarget(
        (await placement.nodes()).filter((n) => !tried.has(n.name)),
        '',
      );
      if (target === undefined) {
        this.deps.log.error({ taskKey, node: gone, tried: [...tried] }, 'caught task lost: no node could start it');
        return undefined;
      }
      tried.add(target.name);
      const generation = placement.placed(taskKey).generation + 1;
      const kills = this.kills.get(target.name) ?? 0;
      try {
        const placed = await placement.startOn(
          target.name,
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
        placement.skipGeneration(taskKey, generation);
      }
    }
  }
}
