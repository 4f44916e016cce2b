import { errorMessage } from '../../../common/errors';
import type { Logger } from '../../../common/logging';
import type { Decision } from '../policy/decision';
import type { Reservation, SchedulerActions } from './scheduler-actions';

export interface ActionOutcome {
  readonly decision: Decision;
  readonly ok: boolean;
  readonly error?: string;
}

export interface ActionListener {
  /** Fence, reserve and pre-stage all completed. */
  prepared(node: string): void;
  /** A fence or drain could not be completed; whatever was done has been undone. */
  failed(node: string, reason: string): void;
}

export interface ActionExecutorOptions {
  /**
   * A drain straight from healthy pre-stages (after reserving) only when its deadline is at least this far off:
   * the copy runs before the drain starts and holds each task while it dumps, so a short notice goes straight
   * to the drain. @default 60 s
   */
  readonly prestageBeforeDrainMinMs?: number;
  /**
   * The forecaster's clock ms per real ms (a trace replay's timeScale): a decision's deadline is on that clock,
   * while a pre-stage takes real time, so the two are compared in real ms. @default 1
   */
  readonly clockScale?: number;
}

/**
 * Carries decisions out through a SchedulerActions adapter. Actions on one node run strictly in order (a fence
 * and the undo that follows it never overlap); different nodes proceed in parallel.
 */
export class ActionExecutor {
  private readonly queues = new Map<string, Promise<void>>();
  private readonly reservations = new Map<string, Reservation>();
  private readonly counts = { fence: 0, drain: 0, undo: 0, failed: 0 };

  constructor(
    private readonly actions: SchedulerActions,
    private readonly listener: ActionListener,
    private readonly log: Logger,
    private readonly options: ActionExecutorOptions = {},
  ) {}

  submit(decision: Decision): Promise<ActionOutcome> {
    if (decision.action === 'hold') return Promise.resolve({ decision, ok: true });
    const previous = this.queues.get(decision.node) ?? Promise.resolve();
    const outcome = previous.then(() => this.run(decision));
    const settled = outcome.then(() => undefined);
    this.queues.set(decision.node, settled);
    void settled.then(() => {
      if (this.queues.get(decision.node) === settled) this.queues.delete(decision.node);
    });
    return outcome;
  }

  /** Resolves once every queued action has finished (for shutdown and tests). */
  async idle(): Promise<void> {
    while (this.queues.size > 0) await Promise.all([...this.queues.values()]);
  }

  reservationFor(node: string): Reservation | undefined {
    return this.reservations.get(node);
  }

  /** The drain finished: its reservation has served (or been preempted by the replacements) and goes. */
  async drainEnded(node: string): Promise<void> {
    const reservation = this.reservations.get(node);
    if (reservation === undefined) return;
    this.reservations.delete(node);
    await this.actions.release(reservation).catch((err: unknown) => {
      this.log.warn({ err, node, reservation: reservation.id }, 'releasing a reservation after a drain failed');
    });
  }

  stats(): Readonly<typeof this.counts> {
    return { ...this.counts };
  }

  private async run(decision: Decision): Promise<ActionOutcome> {
    const log = this.log.child({ node: decision.node, decision: decision.id, action: decision.action });
    const reason = `nomad-chain forecaster decision ${decision.id}: ${decision.reasons.join('; ')}`;
    try {
      if (decision.action === 'fence') await this.fence(decision.node, reason);
      else if (decision.action === 'drain') await this.drain(decision, reason);
      else await this.undo(decision.node, reason);
      this.counts[decision.action as 'fence' | 'drain' | 'undo'] += 1;
      log.info({ reasons: decision.reasons, risk: decision.risk }, 'decision carried out');
      return { decision, ok: true };
    } catch (err) {
      this.counts.failed += 1;
      log.error({ err }, 'decision could not be carried out');
      // A drain that never started is undone like a fence, so the policy decides again on the next tick (a
      // leaving node's notice retries at once) instead of waiting for a drain that will never end.
      if (decision.action === 'fence' || decision.action === 'drain') {
        await this.undo(decision.node, `${reason}; undone: ${errorMessage(err)}`).catch((undoErr: unknown) => {
          log.error({ err: undoErr }, `undoing a failed ${decision.action} failed too`);
        });
        this.listener.failed(decision.node, `${decision.action} could not be completed: ${errorMessage(err)}`);
      }
      return { decision, ok: false, error: errorMessage(err) };
    }
  }

  private async fence(node: string, reason: string): Promise<void> {
    await this.actions.fence(node, reason);
    const reservation = await this.actions.reserve(node, reason);
    this.reservations.set(node, reservation);
    await this.prestage(node, reservation);
    this.listener.prepared(node);
  }

  private async prestage(node: string, reservation: Reservation): Promise<void> {
    try {
      await this.actions.prestage(node, reservation);
    } catch (err) {
      // Pre-staging only shortens the drain's transfer; the drain's own checkpoint moves every task without it.
      this.log.warn(
        { err, node, reservation: reservation.id },
        'pre-stage failed: the drain will move the tasks anyway',
      );
    }
  }

  private async drain(decision: Decision, reason: string): Promise<void> {
    const { node } = decision;
    const deadlineMs = decision.deadlineMs ?? 0;
    // A drain straight from healthy (an interruption notice) still fences first, so nothing new lands meanwhile.
    await this.actions.fence(node, reason);
    // ...and reserves: Nomad moves a group's allocations a few at a time (migrate.max_parallel), so the later
    // replacements need room held from the start. A node that is leaving drains whether or not room was found.
    if (!this.reservations.has(node)) {
      let reservation: Reservation | undefined;
      try {
        reservation = await this.actions.reserve(node, reason);
        this.reservations.set(node, reservation);
      } catch (err) {
        this.log.warn({ err, node }, 'capacity not reserved: the drain goes ahead');
      }
      // A node fenced earlier was pre-staged then; one drained straight from healthy is, if the notice allows.
      const realDeadlineMs = deadlineMs / (this.options.clockScale ?? 1);
      if (reservation !== undefined && realDeadlineMs >= (this.options.prestageBeforeDrainMinMs ?? 60_000)) {
        await this.prestage(node, reservation);
      }
    }
    await this.actions.drain(node, { deadlineMs, reason, decisionId: decision.id });
  }

  private async undo(node: string, reason: string): Promise<void> {
    const reservation = this.reservations.get(node);
    if (reservation !== undefined) {
      await this.actions.release(reservation);
      this.reservations.delete(node);
    }
    await this.actions.unfence(node, reason);
  }
}
