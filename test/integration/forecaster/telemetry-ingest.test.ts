import { Server, credentials, status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import pino from 'pino';
import { bindServer, shutdownServer } from '../../../common/grpc/server';
import { TelemetryIngest } from '../../../forecaster/src/ingest/telemetry-ingest';
import type { IngestBatch } from '../../../forecaster/src/ingest/telemetry-sink';
import { NodeEventKind, TelemetryClient, TelemetryService } from '../../../proto/gen/chain/v1/telemetry';
import type { TelemetryAck, TelemetrySample } from '../../../proto/gen/chain/v1/telemetry';

const sample = (seq: number, extra: Partial<TelemetrySample> = {}): TelemetrySample => ({
  seq,
  timeUnixMs: 1_764_000_000_000 + seq * 1000,
  cpuUtilisation: 0.5,
  memory: { source: 1, someAvg10: 2, fullAvg10: 1, usedFraction: 0.5 },
  netRxBytesPerS: 1,
  netTxBytesPerS: 2,
  diskReadBytesPerS: 3,
  diskWriteBytesPerS: 4,
  signals: [],
  events: [],
  signalsOnly: false,
  ...extra,
});

describe('TelemetryIngest over real gRPC', () => {
  const batches: IngestBatch[] = [];
  const ingest = new TelemetryIngest({ ingest: (b) => batches.push(b) }, pino({ level: 'silent' }));
  const server = new Server();
  let client: InstanceType<typeof TelemetryClient>;

  beforeAll(async () => {
    server.addService(TelemetryService, ingest.handlers());
    const port = await bindServer(server, '127.0.0.1:0');
    client = new TelemetryClient(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await shutdownServer(server, 1000);
  });

  it('stores valid samples, counts malformed ones as rejected, and acknowledges the highest sequence number', async () => {
    const call = client.stream();
    const ack = new Promise<TelemetryAck>((resolve) => call.once('data', resolve));
    call.write({
      node: 'n1',
      nodePool: 'spot',
      nodeClass: 'gpu',
      samples: [
        sample(1, {
          signals: [
            {
              source: 'aws-imds',
              kind: 'spot-interruption',
              deadlineUnixMs: 5,
              observedUnixMs: 1,
              detail: 'terminate',
            },
          ],
        }),
        sample(2, { cpuUtilisation: 7 }),
        sample(3, { netRxBytesPerS: Number.NaN }),
        sample(4, {
          events: [{ kind: NodeEventKind.NODE_EVENT_KIND_DRAIN_STARTED, timeUnixMs: 99, detail: 'operator' }],
        }),
      ],
    });
    expect(await ack).toEqual({ ackedSeq: 4, rejected: 2 });
    call.end();
    expect(batches).toHaveLength(1);
    expect(batches[0]?.points.map((p) => p.timeMs)).toEqual([1_764_000_001_000, 1_764_000_004_000]);
    expect(batches[0]?.events).toEqual([{ timeMs: 99, kind: 'drain-started', detail: 'operator' }]);
    // The notices are those of the newest valid sample.
    expect(batches[0]?.signals).toEqual([]);
    expect(ingest.stats).toMatchObject({ batches: 1, samples: 2, rejected: 2 });
  });

  it('takes a signals-only sample for its notice and stores no metrics from it', async () => {
    batches.length = 0;
    const before = ingest.stats.samples;
    const call = client.stream();
    const ack = new Promise<TelemetryAck>((resolve) => call.once('data', resolve));
    const notice = {
      source: 'trace-replay',
      kind: 'spot-interruption',
      deadlineUnixMs: 9,
      observedUnixMs: 1,
      detail: '',
    };
    call.write({
      node: 'n2',
      nodePool: 'spot',
      nodeClass: '',
      samples: [sample(10, { signalsOnly: true, cpuUtilisation: 0, signals: [notice] })],
    });
    expect(await ack).toEqual({ ackedSeq: 10, rejected: 0 });
    call.end();
    expect(batches).toHaveLength(1);
    expect(batches[0]?.points).toEqual([]);
    expect(batches[0]?.signals).toEqual([
      { source: 'trace-replay', kind: 'spot-interruption', deadlineMs: 9, detail: '' },
    ]);
    expect(ingest.stats.samples).toBe(before);
  });

  it('ends a stream whose batch names no node with INVALID_ARGUMENT', async () => {
    const call = client.stream();
    const failed = new Promise<ServiceError>((resolve) => call.once('error', resolve));
    call.write({ node: '', nodePool: '', nodeClass: '', samples: [sample(1)] });
    expect((await failed).code).toBe(status.INVALID_ARGUMENT);
  });
});
