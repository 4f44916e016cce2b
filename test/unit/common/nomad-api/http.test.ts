import { errorCode } from '../../../../common/errors';
import { NomadHttp, resolveNomadHttpConfig } from '../../../../common/nomad-api/http';
import { LocalHttpServer, startDroppingServer } from '../local-http-server';

let server: LocalHttpServer;

beforeEach(async () => {
  server = await LocalHttpServer.start();
});

afterEach(async () => {
  await server.close();
});

async function codeOf(p: Promise<unknown>): Promise<[string | undefined, unknown]> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return [errorCode(err), err];
}

describe('config', () => {
  test('defaults, frozen', () => {
    const config = resolveNomadHttpConfig({});
    expect(config).toEqual({
      address: 'http://127.0.0.1:4646/',
      token: undefined,
      tls: undefined,
      timeoutMs: 10_000,
      namespace: 'default',
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  test.each([
    [{ address: 'not a url' }, 'nomad.address'],
    [{ address: 'ftp://x' }, 'nomad.address'],
    [{ timeoutMs: 0 }, 'nomad.timeoutMs'],
    [{ address: 'http://x:4646', tls: { ca: 'pem' } }, 'nomad.tls'],
  ])('%j is refused naming %s', (options, field) => {
    let thrown: unknown;
    try {
      resolveNomadHttpConfig(options);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: 'NC_CONFIG_INVALID', field });
  });

  test('TLS material is kept as strings', () => {
    const config = resolveNomadHttpConfig({
      address: 'https://nomad:4646',
      tls: { ca: Buffer.from('CA'), serverName: 's' },
    });
    expect(config.tls).toEqual({ ca: 'CA', cert: undefined, key: undefined, serverName: 's' });
  });
});

test('sends the token header and JSON body; reads X-Nomad-Index', async () => {
  server.handler = server.json(200, { ok: true }, { 'X-Nomad-Index': '42' });
  const http = new NomadHttp({ address: server.address, token: 'secret' });
  const res = await http.query<{ ok: boolean }>('/v1/x', { a: 'b', many: ['1', '2'], skip: undefined });
  expect(res).toEqual({ value: { ok: true }, lastIndex: 42 });
  await http.write('PUT', '/v1/y', { A: 1 });
  const [get, put] = server.seen;
  expect(get?.headers['x-nomad-token']).toBe('secret');
  expect(get?.url.search).toBe('?a=b&many=1&many=2');
  expect(put?.method).toBe('PUT');
  expect(put?.headers['content-type']).toBe('application/json');
  expect(JSON.parse(put?.body ?? '')).toEqual({ A: 1 });
});

test('no token header without a token', async () => {
  server.handler = server.json(200, {});
  await new NomadHttp({ address: server.address, token: '' }).query('/v1/x');
  expect(server.seen[0]?.headers['x-nomad-token']).toBeUndefined();
});

test('blocking query passes index and wait as a Go duration', async () => {
  server.handler = server.json(200, [], { 'X-Nomad-Index': '8' });
  await new NomadHttp({ address: server.address }).query('/v1/nodes', {}, { index: 7, waitMs: 1500 });
  expect(server.seen[0]?.url.searchParams.get('index')).toBe('7');
  expect(server.seen[0]?.url.searchParams.get('wait')).toBe('1500ms');
});

test.each([
  [404, 'NC_NOMAD_API_NOT_FOUND', false],
  [400, 'NC_NOMAD_API_STATUS', false],
  [403, 'NC_NOMAD_API_ACL_DENIED', false],
  [500, 'NC_NOMAD_API_STATUS', true],
])('HTTP %i becomes %s (recoverable %s) with status and Nomad text', async (status, code, recoverable) => {
  server.handler = (_req, res) => {
    res.writeHead(status).end('Permission denied');
  };
  const [got, err] = await codeOf(new NomadHttp({ address: server.address }).query('/v1/node/x'));
  expect(got).toBe(code);
  expect(err).toMatchObject({ status, recoverable, context: { detail: 'Permission denied', path: '/v1/node/x' } });
});

test("a 403 says whether a token was sent, and keeps Nomad's reason", async () => {
  server.handler = (_req, res) => {
    res.writeHead(403).end('ACL token not found');
  };
  const [, withToken] = await codeOf(new NomadHttp({ address: server.address, token: 'wrong' }).query('/v1/x'));
  expect(withToken).toMatchObject({
    code: 'NC_NOMAD_API_ACL_DENIED',
    message: expect.stringContaining('ACL token is unknown') as unknown,
    context: { tokenSent: true, detail: 'ACL token not found' },
  });
  const [, without] = await codeOf(new NomadHttp({ address: server.address }).query('/v1/x'));
  expect(without).toMatchObject({
    code: 'NC_NOMAD_API_ACL_DENIED',
    message: expect.stringContaining('no ACL token was sent') as unknown,
    context: { tokenSent: false },
  });
});

test('invalid JSON is NC_NOMAD_API_BAD_RESPONSE', async () => {
  server.handler = (_req, res) => {
    res.writeHead(200).end('{not json');
  };
  expect((await codeOf(new NomadHttp({ address: server.address }).query('/v1/x')))[0]).toBe(
    'NC_NOMAD_API_BAD_RESPONSE',
  );
});

test('a server that never answers is NC_NOMAD_API_TIMEOUT, recoverable', async () => {
  server.handler = () => undefined;
  const [code, err] = await codeOf(new NomadHttp({ address: server.address, timeoutMs: 100 }).query('/v1/x'));
  expect(code).toBe('NC_NOMAD_API_TIMEOUT');
  expect(err).toMatchObject({ recoverable: true });
});

test('a dropped connection is NC_NOMAD_API_UNREACHABLE, recoverable', async () => {
  const dropping = await startDroppingServer();
  const [code, err] = await codeOf(new NomadHttp({ address: dropping.address }).query('/v1/x'));
  await dropping.close();
  expect(code).toBe('NC_NOMAD_API_UNREACHABLE');
  expect(err).toMatchObject({ recoverable: true });
});

test('an abort signal ends the call with NC_NOMAD_API_ABORTED', async () => {
  server.handler = () => undefined;
  const controller = new AbortController();
  const pending = new NomadHttp({ address: server.address }).query('/v1/x', {}, { signal: controller.signal });
  setTimeout(() => controller.abort(), 20);
  expect((await codeOf(pending))[0]).toBe('NC_NOMAD_API_ABORTED');
  controller.abort();
  expect(
    (await codeOf(new NomadHttp({ address: server.address }).query('/v1/x', {}, { signal: controller.signal })))[0],
  ).toBe('NC_NOMAD_API_ABORTED');
});
