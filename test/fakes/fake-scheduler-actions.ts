import type { DrainRequest, Reservation, SchedulerActions } from '../../forecaster/src/actions/scheduler-actions';

/** Records every call; `failOn` makes one action throw, `tasks` says how many chained tasks a node has. */
export class FakeSchedulerActions implements SchedulerActions {
  readonly calls: string[] = [];
  readonly eligible = new Map<string, boolean>();
  readonly reservations = new Map<string, Reservation>();
  readonly drains: { node: string; request: DrainRequest }[] = [];
  failOn: string | undefined;

  constructor(private readonly tasks: Readonly<Record<string, number>> = {}) {}

  async fence(node: string, _reason: string): Promise<void> {
    this.step('fence', node);
    this.eligible.set(node, false);
  }

  async reserve(node: string, _reason: string): Promise<Reservation> {
    this.step('reserve', node);
    const reservation = { id: `reserve-${node}`, node, targets: ['elsewhere'], tasks: this.tasks[node] ?? 1 };
    this.reservations.set(reservation.id, reservation);
    return reservation;
  }

  async prestage(node: string, _reservation: Reservation): Promise<void> {
    this.step('prestage', node);
  }

  async drain(node: string, request: DrainRequest): Promise<void> {
    this.step('drain', node);
    this.drains.push({ node, request });
  }

  async release(reservation: Reservation): Promise<void> {
    this.step('release', reservation.node);
    this.reservations.delete(reservation.id);
  }

  async unfence(node: string, _reason: string): Promise<void> {
    this.step('unfence', node);
    this.eligible.set(node, true);
  }

  private step(action: string, node: string): void {
    this.calls.push(`${action} ${node}`);
    if (this.failOn === action)
      throw Object.assign(new Error(`${action} refused`), { code: 'NC_SCHEDULER_ACTION_FAILED' });
  }
}
