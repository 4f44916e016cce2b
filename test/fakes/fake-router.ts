import type { Instance, Router } from '../../common/router';

export class FakeRouter implements Router {
  readonly inRotation = new Map<string, Instance>();
  failJoins = 0;

  async leaveRotation(instance: Instance): Promise<void> {
    this.inRotation.delete(instance.id);
  }

  async joinRotation(instance: Instance): Promise<void> {
    if (this.failJoins > 0) {
      this.failJoins -= 1;
      throw new Error('router unavailable');
    }
    this.inRotation.set(instance.id, instance);
  }

  async healthyInstances(service: string): Promise<Instance[]> {
    return [...this.inRotation.values()].filter((i) => i.service === service);
  }
}
