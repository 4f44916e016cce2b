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
 * freezes and puts the restored one in as soon as it serves. Consul in Nomad mode, HAProxy in local mode.
 */
export interface Router {
  leaveRotation(instance: Instance): Promise<void>;
  joinRotation(instance: Instance): Promise<void>;
  healthyInstances(service: string): Promise<Instance[]>;
}
