import { execFile } from 'node:child_process';
import { rmSync, statSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { resolveBinary } from '../../../common/binaries';
import { makeWorkDir } from '../../../local/cluster/work-dir';
import { JobRunner } from '../../../local/job/job-runner';
import { EXAMPLE_JOB_FILE, startLocalMode, type LocalMode } from '../../../local/local-mode';
import { eventually } from '../../harness/eventually';

const exec = promisify(execFile);
const REPO = resolve(__dirname, '..', '..', '..');
const log = pino({ level: process.env.NOMAD_CHAIN_TEST_LOG ?? 'silent' });
const KEYS = 100;

/**
 * Debian's redis-server as an operator would write its job: its dataset in memory and its append-only file under
 * the alloc dir, opened once and written on every command (appendfsync always).
 */
const REDIS_JOB = `job "cache" {
  group "cache" {
    network {
      port "db" {
        static = 6379
      }
    }

    service {
      name = "redis"
      port = "db"

      check {
        type = "tcp"
      }
    }

    task "redis" {
      driver = "chain"

      config {
        command = "/usr/bin/redis-server"
        args = ["--port", "\${NOMAD_PORT_db}", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "",
                "--dir", "\${NOMAD_ALLOC_DIR}", "--appendonly", "yes", "--appendfsync", "always",
                "--enable-debug-command", "yes"]
      }

      resources {
        memory = 128
      }
    }
  }
}
`;

async function redis(address: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('/usr/bin/redis-cli', ['-h', address, '-p', '6379', ...args]);
  return stdout.trim();
}

/** Bytes of the append-only files redis keeps in a task's alloc dir on its node. */
function aofBytes(local: LocalMode, node: string, taskId: string): number {
  const dir = join(local.cluster.node(node).dataDir, 'allocs', taskId, 'alloc', 'appendonlydir');
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

test('the example job file passes the real nomad job validate and nomad fmt', async () => {
  const nomad = resolveBinary('nomad');
  // file("jobs/examples/kv-store.js") is read relative to where the command runs, as in the README.
  const { stdout } = await exec(nomad, ['job', 'validate', EXAMPLE_JOB_FILE], { cwd: REPO });
  expect(stdout).toContain('Job validation successful');
  await expect(exec(nomad, ['fmt', '-check', EXAMPLE_JOB_FILE], { cwd: REPO })).resolves.toMatchObject({ stdout: '' });
});

describe('local mode runs a Nomad job file (issue #14 item 5)', () => {
  let local: LocalMode | undefined;
  let dir: string;
  afterAll(async () => {
    await local?.stop(true);
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs job files given at run time: redis-server moves with its dataset and open AOF, HAProxy follows an HTTP job, job stop ends both', async () => {
    dir = makeWorkDir('nc-job-file-');
    const file = join(dir, 'cache.nomad.hcl');
    writeFileSync(file, REDIS_JOB);
    // As npm start wires it: no service known at start, the job takes a spare HAProxy frontend.
    local = await startLocalMode({ cluster: { nodes: 3, services: [] }, spareRoutes: 2 }, log);
    const mode = local;
    const jobs = new JobRunner({
      controller: mode.controller,
      routes: mode.routes,
      addressOf: (node) => mode.cluster.node(node).address,
      portOf: (frontend) => mode.cluster.haproxy.portOf(frontend),
      filesDir: join(dir, 'files'),
      log,
    });
    const [started] = (await jobs.run(await jobs.load(file, dir))).services;
    expect(started).toMatchObject({ service: 'redis', task: 'redis', taskId: 'redis-1' });
    expect(started?.routerUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const source = started?.node ?? '';
    const sourceAddress = mode.cluster.node(source).address;
    expect(started?.address).toBe(`${sourceAddress}:6379`);

    for (let i = 0; i < KEYS; i++) await redis(sourceAddress, 'SET', `key:${i}`, `value-${i * i}`);
    const digest = await redis(sourceAddress, 'DEBUG', 'DIGEST');
    expect(digest).toMatch(/^[0-9a-f]{40}$/);
    const aofAtDrain = aofBytes(mode, source, 'redis-1');
    expect(aofAtDrain).toBeGreaterThan(0);

    const [outcome] = await mode.controller.drainNode(source, 'test');
    expect(outcome).toMatchObject({ taskKey: 'redis', outcome: 'moved' });
    const [moved] = jobs.status('cache')[0]?.services ?? [];
    expect(moved?.node).not.toBe(source);
    expect(moved?.taskId).toBe('redis-2');
    const targetAddress = mode.cluster.node(moved?.node ?? '').address;
    expect(moved?.address).toBe(`${targetAddress}:6379`);

    // The same process, with its memory: the dataset's digest is unchanged, no reload from the AOF happened.
    expect(await redis(targetAddress, 'DEBUG', 'DIGEST')).toBe(digest);
    expect(await redis(targetAddress, 'DBSIZE')).toBe(String(KEYS));
    expect(await redis(targetAddress, 'GET', 'key:12')).toBe('value-144');
    // The AOF it holds open moved with it: a write after the move lands in the file at the target's path.
    expect(aofBytes(mode, moved?.node ?? '', 'redis-2')).toBe(aofAtDrain);
    expect(await redis(targetAddress, 'SET', 'after', 'move')).toBe('OK');
    expect(aofBytes(mode, moved?.node ?? '', 'redis-2')).toBeGreaterThan(aofAtDrain);
    expect(await redis(targetAddress, 'INFO', 'persistence')).toMatch(/aof_last_write_status:ok/);

    // An HTTP job from jobs/ (its program an inline static template) on the other spare frontend: HAProxy follows it.
    const counter = (await jobs.run(await jobs.load(join(REPO, 'jobs/example-counter.nomad.hcl'), REPO))).services[0];
    const count = async (): Promise<number> =>
      ((await (await fetch(`${counter?.routerUrl ?? ''}/`)).json()) as { count: number }).count;
    expect(counter?.routerUrl).not.toBe(started?.routerUrl);
    expect(await count()).toBe(1);
    expect(await count()).toBe(2);
    expect(jobs.status().map((j) => j.job)).toEqual(['cache', 'example-counter']);
    const [counterMoved] = await mode.controller.drainNode(counter?.node ?? '', 'test');
    expect(counterMoved).toMatchObject({ taskKey: 'example-counter', outcome: 'moved' });
    expect(await count()).toBe(3);

    // job stop: nothing of it runs, and its spare frontend is free for the next job.
    await jobs.stop('cache');
    expect(mode.controller.tasks().redis).toBeUndefined();
    await eventually(async () => {
      await expect(redis(targetAddress, 'PING')).rejects.toThrow();
    });
    expect(() => jobs.status('cache')).toThrow(expect.objectContaining({ code: 'NC_JOB_NOT_RUNNING' }) as Error);
    expect(mode.routes.claim('next')).toBe('spare1');
    await jobs.stop('example-counter');
    expect(Object.keys(mode.controller.tasks())).toEqual([]);
  });
});
