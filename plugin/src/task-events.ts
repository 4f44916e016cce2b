import type { DriverTaskEvent } from '../../proto/gen/nomad/plugins/drivers/proto/driver';
import { timestampFromMs } from './timestamps';

export interface TaskEventInput {
  readonly taskId: string;
  readonly allocId: string;
  readonly taskName: string;
  readonly message: string;
  readonly annotations?: Readonly<Record<string, string>>;
}

type Listener = (event: DriverTaskEvent) => void;

/** Fans driver task events out to every open TaskEvents stream (Nomad holds one per plugin instance). */
export class TaskEventBus {
  private readonly listeners = new Set<Listener>();

  constructor(private readonly now: () => number) {}

  emit(input: TaskEventInput): void {
    const event: DriverTaskEvent = {
      taskId: input.taskId,
      allocId: input.allocId,
      taskName: input.taskName,
      timestamp: timestampFromMs(this.now()),
      message: input.message,
      annotations: { ...(input.annotations ?? {}) },
    };
    for (const listener of this.listeners) listener(event);
  }

  /** Events emitted from now until `signal` aborts, in order. */
  async *subscribe(signal: AbortSignal): AsyncGenerator<DriverTaskEvent> {
    const queue: DriverTaskEvent[] = [];
    let wake: (() => void) | undefined;
    const listener: Listener = (event) => {
      queue.push(event);
      wake?.();
    };
    const onAbort = (): void => wake?.();
    this.listeners.add(listener);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      while (!signal.aborted) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.listeners.delete(listener);
      signal.removeEventListener('abort', onAbort);
    }
  }
}
