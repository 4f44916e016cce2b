import net from 'node:net';
import { hostname } from 'node:os';
import type { Clock } from '../../common/clock';
import type { AgentService, ConsulAgent } from '../../common/consul';
import type { Logger } from '../../common/logging';

/** What the stand-in needs from the node's Consul agent. */
export type ConsulAgentApi = Pick<ConsulAgent, 'agentServices' | 'serviceCheckStatuses' | 'register' | 'deregister'>;

export interface ConsulHandoverOptions {
  /** How often Nomad's own check is read while the stand-in is listed. @default 100 */
  readonly pollMs?: number;
  /** The stand-in's life at most: then it goes whether Nomad's check passes or not (its TTL too). @default 30000 */
  readonly maxStandInMs?: number;
}

/** Answers whether something accepts a TCP connection at address:port. */
export type PortProbe = (address: string, port: number) => Promise<boolean>;

/** Nomad names the Consul services of an allocation `_nomad-task-<alloc id>-<task or group-…>-<name>-<port>`. */
export function nomadServicePrefix(allocId: string): string {
  return `_nomad-task-${allocId}-`;
}

/** The stand-in's ID: not under `_nomad-`, which Nomad's sync would deregister as one of its own. */
export function standInId(nomadServiceId: string): string {
  return `nomad-chain-restored-${nomadServiceId}`;
}

/**
 * After a restore, a Consul-routed client finds the moved instance only once Consul runs its check again:
 * Nomad registered the replacement before the restore, critical, and Consul checks it at a random moment
 * within the interval (1 s at the least), so up to an interval passes with the process already serving.
 * The plugin has seen the restore complete, so it lists the instance itself, under a stand-in ID with a
 * check that starts passing, once the restored port accepts a connection; it removes the stand-in as soon
 * as Nomad's own registration passes, or the port stops answering. The stand-in's check is a TTL that nothing
 * renews: if the plugin dies first, Consul drops it from ?passing after `maxStandInMs` and deregisters it a
 * minute later.
 */
export class ConsulHandover {
  private readonly pollMs: number;
  private readonly maxStandInMs: number;

  constructor(
    private readonly agent: ConsulAgentApi,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly portAnswers: PortProbe = tcpAnswers,
    options: ConsulHandoverOptions = {},
  ) {
    this.pollMs = options.pollMs ?? 100;
    this.maxStandInMs = options.maxStandInMs ?? 30_000;
  }

  /**
   * Lists the restored allocation's Consul services as passing until Nomad's checks pass. Never throws:
   * without it, Nomad's own check still lists the instance, only later.
   */
  async bridge(allocId: string, nodeName = hostname()): Promise<void> {
    const log = this.log.child({ allocId });
    try {
      const prefix = nomadServicePrefix(allocId);
      const services = (await this.agent.agentServices(`ID contains ${JSON.stringify(allocId)}`)).filter((s) =>
        s.id.startsWith(prefix),
      );
      await Promise.all(services.map((service) => this.bridgeOne(service, nodeName, log)));
    } catch (err) {
      log.warn({ err }, 'restored instance not listed in Consul ahead of its check');
    }
  }

  private async bridgeOne(service: AgentService, nodeName: string, log: Logger): Promise<void> {
    if (await this.passing(service.id)) {
      log.info({ serviceId: service.id }, 'restored instance already passing in Consul');
      return;
    }
    if (service.address === '' || !(await this.portAnswers(service.address, service.port))) {
      log.debug({ serviceId: service.id }, 'restored port not answering: left to its Consul check');
      return;
    }
    const standIn = {
      service: service.service,
      id: standInId(service.id),
      address: service.address,
      port: service.port,
      node: nodeName,
    };
    await this.agent.register(standIn, {
      check: { kind: 'ttl', ttlMs: this.maxStandInMs },
      initialStatus: 'passing',
      deregisterCriticalAfterMs: 60_000,
      tags: service.tags,
      meta: { 'nomad-chain-stand-in-for': service.id },
    });
    const listedAt = this.clock.now();
    try {
      // It goes early if the restored port stops answering: a stand-in must not outlive its process.
      while (
        this.clock.now() - listedAt < this.maxStandInMs &&
        !(await this.passing(service.id)) &&
        (await this.portAnswers(service.address, service.port))
      ) {
        await this.clock.sleep(this.pollMs);
      }
    } finally {
      await this.agent.deregister(standIn);
    }
    log.info(
      { serviceId: service.id, standInMs: this.clock.now() - listedAt },
      'restored instance listed ahead of its check',
    );
  }

  /** Consul lists a service as passing when every check of it passes (a service without checks too). */
  private async passing(serviceId: string): Promise<boolean> {
    return (await this.agent.serviceCheckStatuses(serviceId)).every((status) => status === 'passing');
  }
}

async function tcpAnswers(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port, timeout: 1000 });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
}
