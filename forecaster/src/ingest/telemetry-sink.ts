import type { HistoryKind, TelemetryPoint } from '../windows/node-window';

/** A batch as the forecaster keeps it, decoded and validated from chain.v1.TelemetryBatch. */
export interface IngestBatch {
  readonly node: string;
  readonly pool: string;
  readonly nodeClass: string;
  readonly points: readonly TelemetryPoint[];
  /** Notices posted at the newest sample (replaces the node's active set). */
  readonly signals: readonly IngestSignal[];
  readonly events: readonly IngestEvent[];
}

export interface IngestSignal {
  readonly source: string;
  readonly kind: string;
  readonly deadlineMs: number;
  readonly detail: string;
}

export interface IngestEvent {
  readonly timeMs: number;
  readonly kind: HistoryKind;
  readonly detail: string;
}

/** Where ingested telemetry goes (the forecaster's windows). */
export interface TelemetrySink {
  ingest(batch: IngestBatch): void;
}
