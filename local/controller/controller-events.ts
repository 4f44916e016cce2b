import type { SchedulerEvent } from '../../common/scheduler/scheduler-event';

/**
 * What the local controller tells watchers (the forecaster in local mode): the scheduler events every
 * scheduler adapter speaks, served as ndjson at /v1/event/stream, resumable from an index like Nomad's.
 */
export type ControllerEvent = SchedulerEvent;

export interface IndexedEvent {
  readonly index: number;
  readonly event: ControllerEvent;
}

/** A bounded, indexed log of controller events with live subscribers. */
export class ControllerEventLog {
  private readonly events: IndexedEvent[] = [];
  private readonly subscribers = new Set<(event: IndexedEvent) => void>();
  private lastIndex = 0;

  constructor(private readonly capacity = 10_000) {}

  append(event: ControllerEvent): IndexedEvent {
    const indexed = { index: ++this.lastIndex, event };
    this.events.push(indexed);
    if (this.events.length > this.capacity) this.events.shift();
    for (const subscriber of this.subscribers) subscriber(indexed);
    return indexed;
  }

  /** Events after `index`; if those were evicted, from the oldest kept (as Nomad's stream does). */
  since(index: number): IndexedEvent[] {
    return this.events.filter((e) => e.index > index);
  }

  subscribe(subscriber: (event: IndexedEvent) => void): () => void {
    this.subscribers.add(subscriber);
    return () => this.subscribers.delete(subscriber);
  }
}
