import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from '@cdktf/hcl2json';
import { PLUGIN_DEFAULTS, taskConfigSpec } from '../../../plugin/src/config';
import { rawOptionsFrom } from '../../../sidecar/src/config';

// CI's syntax gate for jobs/ and hcl/ (the real-Nomad tier adds `nomad fmt -check` and `nomad job validate`),
// and the places where those files must agree with the code that reads them.
const REPO = resolve(__dirname, '..', '..', '..');

type Hcl = Record<string, unknown>;

function hclFiles(): string[] {
  return ['jobs', 'hcl'].flatMap((dir) =>
    readdirSync(join(REPO, dir))
      .filter((name) => name.endsWith('.hcl'))
      .map((name) => join(dir, name)),
  );
}

async function load(path: string): Promise<Hcl> {
  return (await parse(path, readFileSync(join(REPO, path), 'utf8'))) as Hcl;
}

/** hcl2json gives every block as a list (and labelled blocks as a map of lists): take the one element. */
function one(value: unknown, what: string): Hcl {
  const list = value as Hcl[] | undefined;
  if (!Array.isArray(list) || list.length !== 1 || list[0] === undefined) throw new Error(`expected one ${what}`);
  return list[0];
}

function tasks(job: Hcl): Hcl[] {
  return Object.values(job.group as Record<string, Hcl[]>).flatMap((groups) =>
    groups.flatMap((group) => Object.values(group.task as Record<string, Hcl[]>).flat()),
  );
}

test('every job and agent file is valid HCL', async () => {
  const files = hclFiles();
  expect(files).toEqual(
    expect.arrayContaining([
      'jobs/chain-sidecar.nomad.hcl',
      'jobs/forecaster.nomad.hcl',
      'jobs/forecaster-retrain.nomad.hcl',
      'jobs/example-counter.nomad.hcl',
      'hcl/client.hcl',
      'hcl/server.hcl',
      'hcl/consul.hcl',
    ]),
  );
  for (const file of files) await expect(load(file)).resolves.toBeInstanceOf(Object);
});

test('the parser refuses broken HCL, so the gate can fail', async () => {
  await expect(parse('broken.hcl', 'job "x" {\n  type = \n}\n')).rejects.toThrow(/Invalid expression/);
});

test('every job file holds exactly one job, named after its file', async () => {
  for (const file of hclFiles().filter((f) => f.startsWith('jobs/') && f.endsWith('.nomad.hcl'))) {
    const jobs = (await load(file)).job as Record<string, unknown>;
    expect([file, Object.keys(jobs)]).toEqual([file, [file.slice('jobs/'.length, -'.nomad.hcl'.length)]]);
  }
});

test('the example service is chained, with a service, a health check and a migrate block', async () => {
  const job = one(((await load('jobs/example-counter.nomad.hcl')).job as Hcl)['example-counter'], 'job');
  const migrate = one(job.migrate, 'migrate');
  expect(migrate).toMatchObject({ health_check: 'checks', max_parallel: 1 });
  const group = one((job.group as Hcl).counter, 'group');
  const service = one(group.service, 'service');
  expect(one(service.check, 'check')).toMatchObject({ type: 'http', path: '/health' });
  const [task] = tasks(job);
  expect(task?.driver).toBe('chain');
  // Nomad rejects unknown task config attributes only at task start: check them against the driver's schema.
  const spec = taskConfigSpec().block;
  const known = spec?.$case === 'object' ? spec.object.attributes.map((entry) => entry.key) : [];
  expect(known.length).toBeGreaterThan(0);
  for (const attribute of Object.keys(one(task?.config, 'config'))) expect(known).toContain(attribute);
});

test('the client\'s plugin "chain" block sets only attributes the plugin\'s ConfigSchema defines', async () => {
  const client = await load('hcl/client.hcl');
  const chain = one((client.plugin as Hcl).chain, 'plugin "chain"');
  const config = one(chain.config, 'config');
  expect(Object.keys(config).sort()).toEqual(Object.keys(PLUGIN_DEFAULTS).sort());
  // The plugin dials the socket the sidecar job serves.
  const sidecarJob = one(((await load('jobs/chain-sidecar.nomad.hcl')).job as Hcl)['chain-sidecar'], 'job');
  const [sidecarTask] = tasks(sidecarJob);
  const env = one(sidecarTask?.env, 'env') as Record<string, string>;
  expect(env.NOMAD_CHAIN_LOCAL_SOCKET).toBe('${var.data_dir}/sidecar.sock');
  const dataDir = one(((await load('jobs/chain-sidecar.nomad.hcl')).variable as Hcl).data_dir, 'variable');
  expect(`${String(dataDir.default)}/sidecar.sock`).toBe(config.sidecar_socket);
});

test("the sidecar job's environment uses only variables the sidecar reads", async () => {
  const job = one(((await load('jobs/chain-sidecar.nomad.hcl')).job as Hcl)['chain-sidecar'], 'job');
  const [task] = tasks(job);
  const env = one(task?.env, 'env') as Record<string, string>;
  const read = rawOptionsFrom(env, undefined);
  expect(Object.keys(read)).toHaveLength(Object.keys(env).length);
});
