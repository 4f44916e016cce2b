import { Server } from '@grpc/grpc-js';
import pino from 'pino';
import { SystemClock } from '../../../../common/clock';
import { bindServer, shutdownServer } from '../../../../common/grpc/server';
import { TelemetryIngest } from '../../../../forecaster/src/ingest/telemetry-ingest';
import type { IngestBatch } from '../../../../forecaster/src/ingest/telemetry-sink';
import { TelemetryService } from '../../../../proto/gen/chain/v1/telemetry';
import type { TelemetrySample } from '../../../../proto/gen/chain/v1/telemetry';
import { CpuCollector } from '../../../../sidecar/src/telemetry/cpu';
import { DiskCollector } from '../../../../sidecar/src/telemetry/disk';
import { NodeHistory, NodeEventKind } from '../../../../sidecar/src/telemetry/history';
import { MemoryCollector } from '../../../../sidecar/src/telemetry/memory';
import { NetworkCollector } from '../../../../sidecar/src/telemetry/network';
import { NodeSampler } from '../../../../sidecar/src/telemetry/node-sampler';
import type { SampleSource } from '../../../../sidecar/src/telemetry/node-sampler';
import { TelemetryAgent } from '../../../../sidecar/src/telemetry/telemetry-agent';

// The agent against the forecaster's real ingest server (grpc-js on 127.0.0.1), including a forecaster outage.
const log = pino({ level: 'silent' });

class Forecaster {
  readonly batches: IngestBatch[] = [];
  private server: Server | undefined;
  port = 0;

  async start(port = 0): Promise<void> {
    const ingest = new TelemetryIngest({ ingest: (b) => this.batches.push(b) }, log);
    const server = new Server();
    server.addService(TelemetryService, ingest.handlers());
    this.port = await bindServer(server, `127.0.0.1:${port}`);
    this.server = server;
  }

  async stop(): Promise<void> {
    if (this.server !== undefined) {
      this.server.forceShutdown();
      await shutdownServer(this.server, 100);
    }
    this.server = undefined;
  }

  times(): number[] {
    return this.batches.flatMap((b) => b.points.map((p) => p.timeMs));
  }
}

/** Samples with strictly increasing times (1, 2, 3 … seconds), so the receiver can tell which arrived. */
class CountingSource implements SampleSource {
  n = 0;
  async sample(): Promise<Omit<TelemetrySample, 'seq'>> {
    this.n += 1;
    return {
      timeUnixMs: this.n * 1000,
      cpuUtilisation: 0.5,
      memory: { source: 2, someAvg10: 0, fullAvg10: 0, usedFraction: 0.3 },
      netRxBytesPerS: 1,
      netTxBytesPerS: 1,
      diskReadBytesPerS: 0,
      diskWriteBytesPerS: 0,
      signals: [],
      events: [],
      signalsOnly: false,
    };
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const config = (port: number, bufferSamples: number) => ({
  node: 'c2-node-1',
  nodePool: 'spot',
  nodeClass: 'gpu',
  forecasterAddress: `127.0.0.1:${port}`,
  intervalMs: 20,
  bufferSamples,
  maxBatch: 16,
  reconnectMinMs: 50,
  reconnectMaxMs: 200,
});

describe('TelemetryAgent', () => {
  it('streams samples, keeps only unacknowledged ones, and after an outage resends what is left of a bounded buffer', async () => {
    const forecaster = new Forecaster();
    await forecaster.start();
    const source = new CountingSource();
    const agent = new TelemetryAgent(config(forecaster.port, 40), source, new SystemClock(), log);
    agent.start();
    try {
      await waitFor(() => forecaster.times().length >= 10);
      await waitFor(() => agent.stats.buffered <= 1);
      expect(forecaster.batches[0]).toMatchObject({ node: 'c2-node-1', pool: 'spot', nodeClass: 'gpu' });

      // The forecaster goes away for longer than the buffer lasts: the oldest samples are dropped and counted.
      await forecaster.stop();
      const sampledAtOutage = source.n;
      await waitFor(() => source.n >= sampledAtOutage + 80);
      expect(agent.stats.connected).toBe(false);
      expect(agent.stats.buffered).toBe(40);
      expect(agent.stats.dropped).toBeGreaterThanOrEqual(40);

      // Back on the same address: the agent reconnects by itself and delivers the buffered samples in order.
      const delivered = forecaster.times().length;
      await forecaster.start(forecaster.port);
      await waitFor(() => agent.stats.connected && agent.stats.buffered <= 1);
      const after = forecaster.times().slice(delivered);
      expect(after.length).toBeGreaterThanOrEqual(40);
      const unique = [...new Set(after)];
      expect(unique).toEqual([...unique].sort((a, b) => a - b));
      // The first resent sample is the oldest that survived the drops: nothing before it in the outage came.
      expect(after[0]).toBeGreaterThan(sampledAtOutage * 1000);
      expect(agent.stats.reconnects).toBeGreaterThanOrEqual(1);
    } finally {
      await agent.stop();
      await forecaster.stop();
    }
  });

  it('samples the real /proc through NodeSampler and ships history events once', async () => {
    const forecaster = new Forecaster();
    await forecaster.start();
    const history = await NodeHistory.open(undefined, 100, log);
    const clock = new SystemClock();
    const sampler = new NodeSampler(
      {
        cpu: new CpuCollector(),
        memory: new MemoryCollector(),
        network: new NetworkCollector(),
        disk: new DiskCollector(),
        sources: [],
        history,
      },
      clock,
      log,
    );
    await history.record(NodeEventKind.NODE_EVENT_KIND_DRAIN_STARTED, clock.now(), 'operator drain');
    const agent = new TelemetryAgent(config(forecaster.port, 100), sampler, clock, log);
    agent.start();
    try {
      await waitFor(() => forecaster.times().length >= 5);
      const points = forecaster.batches.flatMap((b) => b.points);
      expect(points.every((p) => p.cpu >= 0 && p.cpu <= 1 && p.memUsed > 0 && p.memUsed < 1)).toBe(true);
      const events = forecaster.batches.flatMap((b) => b.events);
      expect(events).toEqual([
        { timeMs: expect.any(Number) as number, kind: 'drain-started', detail: 'operator drain' },
      ]);
    } finally {
      await agent.stop();
      await forecaster.stop();
    }
  });
});
