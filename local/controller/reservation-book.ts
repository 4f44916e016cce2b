import type { Logger } from '../../common/logging';
import { pickTarget, type PlacementNode } from '../../common/scheduler/scheduler-adapter';
import { ControllerError } from './errors';
import type { PrestageItem, PrestageOutcome, ReservationPrestager } from './reservation-prestager';
import type { TaskPlacement } from './task-placement';

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

export interface ReservationBookDeps {
  readonly placement: TaskPlacement;
  readonly prestager: ReservationPrestager;
  readonly log: Logger;
}

/**
 * Room held on other nodes for a fenced node's tasks before its drain: counted against those nodes' capacity,
 * used to pre-stage each task's copy there, and taken by the drain's move of that task.
 */
export class ReservationBook {
  private readonly reservations = new Map<string, Reservation>();
  private nextReservation = 1;

  constructor(private readonly deps: ReservationBookDeps) {}

  /** Slots reservations hold on `node`. */
  reservedOn(node: string): number {
    return [...this.reservations.values()].reduce((n, r) => n + r.targets.filter((t) => t === node).length, 0);
  }

  held(): Reservation[] {
    return [...this.reservations.values()];
  }

  /** Holds room on healthy nodes for each chained task of `node`, counted against their capacity. */
  async reserve(node: string, reason: string): Promise<Reservation> {
    this.deps.placement.node(node);
    const tasks = this.deps.placement.tasksOn(node);
    const targets: string[] = [];
    const assignments: Record<string, string> = {};
    let nodes = await this.deps.placement.nodes();
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
    for (const taskKey of Object.keys(reservation.assignments)) void this.deps.prestager.discard(taskKey);
  }

  /**
   * Copies each chained task of a fenced node, still running, to the node its reservation holds room on.
   * Per-task failures are in the report, never thrown: the drain moves every task with or without its copy.
   */
  async prestage(node: string, reservationId: string): Promise<PrestageReport> {
    this.deps.placement.node(node);
    const reservation = this.reservations.get(reservationId);
    if (reservation === undefined || reservation.node !== node) {
      throw new ControllerError('NC_CONTROLLER_NO_RESERVATION', `no reservation ${reservationId} for ${node}`, {
        context: { node, reservation: reservationId },
      });
    }
    const nodes = await this.deps.placement.nodes();
    const tasks = this.deps.placement.tasks();
    const items: PrestageItem[] = [];
    for (const [taskKey, targetNode] of Object.entries(reservation.assignments)) {
      const task = tasks[taskKey];
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
    const staged = await this.deps.prestager.prestage(items);
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

  /**
   * The node a reservation holds room on for this task: where it was pre-staged, so its migration sends only
   * what changed since. Its slot is already counted against that node's capacity, so only health and
   * eligibility are checked; an unusable one falls back to ordinary placement.
   */
  targetFor(nodes: readonly PlacementNode[], taskKey: string, source: string): PlacementNode | undefined {
    const name = this.reservationFor(taskKey, source)?.assignments[taskKey];
    if (name === undefined) return undefined;
    const node = nodes.find((n) => n.name === name);
    if (node !== undefined && node.name !== source && node.healthy && node.eligible && !node.draining) return node;
    this.deps.log.warn({ taskKey, reserved: name }, 'reserved target unusable: placing the task elsewhere');
    return undefined;
  }

  /**
   * The task has moved: its reserved slot turned into the task itself, so it stops counting twice, and its
   * pre-staged copy is deleted.
   */
  async moved(taskKey: string, source: string, movedTo: string): Promise<void> {
    const reservation = this.reservationFor(taskKey, source);
    if (reservation !== undefined) {
      const slot = reservation.assignments[taskKey] ?? '';
      const assignments = Object.fromEntries(Object.entries(reservation.assignments).filter(([k]) => k !== taskKey));
      // The targets are the assignments' nodes, in the same order (reserve builds both in one loop).
      this.reservations.set(reservation.id, { ...reservation, targets: Object.values(assignments), assignments });
      if (slot !== movedTo)
        this.deps.log.info({ taskKey, reserved: slot, movedTo }, 'task moved off its reserved slot');
    }
    await this.deps.prestager.discard(taskKey);
  }

  private reservationFor(taskKey: string, source: string): Reservation | undefined {
    return [...this.reservations.values()].find((r) => r.node === source && r.assignments[taskKey] !== undefined);
  }
}
