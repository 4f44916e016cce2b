import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import type { HarnessNode } from './node-harness';
import { eventually, handOverAndRestore, identity, inNetns, useTwoNodes } from './node-harness';

const NODE_SERVER = `
const http = require('http');
const store = new Map();
let hits = 0;
http.createServer((req, res) => {
  hits++;
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/set') store.set(url.searchParams.get('k'), url.searchParams.get('v'));
  res.end(JSON.stringify({ hits, store: Object.fromEntries(store), pid: process.pid }));
}).listen(8081, '0.0.0.0');
`;

const PYTHON_PROGRAM = `
import hashlib, json, os, random, time
seed = [random.random() for _ in range(10000)]
digest = hashlib.sha256(json.dumps(seed).encode()).hexdigest()
values = []
while True:
    values.append(len(values))
    with open('/alloc/state.tmp', 'w') as f:
        json.dump({'digest': digest, 'n': len(values), 'sum': sum(values)}, f)
    os.replace('/alloc/state.tmp', '/alloc/state')
    time.sleep(0.05)
`;

const SHELL_LOOP = 'i=0; while true; do i=$((i+1)); echo $i > /alloc/counter; sleep 0.05; done';

// Real runc and CRIU on a loaded 2-core machine: generous, never a performance assertion.
jest.setTimeout(300_000);

describe('real programs move between nodes unchanged (real runc + CRIU)', () => {
  const nodes = useTwoNodes('rp');
  let a: HarnessNode;
  let b: HarnessNode;
  beforeAll(() => {
    ({ a, b } = nodes);
  });

  /** Migrates a task from A to B through the shipper and restores it there with B's own /alloc. */
  async function move(taskId: string): Promise<string> {
    const alloc = await b.allocDir(`${taskId}-b`);
    await handOverAndRestore(a, b, taskId, TaskSpec.fromPartial({ allocDir: alloc }));
    return alloc;
  }

  it('a shell loop keeps its in-memory counter', async () => {
    const alloc = await a.allocDir('shell');
    await a.runtime.start(
      identity('shell'),
      TaskSpec.fromPartial({ argv: ['/bin/sh', '-c', SHELL_LOOP], allocDir: alloc }),
    );
    await eventually(async () => {
      if (!(Number(await readFile(join(alloc, 'counter'), 'utf8')) > 5)) throw new Error('not yet');
    });
    const allocB = await move('shell');
    const last = Number(await readFile(join(alloc, 'counter'), 'utf8'));
    // Node B's /alloc starts empty: a value above A's last one can only come from the moved memory.
    const resumed = await eventually(async () => {
      const n = Number(await readFile(join(allocB, 'counter'), 'utf8'));
      if (!(n > last)) throw new Error(`counter ${n}`);
      return n;
    });
    expect(resumed).toBeGreaterThan(last);
    expect(resumed).toBeLessThan(last + 200);
    await b.runtime.stop('shell-b', 'SIGKILL', 5000);
  });

  it('a Node.js HTTP server keeps its in-memory store and serves on the new address', async () => {
    const alloc = await a.allocDir('node');
    await writeFile(join(alloc, 'server.js'), NODE_SERVER);
    await a.runtime.start(
      identity('node'),
      TaskSpec.fromPartial({ argv: ['/usr/bin/node', '/alloc/server.js'], allocDir: alloc }),
    );
    const curl = (from: HarnessNode, to: HarnessNode, path: string) =>
      inNetns(from.net?.netnsPath ?? '', [
        'curl',
        '-sf',
        '--max-time',
        '5',
        `http://${to.net?.address ?? ''}:8081${path}`,
      ]);
    await eventually(() => curl(b, a, '/'));
    await curl(b, a, '/set?k=colour&v=green');
    const before = JSON.parse(await curl(b, a, '/set?k=shape&v=round')) as {
      hits: number;
      store: unknown;
      pid: number;
    };
    await move('node');
    const after = JSON.parse(await eventually(() => curl(a, b, '/'))) as { hits: number; store: unknown; pid: number };
    expect(after.store).toEqual({ colour: 'green', shape: 'round' });
    expect(after.hits).toBe(before.hits + 1);
    expect(after.pid).toBe(before.pid);
    await b.runtime.stop('node-b', 'SIGKILL', 5000);
  });

  it('a Python program keeps its random seed data and running sums', async () => {
    const alloc = await a.allocDir('python');
    await writeFile(join(alloc, 'prog.py'), PYTHON_PROGRAM);
    await a.runtime.start(
      identity('python'),
      TaskSpec.fromPartial({ argv: ['/usr/bin/python3', '/alloc/prog.py'], allocDir: alloc }),
    );
    type State = { digest: string; n: number; sum: number };
    const read = async (dir: string): Promise<State> => JSON.parse(await readFile(join(dir, 'state'), 'utf8')) as State;
    await eventually(async () => {
      if (!((await read(alloc)).n > 5)) throw new Error('not yet');
    });
    const allocB = await move('python');
    const last = await read(alloc);
    const resumed = await eventually(async () => {
      const s = await read(allocB);
      if (!(s.n > last.n)) throw new Error('not yet');
      return s;
    });
    expect(resumed.digest).toBe(last.digest);
    expect(resumed.sum).toBe((resumed.n * (resumed.n - 1)) / 2);
    await b.runtime.stop('python-b', 'SIGKILL', 5000);
  });

  it("Debian's redis-server keeps its in-memory dataset", async () => {
    const alloc = await a.allocDir('redis');
    await a.runtime.start(
      identity('redis'),
      TaskSpec.fromPartial({
        argv: [
          '/usr/bin/redis-server',
          '--port',
          '6379',
          '--bind',
          '0.0.0.0',
          '--protected-mode',
          'no',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          '/alloc',
          '--enable-debug-command',
          'yes',
        ],
        allocDir: alloc,
      }),
    );
    const cli = (from: HarnessNode, to: HarnessNode, ...args: string[]) =>
      inNetns(from.net?.netnsPath ?? '', ['redis-cli', '-h', to.net?.address ?? '', '-p', '6379', ...args]);
    await eventually(async () => {
      if ((await cli(b, a, 'PING')).trim() !== 'PONG') throw new Error('not ready');
    });
    for (let i = 0; i < 200; i++) await cli(b, a, 'SET', `key:${i}`, `value-${i * i}`);
    await cli(b, a, 'RPUSH', 'list', 'x', 'y', 'z');
    const digestBefore = (await cli(b, a, 'DEBUG', 'DIGEST')).trim();
    expect(digestBefore).toMatch(/^[0-9a-f]{40}$/);
    await move('redis');
    await eventually(async () => {
      if ((await cli(a, b, 'PING')).trim() !== 'PONG') throw new Error('not ready');
    });
    expect((await cli(a, b, 'DEBUG', 'DIGEST')).trim()).toBe(digestBefore);
    expect((await cli(a, b, 'DBSIZE')).trim()).toBe('201');
    expect((await cli(a, b, 'GET', 'key:12')).trim()).toBe('value-144');
    expect((await cli(a, b, 'SET', 'after', 'move')).trim()).toBe('OK');
    await b.runtime.stop('redis-b', 'SIGKILL', 5000);
  });
});
