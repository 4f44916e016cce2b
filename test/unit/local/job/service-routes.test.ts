import type { Instance, Router } from '../../../../common/router';
import { ServiceRoutes } from '../../../../local/job/service-routes';

/** Records what HAProxy's router is asked, by frontend. */
class RecordingRouter implements Router {
  readonly calls: string[] = [];
  leaveRotation(instance: Instance): Promise<void> {
    this.calls.push(`leave ${instance.service}/${instance.id}`);
    return Promise.resolve();
  }
  joinRotation(instance: Instance): Promise<void> {
    this.calls.push(`join ${instance.service}/${instance.id}`);
    return Promise.resolve();
  }
  healthyInstances(service: string): Promise<Instance[]> {
    return Promise.resolve([{ service, id: 's1', address: '198.18.0.2', port: 80, node: 'node1' }]);
  }
}

const instance = (service: string, id: string): Instance => ({
  service,
  id,
  address: '198.18.0.2',
  port: 80,
  node: 'node1',
});

describe('routes: services HAProxy has no frontend of their own for take a spare', () => {
  it('routes a known service as itself and a new one through a spare, both ways', async () => {
    const router = new RecordingRouter();
    const released: string[] = [];
    const routes = new ServiceRoutes(router, ['kv'], ['spare1', 'spare2'], (f) => {
      released.push(f);
      return Promise.resolve();
    });
    expect(routes.claim('kv')).toBe('kv');
    expect(routes.claim('redis')).toBe('spare1');
    expect(routes.claim('redis')).toBe('spare1');
    await routes.joinRotation(instance('redis', 'redis-1'));
    await routes.leaveRotation(instance('redis', 'redis-1'));
    await routes.joinRotation(instance('kv', 'kv-1'));
    expect(router.calls).toEqual(['join spare1/redis-1', 'leave spare1/redis-1', 'join kv/kv-1']);
    // Watchers see the service's own name, not the frontend's.
    expect((await routes.healthyInstances('redis')).map((i) => i.service)).toEqual(['redis']);
    await routes.retire('redis');
    expect(released).toEqual(['spare1']);
    expect(routes.frontendOf('redis')).toBeUndefined();
    expect(routes.claim('web')).toBe('spare1');
  });

  it('refuses a service once every spare is taken, with NC_JOB_ALREADY_RUNNING', () => {
    const routes = new ServiceRoutes(new RecordingRouter(), [], ['spare1'], () => Promise.resolve());
    routes.claim('a');
    expect(() => routes.claim('b')).toThrow(expect.objectContaining({ code: 'NC_JOB_ALREADY_RUNNING' }) as Error);
  });
});
