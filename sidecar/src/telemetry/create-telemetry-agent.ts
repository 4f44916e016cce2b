import type { Clock } from '../../../common/clock';
import type { Logger } from '../../../common/logging';
import { CpuCollector } from './cpu';
import { DiskCollector } from './disk';
import { NodeHistory } from './history';
import { MemoryCollector } from './memory';
import { NetworkCollector } from './network';
import { NodeSampler } from './node-sampler';
import { AwsImdsSource } from './signals/aws-imds';
import { AzureScheduledEventsSource } from './signals/azure-scheduled-events';
import { GcpMetadataSource } from './signals/gcp-metadata';
import type { InterruptionSource } from './signals/interruption-source';
import { TelemetryAgent } from './telemetry-agent';
import type { TelemetryConfig } from './telemetry-config';

export interface TelemetryParts {
  readonly agent: TelemetryAgent;
  /** The node's history: the migration code records drains here (NodeEventKind.NODE_EVENT_KIND_DRAIN_*). */
  readonly history: NodeHistory;
  readonly sources: readonly InterruptionSource[];
  /** Stops the agent and the sources' background watches. */
  stop(): Promise<void>;
}

/**
 * Builds the real telemetry agent from its config: /proc collectors, the configured interruption sources, the
 * persisted node history. The sidecar's main.ts calls this (the composition root), then `agent.start()`.
 */
export async function createTelemetryAgent(
  config: TelemetryConfig,
  node: string,
  clock: Clock,
  log: Logger,
): Promise<TelemetryParts> {
  const history = await NodeHistory.open(config.historyFile, 10_000, log);
  const sources: InterruptionSource[] = [];
  if (config.sources.aws !== undefined) sources.push(new AwsImdsSource(clock, config.sources.aws));
  if (config.sources.gcp !== undefined) sources.push(new GcpMetadataSource(clock, log, config.sources.gcp));
  if (config.sources.azure !== undefined) sources.push(new AzureScheduledEventsSource(config.sources.azure));
  const sampler = new NodeSampler(
    {
      cpu: new CpuCollector(config.procRoot),
      memory: new MemoryCollector(config.procRoot),
      network: new NetworkCollector(config.procRoot),
      disk: new DiskCollector(config.procRoot),
      sources,
      history,
    },
    clock,
    log,
  );
  const agent = new TelemetryAgent(
    {
      node,
      nodePool: config.nodePool,
      nodeClass: config.nodeClass,
      forecasterAddress: config.forecasterAddress,
      intervalMs: config.intervalMs,
      bufferSamples: config.bufferSamples,
      maxBatch: config.maxBatch,
      reconnectMinMs: config.reconnectMinMs,
      reconnectMaxMs: config.reconnectMaxMs,
    },
    sampler,
    clock,
    log,
  );
  return {
    agent,
    history,
    sources,
    stop: async () => {
      await agent.stop();
      for (const s of sources) s.close();
    },
  };
}
