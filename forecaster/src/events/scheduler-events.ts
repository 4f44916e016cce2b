import type { SchedulerEvent } from '../../../common/scheduler/scheduler-event';

export type { SchedulerEvent };

/**
 * What the forecaster learns from the scheduler, whichever it is (Nomad's event stream or the local
 * controller): these feed the history features and tell the policy which nodes are already draining.
 */
export type SchedulerEventHandler = (event: SchedulerEvent) => void;

/** A source of scheduler events, by role. `follow` delivers events in order until `signal` aborts. */
export interface SchedulerEvents {
  follow(handler: SchedulerEventHandler, signal: AbortSignal): Promise<void>;
}
