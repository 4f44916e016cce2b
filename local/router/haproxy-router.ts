import type { Instance, Router } from '../../common/router';
import { LocalClusterError } from '../cluster/errors';
import { SLOTS_PER_SERVICE, type Haproxy } from './haproxy';

/**
 * Local mode's router: each instance owns one server slot of its service's backend. Leaving rotation is
 * HAProxy's `maint`, which also closes its idle keep-alive connections to the instance — an open TCP
 * connection would otherwise fail the CRIU dump — and lets requests in flight finish on it before it freezes.
 * Leaving also holds the service: while no server is usable, a new request waits at HAProxy (at most
 * `HOLD_MS`) instead of getting a 503, and goes on as soon as an instance joins (the restored one after a
 * hand-over, the source after a rollback). Joining ends the hold.
 */
export class HaproxyRouter implements Router {
  private readonly slots = new Map<string, number>();

  constructor(
    private readonly haproxy: Haproxy,
    private readonly connectionsDrainedMs = 250,
  ) {}

  private key(instance: Pick<Instance, 'service' | 'id'>): string {
    return `${instance.service}/${instance.id}`;
  }

  private async slotFor(instance: Instance): Promise<number> {
    const known = this.slots.get(this.key(instance));
    if (known !== undefined) return known;
    const taken = new Set(
      [...this.slots.entries()].filter(([k]) => k.startsWith(`${instance.service}/`)).map(([, s]) => s),
    );
    for (const server of await this.haproxy.servers(instance.service)) {
      if (server.inRotation) taken.add(Number(server.name.slice(1)));
    }
    for (let slot = 1; slot <= SLOTS_PER_SERVICE; slot++) {
      if (!taken.has(slot)) {
        this.slots.set(this.key(instance), slot);
        return slot;
      }
    }
    throw new LocalClusterError(
      'NC_HAPROXY_RUNTIME',
      `no free server slot for ${instance.service} (${SLOTS_PER_SERVICE} in use)`,
      {
        context: { service: instance.service },
      },
    );
  }

  async joinRotation(instance: Instance): Promise<void> {
    await this.haproxy.setServer(instance.service, await this.slotFor(instance), instance.address, instance.port);
    await this.haproxy.release(instance.service);
  }

  async leaveRotation(instance: Instance): Promise<void> {
    const slot = this.slots.get(this.key(instance)) ?? (await this.findSlot(instance));
    if (slot === undefined) return;
    // Hold first: no request may see the service without a usable server and without the hold.
    await this.haproxy.hold(instance.service);
    await this.haproxy.drainServer(instance.service, slot);
    this.slots.delete(this.key(instance));
    // Requests in flight finish on the instance and idle connections close (gone 50 ms after maint, measured),
    // so nothing is lost when it freezes; bounded, as a request may take longer than a move can wait.
    const deadline = Date.now() + this.connectionsDrainedMs;
    while ((await this.haproxy.connections(instance.service, slot)) > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** After a controller restart the map is empty: find the instance's slot by its address. */
  private async findSlot(instance: Instance): Promise<number | undefined> {
    const servers = await this.haproxy.servers(instance.service);
    const match = servers.find((s) => s.inRotation && s.address === instance.address && s.port === instance.port);
    return match === undefined ? undefined : Number(match.name.slice(1));
  }

  async healthyInstances(service: string): Promise<Instance[]> {
    const servers = await this.haproxy.servers(service);
    return servers
      .filter((s) => s.inRotation)
      .map((s) => ({ service, id: s.name, address: s.address, port: s.port, node: s.address }));
  }
}
