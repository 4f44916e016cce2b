import type { Instance } from '../../../../common/router';
import { ServiceRoutes } from '../../../../local/job/service-routes';
import { FakeRouter } from '../../../fakes/fake-router';

const instance = (service: string, id: string): Instance => ({
  service,
  id,
  address: '198.18.0.2',
  port: 80,
  node: 'node1',
});

describe('routes: services HAProxy has no frontend of their own for take a spare', () => {
  it('routes a known service as itself and a new one through a spare, both ways', async () => {
    const router = new FakeRouter();
    /** What HAProxy's router holds, by frontend. */
    const held = () => [...router.inRotation.values()].map((i) => `${i.service}/${i.id}`);
    const released: string[] = [];
    const routes = new ServiceRoutes(router, ['kv'], ['spare1', 'spare2'], (f) => {
      released.push(f);
      return Promise.resolve();
    });
    expect(routes.claim('kv')).toBe('kv');
    expect(routes.claim('redis')).toBe('spare1');
    expect(routes.claim('redis')).toBe('spare1');
    await routes.joinRotation(instance('redis', 'redis-1'));
    expect(held()).toEqual(['spare1/redis-1']);
    // Watchers see the service's own name, not the frontend's.
    expect((await routes.healthyInstances('redis')).map((i) => i.service)).toEqual(['redis']);
    await routes.leaveRotation(instance('redis', 'redis-1'));
    await routes.joinRotation(instance('kv', 'kv-1'));
    expect(held()).toEqual(['kv/kv-1']);
    await routes.retire('redis');
    expect(released).toEqual(['spare1']);
    expect(routes.frontendOf('redis')).toBeUndefined();
    expect(routes.claim('web')).toBe('spare1');
  });

  it('refuses a service once every spare is taken, with NC_JOB_ALREADY_RUNNING', () => {
    const routes = new ServiceRoutes(new FakeRouter(), [], ['spare1'], () => Promise.resolve());
    routes.claim('a');
    expect(() => routes.claim('b')).toThrow(expect.objectContaining({ code: 'NC_JOB_ALREADY_RUNNING' }) as Error);
  });
});
