import { HttpNomadApi } from '../../../../common/nomad-api';
import { LocalHttpServer } from '../local-http-server';

let server: LocalHttpServer;
let api: HttpNomadApi;

beforeEach(async () => {
  server = await LocalHttpServer.start();
  server.handler = server.json(200, {}, { 'X-Nomad-Index': '3' });
  api = new HttpNomadApi({ address: server.address, namespace: 'prod' });
});

afterEach(async () => {
  await server.close();
});

function last(): { method: string; path: string; query: string; body: unknown } {
  const seen = server.seen[server.seen.length - 1];
  if (seen === undefined) throw new Error('no request seen');
  return {
    method: seen.method,
    path: seen.url.pathname,
    query: seen.url.search,
    body: seen.body === '' ? undefined : JSON.parse(seen.body),
  };
}

test('drain converts the deadline to nanoseconds and ignores system jobs by default', async () => {
  await api.drainNode('n/1', { deadlineMs: 1500, meta: { by: 'forecaster' } });
  expect(last()).toEqual({
    method: 'PUT',
    path: '/v1/node/n%2F1/drain',
    query: '',
    body: {
      NodeID: 'n/1',
      DrainSpec: { Deadline: 1_500_000_000, IgnoreSystemJobs: true },
      MarkEligible: false,
      Meta: { by: 'forecaster' },
    },
  });
  await api.drainNode('n1', { deadlineMs: -1, ignoreSystemJobs: false });
  expect(last().body).toEqual({
    NodeID: 'n1',
    DrainSpec: { Deadline: -1_000_000, IgnoreSystemJobs: false },
    MarkEligible: false,
  });
});

test('cancelling a drain sends a null DrainSpec and marks eligible unless told not to', async () => {
  await api.cancelDrain('n1');
  expect(last().body).toEqual({ NodeID: 'n1', DrainSpec: null, MarkEligible: true });
  await api.cancelDrain('n1', { markEligible: false });
  expect(last().body).toEqual({ NodeID: 'n1', DrainSpec: null, MarkEligible: false });
});

test('eligibility', async () => {
  await api.setEligibility('n1', false);
  expect(last()).toMatchObject({
    method: 'PUT',
    path: '/v1/node/n1/eligibility',
    body: { NodeID: 'n1', Eligibility: 'ineligible' },
  });
  await api.setEligibility('n1', true);
  expect(last().body).toEqual({ NodeID: 'n1', Eligibility: 'eligible' });
});

test('reads: nodes, node, node allocations, allocations with namespace and filters', async () => {
  await api.listNodes({ filter: 'Status == "ready"' });
  expect(last()).toMatchObject({ method: 'GET', path: '/v1/nodes', query: '?filter=Status+%3D%3D+%22ready%22' });
  await api.getNode('n1');
  expect(last().path).toBe('/v1/node/n1');
  await api.nodeAllocations('n1');
  expect(last().path).toBe('/v1/node/n1/allocations');
  await api.listAllocations({ taskStates: true });
  expect(last()).toMatchObject({ path: '/v1/allocations', query: '?namespace=prod&task_states=true' });
  await api.listAllocations({ namespace: '*' });
  expect(last().query).toBe('?namespace=*');
  await api.getAllocation('a1');
  expect(last()).toMatchObject({ path: '/v1/allocation/a1', query: '?namespace=prod' });
});

test('alloc stop, jobs and node meta', async () => {
  await api.stopAllocation('a1');
  expect(last()).toEqual({ method: 'PUT', path: '/v1/allocation/a1/stop', query: '?namespace=prod', body: undefined });
  await api.parseJob('job "x" {}');
  expect(last()).toEqual({
    method: 'PUT',
    path: '/v1/jobs/parse',
    query: '',
    body: { JobHCL: 'job "x" {}', Canonicalize: true },
  });
  await api.registerJob({ ID: 'x', TaskGroups: [] });
  expect(last()).toMatchObject({ method: 'PUT', path: '/v1/jobs', body: { Job: { ID: 'x', TaskGroups: [] } } });
  await api.deregisterJob('x', { purge: true });
  expect(last()).toMatchObject({ method: 'DELETE', path: '/v1/job/x', query: '?namespace=prod&purge=true' });
  await api.applyNodeMeta({ a: '1', b: null }, 'n1');
  expect(last()).toEqual({
    method: 'POST',
    path: '/v1/client/metadata',
    query: '',
    body: { Meta: { a: '1', b: null }, NodeID: 'n1' },
  });
  await api.applyNodeMeta({ a: '1' });
  expect(last().body).toEqual({ Meta: { a: '1' } });
  await api.readNodeMeta('n1');
  expect(last()).toMatchObject({ method: 'GET', path: '/v1/client/metadata', query: '?node_id=n1' });
});
