import { ConsulAgent, resolveConsulAgentConfig, toConsulApiError } from '../../../../common/consul';
import { errorCode } from '../../../../common/errors';
import type { Instance } from '../../../../common/router';
import { LocalHttpServer, startDroppingServer } from '../local-http-server';

let server: LocalHttpServer;
let agent: ConsulAgent;
const web: Instance = { service: 'web', id: 'web-1', address: '198.18.0.2', port: 8080, node: 'n1' };

beforeEach(async () => {
  server = await LocalHttpServer.start();
  server.handler = server.json(200, {});
  agent = new ConsulAgent({ address: server.address, token: 't0k' });
});

afterEach(async () => {
  await server.close();
});

function last(): { method: string; path: string; query: string; body: unknown; token: unknown } {
  const seen = server.seen[server.seen.length - 1];
  if (seen === undefined) throw new Error('no request seen');
  return {
    method: seen.method,
    path: seen.url.pathname,
    query: seen.url.search,
    body: seen.body === '' ? undefined : JSON.parse(seen.body),
    token: seen.headers['x-consul-token'],
  };
}

describe('config', () => {
  test('defaults, frozen', () => {
    const config = resolveConsulAgentConfig({});
    expect(config).toEqual({
      host: '127.0.0.1',
      port: 8500,
      secure: false,
      token: undefined,
      timeoutMs: 5000,
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(resolveConsulAgentConfig({ address: 'https://[::1]' })).toMatchObject({
      host: '::1',
      port: 443,
      secure: true,
    });
  });

  test.each([
    [{ address: '::' }, 'consul.address'],
    [{ address: 'unix:///x' }, 'consul.address'],
    [{ timeoutMs: -1 }, 'consul.timeoutMs'],
  ])('%j is refused naming %s', (options, field) => {
    let thrown: unknown;
    try {
      resolveConsulAgentConfig(options);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: 'NC_CONFIG_INVALID', field });
  });
});

test('register sends the service with its check; TCP and TTL checks too', async () => {
  await agent.register(web, { check: { kind: 'tcp', intervalMs: 2000, timeoutMs: 1000 }, tags: ['a'] });
  expect(last()).toEqual({
    method: 'PUT',
    path: '/v1/agent/service/register',
    query: '',
    token: 't0k',
    body: {
      ID: 'web-1',
      Name: 'web',
      Address: '198.18.0.2',
      Port: 8080,
      Tags: ['a'],
      Meta: { 'nomad-chain-node': 'n1' },
      Check: { Name: 'web health', TCP: '198.18.0.2:8080', Interval: '2000ms', Timeout: '1000ms' },
    },
  });
  await agent.register({ ...web, address: '::1' }, { check: { kind: 'ttl', ttlMs: 3000 } });
  expect(last().body).toMatchObject({ Check: { Name: 'web health', TTL: '3000ms' } });
  await agent.register(
    { ...web, address: '::1' },
    { check: { kind: 'http', path: '/h', intervalMs: 1, timeoutMs: 1 } },
  );
  expect(last().body).toMatchObject({ Check: { HTTP: 'http://[::1]:8080/h' } });
});

test('register can start the check passing and add service meta; deregister removes by ID', async () => {
  await agent.register(web, {
    check: { kind: 'ttl', ttlMs: 30_000 },
    initialStatus: 'passing',
    deregisterCriticalAfterMs: 60_000,
    meta: { 'nomad-chain-stand-in-for': '_nomad-task-x' },
  });
  expect(last().body).toMatchObject({
    Meta: { 'nomad-chain-stand-in-for': '_nomad-task-x', 'nomad-chain-node': 'n1' },
    Check: { TTL: '30000ms', Status: 'passing', DeregisterCriticalServiceAfter: '60000ms' },
  });
  await agent.deregister(web);
  expect(last()).toMatchObject({ method: 'PUT', path: '/v1/agent/service/deregister/web-1' });
});

test("the agent's services and a service's check statuses are read with a filter", async () => {
  server.handler = server.json(200, {
    'svc-1': { ID: 'svc-1', Service: 'web', Address: '198.18.0.2', Port: 8080, Tags: ['a'] },
    'svc-2': { ID: 'svc-2', Service: 'web', Port: 81 },
  });
  expect(await agent.agentServices('ID contains "abc"')).toEqual([
    { id: 'svc-1', service: 'web', address: '198.18.0.2', port: 8080, tags: ['a'] },
    { id: 'svc-2', service: 'web', address: '', port: 81, tags: [] },
  ]);
  expect(last()).toMatchObject({ method: 'GET', path: '/v1/agent/services', token: 't0k' });
  expect(new URLSearchParams(last().query).get('filter')).toBe('ID contains "abc"');

  server.handler = server.json(200, { c1: { CheckID: 'c1', Status: 'critical' }, c2: { Status: 'passing' } });
  expect(await agent.serviceCheckStatuses('svc-1')).toEqual(['critical', 'passing']);
  expect(last()).toMatchObject({ method: 'GET', path: '/v1/agent/checks' });
  expect(new URLSearchParams(last().query).get('filter')).toBe('ServiceID == "svc-1"');
});

test('malformed agent answers are NC_CONSUL_BAD_RESPONSE', async () => {
  server.handler = server.json(200, []);
  expect(errorCode(await agent.agentServices('x').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
  server.handler = server.json(200, { s: { ID: 's', Service: 'web' } });
  expect(errorCode(await agent.agentServices('x').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
  server.handler = server.json(200, null);
  expect(errorCode(await agent.serviceCheckStatuses('s').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
  server.handler = server.json(200, { c: { CheckID: 'c' } });
  expect(errorCode(await agent.serviceCheckStatuses('s').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
});

test('errors map once: status, timeout, unreachable, invalid request', async () => {
  server.handler = (_req, res) => {
    res.writeHead(500, { 'Content-Type': 'text/plain' }).end('rpc error');
  };
  const status = await agent.agentServices('x').catch((e: unknown) => e);
  expect(status).toMatchObject({ code: 'NC_CONSUL_STATUS', status: 500, recoverable: true });

  server.handler = () => undefined;
  const slow = new ConsulAgent({ address: server.address, timeoutMs: 100 });
  expect(await slow.serviceCheckStatuses('web-1').catch((e: unknown) => e)).toMatchObject({
    code: 'NC_CONSUL_TIMEOUT',
    recoverable: true,
  });

  const dropping = await startDroppingServer();
  const gone = new ConsulAgent({ address: dropping.address });
  expect(
    await gone.register(web, { check: { kind: 'ttl', ttlMs: 1000 } }).then(
      (v) => ({ resolved: v }),
      (e: unknown) => e,
    ),
  ).toMatchObject({
    code: 'NC_CONSUL_UNREACHABLE',
    recoverable: true,
  });
  await dropping.close();

  expect(errorCode(await agent.deregister({ ...web, id: '' }).catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_REQUEST');
  expect(toConsulApiError(new Error('x'), 'op').code).toBe('NC_CONSUL_UNREACHABLE');
});
