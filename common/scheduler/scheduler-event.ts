/**
 * What a scheduler tells watchers about its nodes: joins and departures, drains starting and ending. The
 * forecaster learns from these (Nomad's event stream or the local controller's, which serves exactly this
 * shape as ndjson), so the type is the contract between the two and lives here.
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
