import { ConsulRouter, resolveConsulRouterConfig, serviceCheckId, toConsulApiError } from '../../../../common/consul';
import { errorCode } from '../../../../common/errors';
import type { Instance } from '../../../../common/router';
import { LocalHttpServer, startDroppingServer } from '../local-http-server';

let server: LocalHttpServer;
let router: ConsulRouter;
const web: Instance = { service: 'web', id: 'web-1', address: '198.18.0.2', port: 8080, node: 'n1' };

beforeEach(async () => {
  server = await LocalHttpServer.start();
  server.handler = server.json(200, {});
  router = new ConsulRouter({ address: server.address, token: 't0k' });
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
    const config = resolveConsulRouterConfig({});
    expect(config).toEqual({
      host: '127.0.0.1',
      port: 8500,
      secure: false,
      token: undefined,
      timeoutMs: 5000,
      maintenanceReason: 'nomad-chain: migrating',
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(resolveConsulRouterConfig({ address: 'https://[::1]' })).toMatchObject({
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
      resolveConsulRouterConfig(options);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: 'NC_CONFIG_INVALID', field });
  });
});

test('register sends the service with its check; TCP and TTL checks too', async () => {
  await router.register(web, { check: { kind: 'tcp', intervalMs: 2000, timeoutMs: 1000 }, tags: ['a'] });
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
  await router.register({ ...web, address: '::1' }, { check: { kind: 'ttl', ttlMs: 3000 } });
  expect(last().body).toMatchObject({ Check: { Name: 'web health', TTL: '3000ms' } });
  await router.register(
    { ...web, address: '::1' },
    { check: { kind: 'http', path: '/h', intervalMs: 1, timeoutMs: 1 } },
  );
  expect(last().body).toMatchObject({ Check: { HTTP: 'http://[::1]:8080/h' } });
});

test('register can start the check passing and add service meta', async () => {
  await router.register(web, {
    check: { kind: 'ttl', ttlMs: 30_000 },
    initialStatus: 'passing',
    deregisterCriticalAfterMs: 60_000,
    meta: { 'nomad-chain-stand-in-for': '_nomad-task-x' },
  });
  expect(last().body).toMatchObject({
    Meta: { 'nomad-chain-stand-in-for': '_nomad-task-x', 'nomad-chain-node': 'n1' },
    Check: { TTL: '30000ms', Status: 'passing', DeregisterCriticalServiceAfter: '60000ms' },
  });
});

test("the agent's services and a service's check statuses are read with a filter", async () => {
  server.handler = server.json(200, {
    'svc-1': { ID: 'svc-1', Service: 'web', Address: '198.18.0.2', Port: 8080, Tags: ['a'] },
    'svc-2': { ID: 'svc-2', Service: 'web', Port: 81 },
  });
  expect(await router.agentServices('ID contains "abc"')).toEqual([
    { id: 'svc-1', service: 'web', address: '198.18.0.2', port: 8080, tags: ['a'] },
    { id: 'svc-2', service: 'web', address: '', port: 81, tags: [] },
  ]);
  expect(last()).toMatchObject({ method: 'GET', path: '/v1/agent/services', token: 't0k' });
  expect(new URLSearchParams(last().query).get('filter')).toBe('ID contains "abc"');

  server.handler = server.json(200, { c1: { CheckID: 'c1', Status: 'critical' }, c2: { Status: 'passing' } });
  expect(await router.serviceCheckStatuses('svc-1')).toEqual(['critical', 'passing']);
  expect(last()).toMatchObject({ method: 'GET', path: '/v1/agent/checks' });
  expect(new URLSearchParams(last().query).get('filter')).toBe('ServiceID == "svc-1"');
});

