import { errorCode } from '../../../../common/errors';
import { EventStream } from '../../../../common/nomad-api/event-stream';
import type { EventStreamOptions } from '../../../../common/nomad-api/event-stream';
import { NomadHttp } from '../../../../common/nomad-api/http';
import type { Events } from '../../../../common/nomad-api/types';
import { FakeClock } from '../../../fakes/fake-clock';
import { LocalHttpServer } from '../local-http-server';
import type { Handler } from '../local-http-server';

let server: LocalHttpServer;
let clock: FakeClock;

beforeEach(async () => {
  server = await LocalHttpServer.start();
  // A backoff's sleeps return at once and are recorded.
  clock = new FakeClock();
});

afterEach(async () => {
  await server.close();
});

const frame = (index: number): string =>
  JSON.stringify({
    Index: index,
    Events: [{ Topic: 'Node', Type: 'NodeDrain', Key: 'n1', FilterKeys: null, Index: index, Payload: {} }],
  }) + '\n';

/** Answers connection N with the Nth script: chunks written in order, then end (or hang if `hang`). */
function scripted(scripts: { status?: number; chunks: string[]; hang?: boolean }[]): Handler {
  let connection = 0;
  return (_req, res) => {
    const script = scripts[Math.min(connection, scripts.length - 1)];
    connection += 1;
    if (script === undefined) return;
    res.writeHead(script.status ?? 200, { 'Content-Type': 'application/json' });
    for (const chunk of script.chunks) res.write(chunk);
    if (script.hang !== true) res.end();
  };
}

async function collect(options: EventStreamOptions, count: number): Promise<Events[]> {
  const controller = new AbortController();
  const stream = new EventStream(new NomadHttp({ address: server.address }), clock);
  const out: Events[] = [];
  for await (const f of stream.subscribe({ ...options, signal: controller.signal })) {
    out.push(f);
    if (out.length === count) controller.abort();
  }
  return out;
}

test('frames split across chunks are reassembled; heartbeats are skipped', async () => {
  const one = frame(5);
  server.handler = scripted([
    { chunks: ['{}\n', one.slice(0, 10), one.slice(10) + '\n\n{}', '\n', frame(6)], hang: true },
  ]);
  const frames = await collect({ topics: { Node: ['*'] } }, 2);
  expect(frames.map((f) => f.Index)).toEqual([5, 6]);
  expect(frames[0]?.Events[0]?.Key).toBe('n1');
  expect(server.seen[0]?.url.search).toBe('?namespace=default&topic=Node%3A*');
});

test('a dropped stream resumes past the last index, drops repeats and backs off exponentially', async () => {
  server.handler = scripted([
    { chunks: [frame(5), frame(6)] },
    { status: 503, chunks: ['no leader'] },
    { chunks: [frame(6), frame(7)], hang: true },
  ]);
  const frames = await collect({ backoffInitialMs: 100 }, 3);
  expect(frames.map((f) => f.Index)).toEqual([5, 6, 7]);
  expect(server.seen.map((s) => s.url.searchParams.get('index'))).toEqual([null, '7', '7']);
  expect(clock.sleeps).toEqual([100, 200]);
});

test('a start index is honoured and backoff is capped', async () => {
  server.handler = scripted([
    { status: 500, chunks: [] },
    { status: 500, chunks: [] },
    { status: 500, chunks: [] },
    { chunks: [frame(9)], hang: true },
  ]);
  await collect({ index: 9, backoffInitialMs: 300, backoffMaxMs: 500 }, 1);
  expect(server.seen[0]?.url.searchParams.get('index')).toBe('9');
  expect(clock.sleeps).toEqual([300, 500, 500]);
});

test('a silent stream is presumed dead and reopened', async () => {
  server.handler = scripted([
    { chunks: ['{}\n'], hang: true },
    { chunks: [frame(3)], hang: true },
  ]);
  const reconnects: string[] = [];
  const frames = await collect(
    { idleTimeoutMs: 100, onReconnect: ({ err }) => reconnects.push(errorCode(err) ?? '') },
    1,
  );
  expect(frames.map((f) => f.Index)).toEqual([3]);
  expect(reconnects).toEqual(['NC_NOMAD_API_TIMEOUT']);
});

test('a refusal (403) is not retried', async () => {
  server.handler = scripted([{ status: 403, chunks: ['Permission denied'] }]);
  const err = await collect({}, 1).catch((e: unknown) => e);
  expect(errorCode(err)).toBe('NC_NOMAD_API_ACL_DENIED');
  expect(server.seen).toHaveLength(1);
});

test('a corrupt frame is NC_NOMAD_API_BAD_RESPONSE', async () => {
  server.handler = scripted([{ chunks: ['{"Index": 1, "Ev\n'], hang: true }]);
  expect(errorCode(await collect({}, 1).catch((e: unknown) => e))).toBe('NC_NOMAD_API_BAD_RESPONSE');
});

test('aborting ends the iteration quietly', async () => {
  server.handler = scripted([{ chunks: ['{}\n'], hang: true }]);
  const controller = new AbortController();
  const stream = new EventStream(new NomadHttp({ address: server.address }), clock);
  setTimeout(() => controller.abort(), 50);
  const frames: Events[] = [];
  for await (const f of stream.subscribe({ signal: controller.signal })) frames.push(f);
  expect(frames).toEqual([]);
});
