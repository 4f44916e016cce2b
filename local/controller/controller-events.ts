import type { SchedulerEvent } from '../../common/scheduler/scheduler-event';

/**
 * What the local controller tells watchers (the forecaster in local mode): the scheduler events every
 * scheduler adapter speaks, served as ndjson at /v1/event/stream, resumable from an index like Nomad's.
 */
export type ControllerEvent = SchedulerEvent | TaskRestoredFromCheckpoint;

/**
 * A task whose node died during its move, before the hand-over reached the target, brought back from the
 * newest background checkpoint its buddy held: its state is `checkpointAgeMs` old. Local mode's own event
 * (watchers that do not know it, as the forecaster, skip it).
 */
export interface TaskRestoredFromCheckpoint {
  readonly type: 'task-restored-from-checkpoint';
  /** Where the task runs now. */
  readonly node: string;
  readonly taskKey: string;
  /** The node the task was lost on. */
  readonly lostOn: string;
  /** The node that held the checkpoint. */
  readonly buddy: string;
  readonly checkpointAgeMs: number;
  readonly timeMs: number;
  readonly detail: string;
}

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
