/** One running copy of a service, as a router sees it. */
export interface Instance {
  readonly service: string;
  /** Stable per instance (Nomad's service ID, or the local controller's); survives nothing across a migration. */
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** Node the instance runs on (Consul node name, or the local-mode node). */
  readonly node: string;
}

/**
 * Sends traffic only to instances that can serve it. A migration takes the old instance out before it
 * freezes and puts the restored one in as soon as it serves: HAProxy in local mode. (In Nomad mode Nomad's
 * own Consul registration does this, helped by plugin/src/consul-handover.ts.)
 */
export interface Router {
  leaveRotation(instance: Instance): Promise<void>;
  joinRotation(instance: Instance): Promise<void>;
  healthyInstances(service: string): Promise<Instance[]>;
}
