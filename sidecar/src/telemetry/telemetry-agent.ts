import { credentials } from '@grpc/grpc-js';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { Clock } from '../../../common/clock';
import { errorCode } from '../../../common/errors';
import type { Logger } from '../../../common/logging';
import { TelemetryClient } from '../../../proto/gen/chain/v1/telemetry';
import type { TelemetryAck, TelemetryBatch, TelemetrySample } from '../../../proto/gen/chain/v1/telemetry';
import type { SampleSource } from './node-sampler';

export interface TelemetryAgentConfig {
  readonly node: string;
  readonly nodePool: string;
  readonly nodeClass: string;
  /** host:port of the forecaster's telemetry gRPC server. */
  readonly forecasterAddress: string;
  readonly intervalMs: number;
  /** Most samples held while the forecaster is away; the oldest go first. */
  readonly bufferSamples: number;
  /** Most samples per batch on the wire. */
  readonly maxBatch: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
}

export interface TelemetryAgentStats {
  sampled: number;
  sampleFailures: number;
  sent: number;
  acked: number;
  /** Samples dropped because the buffer was full (forecaster unreachable for long). */
  dropped: number;
  reconnects: number;
  connected: boolean;
  buffered: number;
}

/**
 * Streams this node's samples to the forecaster over chain.v1.Telemetry: samples go into a bounded buffer
 * (oldest dropped and counted when full), are sent in batches, and leave the buffer only when the forecaster
 * acknowledges them; after a reconnect (exponential backoff) everything unacknowledged is sent again.
 */
export class TelemetryAgent {
  readonly stats: TelemetryAgentStats = {
    sampled: 0,
    sampleFailures: 0,
    sent: 0,
    acked: 0,
    dropped: 0,
    reconnects: 0,
    connected: false,
    buffered: 0,
  };
  private readonly buffer: TelemetrySample[] = [];
  private seq = 0;
  /** Highest sequence number written on the current stream. */
  private sentSeq = 0;
  private call: ClientDuplexStream<TelemetryBatch, TelemetryAck> | undefined;
  private readonly client: TelemetryClient;
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[] = [];

  constructor(
    private readonly config: TelemetryAgentConfig,
    private readonly source: SampleSource,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    // grpc-js keeps its own reconnect backoff (up to 120 s) under ours and fails calls at once meanwhile: a
    // sidecar started before its forecaster connected minutes late (issue #11). Its backoff follows ours.
    this.client = new TelemetryClient(config.forecasterAddress, credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': config.reconnectMinMs,
      'grpc.max_reconnect_backoff_ms': config.reconnectMaxMs,
    });
  }

  start(): void {
    this.loops.push(this.sampleLoop(), this.connectionLoop());
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.call?.end();
    await Promise.allSettled(this.loops);
    this.client.close();
  }

  /** Adds a sample to the buffer and sends it if connected (the sampling loop's path; benches call it too). */
  enqueue(sample: Omit<TelemetrySample, 'seq'>): void {
    this.seq += 1;
    this.buffer.push({ ...sample, seq: this.seq });
    if (this.buffer.length > this.config.bufferSamples) {
      const dropped = this.buffer.splice(0, this.buffer.length - this.config.bufferSamples);
      this.stats.dropped += dropped.length;
    }
    this.stats.buffered = this.buffer.length;
    this.pump();
  }

  private async sampleLoop(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        this.enqueue(await this.source.sample());
        this.stats.sampled += 1;
      } catch (err) {
        this.stats.sampleFailures += 1;
        this.log.warn({ err, code: errorCode(err) }, 'telemetry sample failed');
      }
      await this.clock.sleep(this.config.intervalMs, signal).catch(() => undefined);
    }
  }

  private async connectionLoop(): Promise<void> {
    const signal = this.abort.signal;
    let attempt = 0;
    while (!signal.aborted) {
      const ended = this.connect();
      const fine = await ended;
      if (signal.aborted) return;
      attempt = fine ? 0 : attempt + 1;
      this.stats.reconnects += 1;
      const delay = Math.min(this.config.reconnectMaxMs, this.config.reconnectMinMs * 2 ** Math.max(0, attempt - 1));
      this.log.warn({ delayMs: delay, attempt }, 'telemetry stream lost; reconnecting');
      await this.clock.sleep(delay, signal).catch(() => undefined);
    }
  }

  /** Opens one stream and resolves when it ends: true if it had worked (acks arrived), false if not. */
  private connect(): Promise<boolean> {
    return new Promise((resolve) => {
      const call = this.client.stream();
      this.call = call;
      // Everything not acknowledged goes again on the new stream.
      this.sentSeq = 0;
      let acked = false;
      call.on('data', (ack: TelemetryAck) => {
        acked = true;
        if (!this.stats.connected)
          this.log.info({ address: this.config.forecasterAddress }, 'telemetry stream connected');
        this.stats.connected = true;
        this.onAck(ack);
      });
      const finish = (err?: unknown): void => {
        if (this.call !== call) return;
        this.call = undefined;
        this.stats.connected = false;
        if (err !== undefined && !this.abort.signal.aborted) this.log.warn({ err }, 'telemetry stream failed');
        resolve(acked);
      };
      call.on('error', finish);
      call.on('end', () => finish());
      call.on('close', () => finish());
      this.pump();
    });
  }

  private onAck(ack: TelemetryAck): void {
    let n = 0;
    while (n < this.buffer.length && (this.buffer[n] as TelemetrySample).seq <= ack.ackedSeq) n += 1;
    if (n > 0) this.buffer.splice(0, n);
    this.stats.acked += n;
    this.stats.buffered = this.buffer.length;
    this.pump();
  }

  /** Writes unsent samples in batches while the stream accepts them. */
  private pump(): void {
    const call = this.call;
    if (call === undefined) return;
    for (;;) {
      const start = this.buffer.findIndex((s) => s.seq > this.sentSeq);
      if (start < 0) return;
      const samples = this.buffer.slice(start, start + this.config.maxBatch);
      const last = samples[samples.length - 1] as TelemetrySample;
      this.sentSeq = last.seq;
      this.stats.sent += samples.length;
      const more = call.write({
        node: this.config.node,
        nodePool: this.config.nodePool,
        nodeClass: this.config.nodeClass,
        samples,
      });
      if (!more) {
        call.once('drain', () => this.pump());
        return;
      }
    }
  }
}