test('malformed agent answers are NC_CONSUL_BAD_RESPONSE', async () => {
  server.handler = server.json(200, []);
  expect(errorCode(await router.agentServices('x').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
  server.handler = server.json(200, { s: { ID: 's', Service: 'web' } });
  expect(errorCode(await router.agentServices('x').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
  server.handler = server.json(200, null);
  expect(errorCode(await router.serviceCheckStatuses('s').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
  server.handler = server.json(200, { c: { CheckID: 'c' } });
  expect(errorCode(await router.serviceCheckStatuses('s').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
});

test('rotation is maintenance mode; TTL pass/fail address the service check', async () => {
  await router.leaveRotation(web);
  expect(last()).toMatchObject({
    method: 'PUT',
    path: '/v1/agent/service/maintenance/web-1',
    query: '?enable=true&reason=nomad-chain%3A%20migrating',
  });
  await router.joinRotation(web);
  expect(last()).toMatchObject({ path: '/v1/agent/service/maintenance/web-1', query: '?enable=false' });
  await router.passCheck(web, 'ok');
  expect({ ...last(), path: decodeURIComponent(last().path) }).toMatchObject({
    method: 'PUT',
    path: `/v1/agent/check/pass/${serviceCheckId('web-1')}`,
    query: '?note=ok',
  });
  await router.failCheck(web);
  expect(last()).toMatchObject({ path: '/v1/agent/check/fail/service%3Aweb-1' });
  await router.deregister(web);
  expect(last()).toMatchObject({ method: 'PUT', path: '/v1/agent/service/deregister/web-1' });
});

test('healthy instances come from ?passing; an empty service address means the node address', async () => {
  server.handler = server.json(200, [
    {
      Node: { Node: 'n1', Address: '198.18.0.2' },
      Service: { ID: 'web-1', Service: 'web', Address: '', Port: 8080 },
      Checks: [],
    },
    {
      Node: { Node: 'n2', Address: '198.18.0.3' },
      Service: { ID: 'web-2', Service: 'web', Address: '10.0.0.9', Port: 81 },
      Checks: [],
    },
  ]);
  expect(await router.healthyInstances('web')).toEqual([
    { service: 'web', id: 'web-1', address: '198.18.0.2', port: 8080, node: 'n1' },
    { service: 'web', id: 'web-2', address: '10.0.0.9', port: 81, node: 'n2' },
  ]);
  expect(last()).toMatchObject({ method: 'GET', path: '/v1/health/service/web' });
  expect(new URLSearchParams(last().query).has('passing')).toBe(true);
});

test('malformed health answers are NC_CONSUL_BAD_RESPONSE', async () => {
  server.handler = server.json(200, { not: 'a list' });
  expect(errorCode(await router.healthyInstances('web').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
  server.handler = server.json(200, [{ Node: { Node: 'n1' }, Service: { ID: 'x' } }]);
  expect(errorCode(await router.healthyInstances('web').catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_RESPONSE');
});

test('errors map once: status, timeout, unreachable, invalid request', async () => {
  server.handler = (_req, res) => {
    res.writeHead(500, { 'Content-Type': 'text/plain' }).end('rpc error');
  };
  const status = await router.leaveRotation(web).catch((e: unknown) => e);
  expect(status).toMatchObject({ code: 'NC_CONSUL_STATUS', status: 500, recoverable: true });

  server.handler = () => undefined;
  const slow = new ConsulRouter({ address: server.address, timeoutMs: 100 });
  expect(await slow.leaveRotation(web).catch((e: unknown) => e)).toMatchObject({
    code: 'NC_CONSUL_TIMEOUT',
    recoverable: true,
  });

  const dropping = await startDroppingServer();
  const gone = new ConsulRouter({ address: dropping.address });
  expect(
    await gone.joinRotation(web).then(
      (v) => ({ resolved: v }),
      (e: unknown) => e,
    ),
  ).toMatchObject({
    code: 'NC_CONSUL_UNREACHABLE',
    recoverable: true,
  });
  await dropping.close();

  expect(errorCode(await router.deregister({ ...web, id: '' }).catch((e: unknown) => e))).toBe('NC_CONSUL_BAD_REQUEST');
  expect(toConsulApiError(new Error('x'), 'op').code).toBe('NC_CONSUL_UNREACHABLE');
});
