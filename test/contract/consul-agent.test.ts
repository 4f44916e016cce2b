import { errorCode } from '../../common/errors';
import { ConsulAgent } from '../../common/consul';
import type { Instance } from '../../common/router';
import { CONSUL_TOKEN, HttpStandIn } from './http-standin';

// Consul's side is github.com/hashicorp/consul/api: registrations decode strictly into its structs, and the
// agent's service and check lists are answered with them.
let standIn: HttpStandIn;
let agent: ConsulAgent;

const counter: Instance = { service: 'counter', id: 'counter-a', address: '127.0.0.1', port: 18080, node: 'client-a' };
const stand: Instance = { ...counter, id: 'nomad-chain-restored-counter-a' };

beforeAll(async () => {
  standIn = await HttpStandIn.start();
  agent = new ConsulAgent({ address: standIn.consulAddress, token: CONSUL_TOKEN });
});

afterAll(async () => {
  await standIn?.stop();
});

async function expectNoContractFailures(): Promise<void> {
  expect((await standIn.report()).failures).toEqual([]);
}

test('register with an HTTP check, and a stand-in whose TTL check starts passing; both read back', async () => {
  await agent.register(counter, { check: { kind: 'http', path: '/health', intervalMs: 1000, timeoutMs: 500 } });
  await agent.register(stand, {
    check: { kind: 'ttl', ttlMs: 30_000 },
    initialStatus: 'passing',
    deregisterCriticalAfterMs: 60_000,
    tags: ['chain'],
    meta: { 'nomad-chain-stand-in-for': counter.id },
  });
  expect((await agent.agentServices('ID contains "counter-a"')).map((s) => s.id).sort()).toEqual([
    'counter-a',
    'nomad-chain-restored-counter-a',
  ]);
  expect(await agent.serviceCheckStatuses(stand.id)).toEqual(['passing']);

  const bodies = (await standIn.report()).requests
    .filter((r) => r.path === '/v1/agent/service/register')
    .map((r) => JSON.parse(r.body) as unknown);
  expect(bodies[0]).toMatchObject({
    ID: 'counter-a',
    Name: 'counter',
    Check: { HTTP: 'http://127.0.0.1:18080/health', Interval: '1000ms', Timeout: '500ms' },
  });
  expect(bodies[1]).toMatchObject({
    Meta: { 'nomad-chain-stand-in-for': 'counter-a' },
    Check: { TTL: '30000ms', Status: 'passing', DeregisterCriticalServiceAfter: '60000ms' },
  });
  await expectNoContractFailures();
});

test('deregister removes the instance; an unknown one is a typed Consul error with the status', async () => {
  await agent.deregister(stand);
  expect((await agent.agentServices('ID contains "counter-a"')).map((s) => s.id)).toEqual(['counter-a']);
  const err = await agent.deregister(stand).catch((e: unknown) => e);
  expect(errorCode(err)).toBe('NC_CONSUL_STATUS');
  expect((err as { status?: number }).status).toBe(404);
  await expectNoContractFailures();
});
