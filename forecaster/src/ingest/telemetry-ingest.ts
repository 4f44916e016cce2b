import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from '../../../common/logging';
import { NodeEventKind } from '../../../proto/gen/chain/v1/telemetry';
import type {
  TelemetryAck,
  TelemetryBatch,
  TelemetrySample,
  TelemetryServer,
} from '../../../proto/gen/chain/v1/telemetry';
import type { HistoryKind, TelemetryPoint } from '../windows/node-window';
import { historyKindOfSignal } from '../windows/signal-kind';
import type { IngestEvent, IngestSignal, TelemetrySink } from './telemetry-sink';

const EVENT_KINDS: Partial<Record<NodeEventKind, HistoryKind>> = {
  [NodeEventKind.NODE_EVENT_KIND_PREEMPTED]: 'preempted',
  [NodeEventKind.NODE_EVENT_KIND_DRAIN_STARTED]: 'drain-started',
  [NodeEventKind.NODE_EVENT_KIND_DRAIN_COMPLETE]: 'drain-complete',
  [NodeEventKind.NODE_EVENT_KIND_DRAIN_CANCELED]: 'drain-canceled',
  [NodeEventKind.NODE_EVENT_KIND_NOTICE]: 'notice',
};

/**
 * The history kind of a node event. The sidecar records each fresh cloud signal as a NOTICE event whose detail is
 * "<source> <kind> <detail>" (sidecar/src/telemetry/node-sampler.ts): advice such as a rebalance recommendation
 * becomes an `advice` event, never a notice.
 */
function historyKind(kind: NodeEventKind, detail: string): HistoryKind | undefined {
  const mapped = EVENT_KINDS[kind];
  return mapped === 'notice' ? historyKindOfSignal(detail.split(' ')[1] ?? '') : mapped;
}

/** Counters for /metrics. */
export interface IngestStats {
  streams: number;
  batches: number;
  samples: number;
  rejected: number;
}

/**
 * grpc-js handlers for chain.v1.Telemetry: each batch is validated, handed to the sink, and acknowledged with
 * the highest sequence number stored. A malformed sample is counted as rejected and acknowledged too (resending
 * it would not help); a batch without a node name ends the stream with INVALID_ARGUMENT.
 */
export class TelemetryIngest {
  readonly stats: IngestStats = { streams: 0, batches: 0, samples: 0, rejected: 0 };
  private readonly calls = new Set<ServerDuplexStream<TelemetryBatch, TelemetryAck>>();

  constructor(
    private readonly sink: TelemetrySink,
    private readonly log: Logger,
  ) {}

  handlers(): TelemetryServer {
    return { stream: (call) => this.stream(call) };
  }

  /** Ends every open stream (shutdown); agents reconnect elsewhere or later. */
  closeAll(): void {
    for (const call of this.calls) call.end();
    this.calls.clear();
  }

  private stream(call: ServerDuplexStream<TelemetryBatch, TelemetryAck>): void {
    this.stats.streams += 1;
    this.calls.add(call);
    let node = '';
    call.on('data', (batch: TelemetryBatch) => {
      if (batch.node === '') {
        this.log.warn({ peer: call.getPeer() }, 'telemetry batch without a node name; stream closed');
        call.emit('error', { code: 3, details: 'TelemetryBatch.node is required' });
        return;
      }
      if (node === '') {
        node = batch.node;
        this.log.info({ node, peer: call.getPeer() }, 'telemetry stream opened');
      }
      this.stats.batches += 1;
      let acked = 0;
      let rejected = 0;
      const points: TelemetryPoint[] = [];
      let signals: IngestSignal[] | undefined;
      const events: IngestEvent[] = [];
      for (const sample of batch.samples) {
        acked = Math.max(acked, sample.seq);
        if (!sample.signalsOnly) {
          const point = toPoint(sample);
          if (point === undefined) {
            rejected += 1;
            continue;
          }
          points.push(point);
        } else if (sample.timeUnixMs <= 0) {
          rejected += 1;
          continue;
        }
        signals = sample.signals.map((s) => ({
          source: s.source,
          kind: s.kind,
          deadlineMs: s.deadlineUnixMs,
          detail: s.detail,
        }));
        for (const e of sample.events) {
          const kind = historyKind(e.kind, e.detail);
          if (kind !== undefined && e.timeUnixMs > 0) events.push({ timeMs: e.timeUnixMs, kind, detail: e.detail });
        }
      }
      this.stats.samples += points.length;
      this.stats.rejected += rejected;
      if (points.length > 0 || events.length > 0 || signals !== undefined) {
        this.sink.ingest({
          node: batch.node,
          pool: batch.nodePool,
          nodeClass: batch.nodeClass,
          points,
          signals: signals ?? [],
          events,
        });
      }
      call.write({ ackedSeq: acked, rejected });
    });
    const done = (): void => {
      this.calls.delete(call);
      if (node !== '') this.log.info({ node }, 'telemetry stream closed');
    };
    call.on('end', () => {
      done();
      call.end();
    });
    call.on('error', done);
    call.on('cancelled', done);
  }
}

const finite = (x: number): boolean => Number.isFinite(x);

function toPoint(s: TelemetrySample): TelemetryPoint | undefined {
  const memory = s.memory;
  const values = [
    s.timeUnixMs,
    s.cpuUtilisation,
    s.netRxBytesPerS,
    s.netTxBytesPerS,
    s.diskReadBytesPerS,
    s.diskWriteBytesPerS,
    memory?.someAvg10 ?? 0,
    memory?.fullAvg10 ?? 0,
    memory?.usedFraction ?? 0,
  ];
  if (s.timeUnixMs <= 0 || !values.every(finite) || s.cpuUtilisation < 0 || s.cpuUtilisation > 1.0001) return undefined;
  return {
    timeMs: s.timeUnixMs,
    cpu: s.cpuUtilisation,
    memSomeAvg10: memory?.someAvg10 ?? 0,
    memFullAvg10: memory?.fullAvg10 ?? 0,
    memUsed: memory?.usedFraction ?? 0,
    netRxBps: s.netRxBytesPerS,
    netTxBps: s.netTxBytesPerS,
    diskReadBps: s.diskReadBytesPerS,
    diskWriteBps: s.diskWriteBytesPerS,
  };
}
