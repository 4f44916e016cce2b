import { credentials, type ClientDuplexStream } from '@grpc/grpc-js';
import type { Logger } from '../../common/logging';
import { TelemetryClient, type TelemetryAck, type TelemetryBatch } from '../../proto/gen/chain/v1/telemetry';

/**
 * Tells the forecaster a trace node's interruption notice the way a node's telemetry agent would: a sample on
 * `chain.v1.Telemetry` carrying a `spot-interruption` signal with the pre-emption as its deadline.
 */
export class NoticeClient {
  private readonly client: TelemetryClient;
  private readonly stream: ClientDuplexStream<TelemetryBatch, TelemetryAck>;
  private seq = 0;
  sent = 0;

  constructor(address: string, log: Logger) {
    this.client = new TelemetryClient(address, credentials.createInsecure());
    this.stream = this.client.stream();
    this.stream.on('data', () => undefined);
    this.stream.on('error', (err: Error) => log.warn({ err }, 'notice stream to the forecaster failed'));
  }

  notice(node: string, timeMs: number, deadlineMs: number): void {
    this.seq += 1;
    this.sent += 1;
    this.stream.write({
      node,
      nodePool: 'default',
      nodeClass: 'local',
      samples: [
        {
          seq: this.seq,
          timeUnixMs: timeMs,
          cpuUtilisation: 0,
          memory: undefined,
          netRxBytesPerS: 0,
          netTxBytesPerS: 0,
          diskReadBytesPerS: 0,
          diskWriteBytesPerS: 0,
          signals: [
            {
              source: 'trace-replay',
              kind: 'spot-interruption',
              deadlineUnixMs: deadlineMs,
              observedUnixMs: timeMs,
              detail: 'interruption notice from the trace',
            },
          ],
          events: [],
          // A trace has no telemetry: the model was trained with these metrics missing, and must see them so.
          signalsOnly: true,
        },
      ],
    });
  }

  close(): void {
    this.stream.end();
    this.client.close();
  }
}
