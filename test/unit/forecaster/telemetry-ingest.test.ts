import { EventEmitter } from 'node:events';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import pino from 'pino';
import { TelemetryIngest } from '../../../forecaster/src/ingest/telemetry-ingest';
import type { IngestBatch } from '../../../forecaster/src/ingest/telemetry-sink';
import { NodeEventKind } from '../../../proto/gen/chain/v1/telemetry';
import type { TelemetryAck, TelemetryBatch, TelemetrySample } from '../../../proto/gen/chain/v1/telemetry';

/** The part of a grpc-js duplex stream the ingest uses (the real stream is tested in test/integration). */
class FakeCall extends EventEmitter {
  readonly written: TelemetryAck[] = [];
  write(ack: TelemetryAck): boolean {
    this.written.push(ack);
    return true;
  }
  getPeer(): string {
    return 'fake';
  }
  end(): void {}
}

const sample = (seq: number, extra: Partial<TelemetrySample>): TelemetrySample => ({
  seq,
  timeUnixMs: 1_764_000_000_000 + seq * 1000,
  cpuUtilisation: 0.5,
  memory: { source: 1, someAvg10: 0, fullAvg10: 0, usedFraction: 0.5 },
  netRxBytesPerS: 0,
  netTxBytesPerS: 0,
  diskReadBytesPerS: 0,
  diskWriteBytesPerS: 0,
  signals: [],
  events: [],
  signalsOnly: false,
  ...extra,
});

describe("TelemetryIngest: the sidecar's notice events", () => {
  it("maps a fresh signal's NOTICE event to advice or to a notice by the kind its detail names", () => {
    const batches: IngestBatch[] = [];
    const ingest = new TelemetryIngest({ ingest: (b) => batches.push(b) }, pino({ level: 'silent' }));
    const call = new FakeCall();
    ingest.handlers().stream(call as unknown as ServerDuplexStream<TelemetryBatch, TelemetryAck>);
    const notice = (timeUnixMs: number, detail: string) => ({
      kind: NodeEventKind.NODE_EVENT_KIND_NOTICE,
      timeUnixMs,
      detail,
    });
    // The sidecar's detail: "<source> <kind> <detail>" (sidecar/src/telemetry/node-sampler.ts).
    call.emit('data', {
      node: 'n1',
      nodePool: 'spot',
      nodeClass: '',
      samples: [
        sample(1, {
          events: [
            notice(1, 'aws-imds rebalance-recommendation'),
            notice(2, 'gcp-metadata maintenance-migrate MIGRATE_ON_HOST_MAINTENANCE'),
            notice(3, 'aws-imds spot-interruption terminate'),
            notice(4, 'gcp-metadata maintenance-terminate TERMINATE_ON_HOST_MAINTENANCE'),
            notice(5, ''),
          ],
        }),
      ],
    });
    expect(batches[0]?.events.map((e) => e.kind)).toEqual(['advice', 'advice', 'notice', 'notice', 'notice']);
    expect(call.written).toEqual([{ ackedSeq: 1, rejected: 0 }]);
  });
});
