/**
 * What the forecaster learns from the scheduler, whichever it is (Nomad's event stream or the local
 * controller): nodes joining and leaving, drains starting and ending. These feed the history features and tell
 * the policy which nodes are already draining.
 */
export type SchedulerEvent =
  | {
      readonly type: 'node-joined';
      readonly node: string;
      readonly pool: string;
      readonly nodeClass: string;
      readonly timeMs: number;
    }
  /** The node went away; `preempted` when the cloud took it (not an orderly leave). */
  | {
      readonly type: 'node-left';
      readonly node: string;
      readonly preempted: boolean;
      readonly timeMs: number;
      readonly detail: string;
    }
  | { readonly type: 'drain-started'; readonly node: string; readonly timeMs: number; readonly detail: string }
  | { readonly type: 'drain-complete'; readonly node: string; readonly timeMs: number }
  | { readonly type: 'drain-canceled'; readonly node: string; readonly timeMs: number };

export type SchedulerEventHandler = (event: SchedulerEvent) => void;

/** A source of scheduler events, by role. `follow` delivers events in order until `signal` aborts. */
export interface SchedulerEvents {
  follow(handler: SchedulerEventHandler, signal: AbortSignal): Promise<void>;
}
