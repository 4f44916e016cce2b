import { errorCode } from '../../common/errors';
import { ConsulRouter } from '../../common/consul';
import type { Instance } from '../../common/router';
import { CONSUL_TOKEN, HttpStandIn } from './http-standin';

// Consul's side is github.com/hashicorp/consul/api: registrations decode strictly into its structs.
let standIn: HttpStandIn;
let router: ConsulRouter;

const counterA: Instance = { service: 'counter', id: 'counter-a', address: '127.0.0.1', port: 18080, node: 'client-a' };
const counterB: Instance = { service: 'counter', id: 'counter-b', address: '127.0.0.2', port: 18081, node: 'client-a' };

beforeAll(async () => {
  standIn = await HttpStandIn.start();
  router = new ConsulRouter({ address: standIn.consulAddress, token: CONSUL_TOKEN });
});

afterAll(async () => {
  await standIn?.stop();
});

async function expectNoContractFailures(): Promise<void> {
  expect((await standIn.report()).failures).toEqual([]);
}

test('register with HTTP and TTL checks; only passing instances are healthy', async () => {
  await router.register(counterA, { check: { kind: 'http', path: '/health', intervalMs: 1000, timeoutMs: 500 } });
  await router.register(counterB, {
    check: { kind: 'ttl', ttlMs: 5000 },
    deregisterCriticalAfterMs: 60_000,
    tags: ['chain'],
  });
  // A TTL check starts critical in Consul until its first pass.
  expect((await router.healthyInstances('counter')).map((i) => i.id)).toEqual(['counter-a']);
  await router.passCheck(counterB, 'restored');
  expect(await router.healthyInstances('counter')).toEqual([counterA, counterB]);
  await router.failCheck(counterB, 'frozen');
  expect((await router.healthyInstances('counter')).map((i) => i.id)).toEqual(['counter-a']);

  const report = await standIn.report();
  const bodies = report.requests
    .filter((r) => r.path === '/v1/agent/service/register')
    .map((r) => JSON.parse(r.body) as unknown);
  expect(bodies[0]).toMatchObject({
    ID: 'counter-a',
    Name: 'counter',
    Check: { HTTP: 'http://127.0.0.1:18080/health', Interval: '1000ms', Timeout: '500ms' },
  });
  expect(bodies[1]).toMatchObject({ Check: { TTL: '5000ms', DeregisterCriticalServiceAfter: '60000ms' } });
  await expectNoContractFailures();
});

test('leaving rotation is maintenance mode: out of ?passing at once, back after joinRotation', async () => {
  await router.passCheck(counterB);
  await router.leaveRotation(counterA);
  expect((await router.healthyInstances('counter')).map((i) => i.id)).toEqual(['counter-b']);
  await router.joinRotation(counterA);
  expect((await router.healthyInstances('counter')).map((i) => i.id)).toEqual(['counter-a', 'counter-b']);

  const maintenance = (await standIn.report()).requests.filter((r) =>
    r.path.startsWith('/v1/agent/service/maintenance/'),
  );
  expect(maintenance.map((r) => [r.method, r.path, new URLSearchParams(r.query).get('enable')])).toEqual([
    ['PUT', '/v1/agent/service/maintenance/counter-a', 'true'],
    ['PUT', '/v1/agent/service/maintenance/counter-a', 'false'],
  ]);
  await expectNoContractFailures();
});

test('deregister removes the instance; an unknown instance is a typed Consul error with the status', async () => {
  await router.deregister(counterB);
  expect((await router.healthyInstances('counter')).map((i) => i.id)).toEqual(['counter-a']);
  const err = await router.leaveRotation(counterB).catch((e: unknown) => e);
  expect(errorCode(err)).toBe('NC_CONSUL_STATUS');
  expect((err as { status?: number }).status).toBe(404);
  await expectNoContractFailures();
});
