import type { Clock } from '../../../common/clock';
import { errorCode } from '../../../common/errors';
import type { Logger } from '../../../common/logging';
import { NodeEventKind } from '../../../proto/gen/chain/v1/telemetry';
import type { InterruptionSignal, TelemetrySample } from '../../../proto/gen/chain/v1/telemetry';
import type { CpuCollector } from './cpu';
import type { DiskCollector } from './disk';
import type { NodeHistory } from './history';
import type { MemoryCollector } from './memory';
import type { NetworkCollector } from './network';
import type { InterruptionSource, Notice } from './signals/interruption-source';

/** Produces one telemetry sample (everything but the sequence number). */
export interface SampleSource {
  sample(): Promise<Omit<TelemetrySample, 'seq'>>;
}

export interface NodeSamplerParts {
  readonly cpu: CpuCollector;
  readonly memory: MemoryCollector;
  readonly network: NetworkCollector;
  readonly disk: DiskCollector;
  readonly sources: readonly InterruptionSource[];
  readonly history: NodeHistory;
}

/**
 * One sample from every collector and every interruption source. A source that cannot be asked keeps its last
 * answer (a notice does not vanish because the metadata service hiccuped); a notice seen for the first time
 * is recorded in the node's history.
 */
export class NodeSampler implements SampleSource {
  private readonly lastNotices = new Map<string, Notice[]>();

  constructor(
    private readonly parts: NodeSamplerParts,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  async sample(): Promise<Omit<TelemetrySample, 'seq'>> {
    const now = this.clock.now();
    const { cpu, memory, network, disk, sources, history } = this.parts;
    const [cpuUtilisation, mem, net, io] = await Promise.all([
      cpu.sample(),
      memory.sample(),
      network.sample(now),
      disk.sample(now),
    ]);
    const signals: InterruptionSignal[] = [];
    for (const source of sources) {
      let notices = this.lastNotices.get(source.name) ?? [];
      try {
        const fresh = await source.poll();
        for (const n of fresh) {
          if (!notices.some((o) => o.kind === n.kind && o.detail === n.detail)) {
            await history.record(NodeEventKind.NODE_EVENT_KIND_NOTICE, now, `${n.source} ${n.kind} ${n.detail}`.trim());
          }
        }
        notices = fresh;
        this.lastNotices.set(source.name, fresh);
      } catch (err) {
        this.log.warn(
          { err, code: errorCode(err), source: source.name },
          'interruption source unavailable; last answer kept',
        );
      }
      for (const n of notices) {
        signals.push({
          source: n.source,
          kind: n.kind,
          deadlineUnixMs: n.deadlineMs,
          observedUnixMs: now,
          detail: n.detail,
        });
      }
    }
    return {
      timeUnixMs: now,
      cpuUtilisation,
      memory: mem,
      netRxBytesPerS: net.rxBps,
      netTxBytesPerS: net.txBps,
      diskReadBytesPerS: io.readBps,
      diskWriteBytesPerS: io.writeBps,
      signals,
      events: history.takeNew(),
      signalsOnly: false,
    };
  }
}
