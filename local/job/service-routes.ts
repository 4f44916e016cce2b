import type { Instance, Router } from '../../common/router';
import { JobFileError } from './errors';

/**
 * HAProxy 2.6 cannot add a frontend at run time, so local mode starts with spare ones and a job run later
 * takes one for its service: the controller and its migrations keep the service's own name, and this router
 * hands HAProxy the spare's.
 */
export class ServiceRoutes implements Router {
  private readonly frontends = new Map<string, string>();

  constructor(
    private readonly router: Router,
    /** The frontends HAProxy has; a name among them routes as itself. */
    private readonly known: readonly string[],
    private readonly spares: readonly string[],
    /** Ends the hold leaving rotation put on a frontend: a stopped service answers 503 at once, not after a wait. */
    private readonly release: (frontend: string) => Promise<void>,
  ) {}

  /** The frontend that routes `service`, taking a free spare for a name HAProxy does not know. */
  claim(service: string): string {
    const frontend = this.frontendOf(service);
    if (frontend !== undefined) return frontend;
    const taken = new Set(this.frontends.values());
    const spare = this.spares.find((s) => !taken.has(s));
    if (spare === undefined)
      throw new JobFileError(
        'NC_JOB_ALREADY_RUNNING',
        `no free route for service "${service}": all ${this.spares.length} spare HAProxy frontends are taken (stop a job first)`,
        { context: { service } },
      );
    this.frontends.set(service, spare);
    return spare;
  }

  /** A stopped service: its frontend stops holding requests, and a spare is free for the next job. */
  async retire(service: string): Promise<void> {
    const frontend = this.frontendOf(service);
    if (frontend !== undefined) await this.release(frontend);
    this.frontends.delete(service);
  }

  frontendOf(service: string): string | undefined {
    return this.frontends.get(service) ?? (this.known.includes(service) ? service : undefined);
  }

  private routed(instance: Instance): Instance {
    return { ...instance, service: this.frontendOf(instance.service) ?? instance.service };
  }

  leaveRotation(instance: Instance): Promise<void> {
    return this.router.leaveRotation(this.routed(instance));
  }

  joinRotation(instance: Instance): Promise<void> {
    return this.router.joinRotation(this.routed(instance));
  }

  async healthyInstances(service: string): Promise<Instance[]> {
    const instances = await this.router.healthyInstances(this.frontendOf(service) ?? service);
    return instances.map((i) => ({ ...i, service }));
  }
}
