import { errorMessage } from '../../../common/errors';
import { SchedulerActionError } from '../errors';
import type { DrainRequest, Reservation, SchedulerActions } from './scheduler-actions';

export interface LocalControllerActionsOptions {
  /** The local controller's HTTP API, e.g. "http://127.0.0.1:4647". */
  readonly address: string;
  /** @default 10000 for quick calls; a drain waits for its deadline plus this. */
  readonly timeoutMs?: number;
  /** How long a pre-stage (a running dump and transfer per chained task) may take. @default 300000 */
  readonly prestageTimeoutMs?: number;
}

interface PrestageAnswer {
  readonly staged?: readonly { readonly taskKey: string; readonly outcome: string; readonly error?: string }[];
}

/**
 * SchedulerActions over local mode's controller API (shaped after Nomad's): eligibility, reservations held
 * against node capacity, pre-staging (each chained task copied, still running, to its reserved node) and drains
 * that move each chained task through the migration sequence to that node, sending only what changed since.
 */
export class LocalControllerActions implements SchedulerActions {
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly prestageTimeoutMs: number;

  constructor(options: LocalControllerActionsOptions) {
    this.base = options.address.replace(/\/$/, '');
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.prestageTimeoutMs = options.prestageTimeoutMs ?? 300_000;
  }

  async fence(node: string, reason: string): Promise<void> {
    await this.call('fence', node, 'POST', `/v1/node/${encodeURIComponent(node)}/eligibility`, {
      Eligibility: 'ineligible',
      reason,
    });
  }

  async unfence(node: string, reason: string): Promise<void> {
    await this.call('unfence', node, 'POST', `/v1/node/${encodeURIComponent(node)}/eligibility`, {
      Eligibility: 'eligible',
      reason,
    });
  }

  async reserve(node: string, reason: string): Promise<Reservation> {
    const r = (await this.call('reserve', node, 'POST', `/v1/node/${encodeURIComponent(node)}/reserve`, {
      reason,
    })) as Partial<Reservation>;
    if (typeof r.id !== 'string' || !Array.isArray(r.targets) || typeof r.tasks !== 'number') {
      throw new SchedulerActionError(`reserve on ${node}: the controller answered no reservation`, {
        context: { node },
      });
    }
    if (r.targets.length < r.tasks) {
      // Room for only some tasks is no reservation: give it back and say so (the policy undoes the fence).
      await this.release({ id: r.id, node, targets: r.targets, tasks: r.tasks });
      throw new SchedulerActionError(
        `no room for ${r.tasks - r.targets.length} of ${r.tasks} chained tasks of ${node}`,
        {
          context: { node },
        },
      );
    }
    return { id: r.id, node, targets: r.targets, tasks: r.tasks };
  }

  /** Fails (SchedulerActionError) when any task could not be copied; the drain moves it all the same. */
  async prestage(node: string, reservation: Reservation): Promise<void> {
    if (reservation.id === '' || reservation.tasks === 0) return;
    const answer = (await this.call(
      'prestage',
      node,
      'POST',
      `/v1/node/${encodeURIComponent(node)}/prestage`,
      { reservation: reservation.id },
      this.prestageTimeoutMs,
    )) as PrestageAnswer | undefined;
    const failed = (answer?.staged ?? []).filter((o) => o.outcome !== 'staged');
    if (failed.length > 0) {
      throw new SchedulerActionError(
        `prestage on ${node}: ${failed.length} task(s) not copied: ${failed.map((o) => `${o.taskKey}: ${o.error ?? o.outcome}`).join('; ')}`,
        { context: { node, action: 'prestage', failed: failed.length } },
      );
    }
  }

  async drain(node: string, request: DrainRequest): Promise<void> {
    await this.call(
      'drain',
      node,
      'POST',
      `/v1/node/${encodeURIComponent(node)}/drain`,
      { reason: request.reason, deadlineMs: request.deadlineMs },
      request.deadlineMs + this.timeoutMs,
    );
  }

  async release(reservation: Reservation): Promise<void> {
    if (reservation.id === '') return;
    await this.call('release', reservation.node, 'DELETE', `/v1/reservation/${encodeURIComponent(reservation.id)}`);
  }

  private async call(
    action: string,
    node: string,
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.timeoutMs,
  ): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (cause) {
      throw new SchedulerActionError(`${action} on ${node}: controller unreachable: ${errorMessage(cause)}`, {
        cause,
        context: { node, action },
        recoverable: true,
      });
    }
    const text = await res.text();
    if (res.status !== 200) {
      throw new SchedulerActionError(`${action} on ${node}: controller answered ${res.status}: ${text.slice(0, 300)}`, {
        context: { node, action, status: res.status },
      });
    }
    return text === '' ? undefined : (JSON.parse(text) as unknown);
  }
}
