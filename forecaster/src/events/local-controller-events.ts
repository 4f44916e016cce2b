import type { Clock } from '../../../common/clock';
import { errorMessage } from '../../../common/errors';
import type { Logger } from '../../../common/logging';
import type { SchedulerEvent, SchedulerEventHandler, SchedulerEvents } from './scheduler-events';

export interface LocalControllerEventsOptions {
  /** The local controller's HTTP API, e.g. "http://127.0.0.1:4647". */
  readonly address: string;
  /** First reconnect delay, doubled per failure. @default 250 */
  readonly backoffMinMs?: number;
  /** @default 5000 */
  readonly backoffMaxMs?: number;
  /** Silence after which the stream is presumed dead (the controller sends `{}` every 10 s). @default 30000 */
  readonly idleTimeoutMs?: number;
}

const TYPES = new Set(['node-joined', 'node-left', 'drain-started', 'drain-complete', 'drain-canceled']);

/**
 * SchedulerEvents from local mode's controller: `GET /v1/event/stream?index=N`, ndjson `{"Index":N,"Event":{…}}`
 * frames and `{}` heartbeats, shaped like Nomad's stream. Reconnects with backoff and resumes after the last
 * index delivered, so no event is seen twice.
 */
export class LocalControllerEvents implements SchedulerEvents {
  private lastIndex = 0;

  constructor(
    private readonly options: LocalControllerEventsOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  get index(): number {
    return this.lastIndex;
  }

  async follow(handler: SchedulerEventHandler, signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      try {
        await this.stream(handler, signal, () => {
          attempt = 0;
        });
      } catch (err) {
        if (signal.aborted) return;
        attempt += 1;
        const delayMs = Math.min(
          this.options.backoffMaxMs ?? 5000,
          (this.options.backoffMinMs ?? 250) * 2 ** (attempt - 1),
        );
        this.log.warn({ err: errorMessage(err), attempt, delayMs }, 'controller event stream lost; reconnecting');
        await this.clock.sleep(delayMs, signal).catch(() => undefined);
      }
    }
  }

  private async stream(handler: SchedulerEventHandler, signal: AbortSignal, healthy: () => void): Promise<void> {
    const idle = new AbortController();
    let timer = setTimeout(() => idle.abort(), this.options.idleTimeoutMs ?? 30_000);
    const rearm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), this.options.idleTimeoutMs ?? 30_000);
    };
    try {
      const url = `${this.options.address.replace(/\/$/, '')}/v1/event/stream?index=${this.lastIndex}`;
      const res = await fetch(url, { signal: AbortSignal.any([signal, idle.signal]) });
      if (res.status !== 200 || res.body === null) throw new Error(`event stream answered ${res.status}`);
      const decoder = new TextDecoder();
      let pending = '';
      // Node's fetch body is async-iterable; the DOM-less lib types do not say so.
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        rearm();
        healthy();
        pending += decoder.decode(chunk, { stream: true });
        let newline = pending.indexOf('\n');
        while (newline >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          newline = pending.indexOf('\n');
          if (line !== '') this.deliver(line, handler);
        }
      }
      throw new Error('event stream ended');
    } finally {
      clearTimeout(timer);
    }
  }

  private deliver(line: string, handler: SchedulerEventHandler): void {
    const frame = JSON.parse(line) as { Index?: unknown; Event?: { type?: unknown } };
    if (typeof frame.Index !== 'number' || frame.Index <= this.lastIndex) return;
    this.lastIndex = frame.Index;
    if (frame.Event === undefined || !TYPES.has(String(frame.Event.type))) {
      this.log.warn({ index: frame.Index }, 'controller event of an unknown type skipped');
      return;
    }
    handler(frame.Event as SchedulerEvent);
  }
}
