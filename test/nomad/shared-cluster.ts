import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../../common/errors';
import type { AllocationListStub, PreemptionConfig } from '../../common/nomad-api';
import { NomadCluster, SIDECAR_JOB, waitFor, type NomadClusterDescriptor } from './nomad-cluster';

// The tier's one cluster (1 server, 2 clients, the sidecar system job), started by Jest's global setup and
// shared by the test files that need no cluster of their own: each start costs 1-2 minutes. Files run one at a
// time (--runInBand); each attaches, checks the cluster is as every file finds it, and puts it back so. The
// forecaster files keep a cluster each (forecaster-harness): they check that nothing ever drained a node
// (LastDrain null), which nodes that other files drained cannot show, and each wires the sidecars' telemetry
// to its own forecaster.

/** Names the descriptor file (NomadCluster.describe()) of the running shared cluster. */
const DESCRIPTOR_ENV = 'NOMAD_CHAIN_TIER_CLUSTER';

/** Nomad's own default, which placeholder-preemption expects and changes. */
const DEFAULT_PREEMPTION: PreemptionConfig = {
  SystemSchedulerEnabled: true,
  SysBatchSchedulerEnabled: false,
  BatchSchedulerEnabled: false,
  ServiceSchedulerEnabled: false,
};

/** Written while a file holds the cluster: a second file at the same time fails instead of sharing it. */
const LOCK = 'in-use';

/** Global setup: starts the cluster and says where its descriptor is (test files inherit the env). */
export async function startSharedCluster(): Promise<void> {
  const cluster = await NomadCluster.create(2);
  try {
    await cluster.start();
    await cluster.waitForHealthyChainDriver(300_000);
  } catch (err) {
    const logs = logTails(cluster);
    await cluster.teardown().catch(() => undefined);
    throw new Error(`the real-Nomad tier's shared cluster did not start: ${errorMessage(err)}\n${logs}`);
  }
  const file = path.join(cluster.dir, 'cluster.json');
  writeFileSync(file, JSON.stringify(cluster.describe()));
  process.env[DESCRIPTOR_ENV] = file;
}

/** Global teardown: stops what startSharedCluster started, if it did. */
export async function stopSharedCluster(): Promise<void> {
  const file = process.env[DESCRIPTOR_ENV];
  if (file === undefined) return;
  delete process.env[DESCRIPTOR_ENV];
  await NomadCluster.attach(JSON.parse(readFileSync(file, 'utf8')) as NomadClusterDescriptor).teardown();
}

/** A test file's beforeAll: the shared cluster, held by this file, checked to be as every file finds it. */
export async function attachSharedCluster(testFile: string): Promise<NomadCluster> {
  const file = process.env[DESCRIPTOR_ENV];
  if (file === undefined) {
    throw new Error(
      `${DESCRIPTOR_ENV} is not set: the nomad project's globalSetup (jest.config.js) starts the cluster`,
    );
  }
  const cluster = NomadCluster.attach(JSON.parse(readFileSync(file, 'utf8')) as NomadClusterDescriptor);
  try {
    writeFileSync(path.join(cluster.dir, LOCK), testFile, { flag: 'wx' });
  } catch {
    const other = readFileSync(path.join(cluster.dir, LOCK), 'utf8');
    throw new Error(`the shared cluster is held by ${other}: the real-Nomad tier runs its files with --runInBand`);
  }
  try {
    await expectAsFound(cluster, 60_000);
  } catch (err) {
    rmSync(path.join(cluster.dir, LOCK), { force: true });
    throw err;
  }
  return cluster;
}

/**
 * A test file's afterAll: purges every job but the sidecars', waits for their allocations to stop and be
 * collected, ends drains, makes every node eligible and drops the project's node meta, restores the default
 * preemption and the sidecar job as the tier ran it, then checks the cluster is as the next file must find it.
 */
export async function releaseSharedCluster(cluster: NomadCluster | undefined): Promise<void> {
  if (cluster === undefined) return;
  try {
    await reset(cluster);
    await expectAsFound(cluster, 300_000);
  } finally {
    rmSync(path.join(cluster.dir, LOCK), { force: true });
  }
}

async function reset(cluster: NomadCluster): Promise<void> {
  for (const job of await otherJobs(cluster)) await cluster.api.deregisterJob(job, { purge: true });
  await waitFor('every test allocation to stop', 180_000, async () => {
    const live = (await otherAllocations(cluster)).filter((a) => /^(running|pending)$/.test(a.ClientStatus));
    if (live.length > 0)
      throw new Error(live.map((a) => `${a.JobID} ${a.ID.slice(0, 8)} ${a.ClientStatus}`).join('; '));
    return true;
  });
  for (const stub of (await cluster.api.listNodes()).value) {
    if (!cluster.clients.some((c) => c.name === stub.Name)) continue;
    const node = (await cluster.api.getNode(stub.ID)).value;
    if (node.DrainStrategy !== null) await cluster.api.cancelDrain(node.ID, { markEligible: true });
    else if (node.SchedulingEligibility !== 'eligible') await cluster.api.setEligibility(node.ID, true);
    const ours = Object.keys((await cluster.api.readNodeMeta(node.ID)).value.Dynamic ?? {}).filter((k) =>
      k.startsWith('nomad_chain.'),
    );
    if (ours.length > 0) await cluster.api.applyNodeMeta(Object.fromEntries(ours.map((k) => [k, null])), node.ID);
  }
  const config = (await cluster.api.schedulerConfiguration()).value.SchedulerConfig;
  if (config === null) throw new Error('Nomad answered no scheduler configuration');
  if (!isDefaultPreemption(config.PreemptionConfig)) {
    await cluster.api.setSchedulerConfiguration(
      { ...config, PreemptionConfig: DEFAULT_PREEMPTION },
      { casIndex: config.ModifyIndex },
    );
  }
  // A re-run with the tier's variables is a no-op unless a file re-ran it with others: then it replaces them.
  const version = async (): Promise<number> =>
    (JSON.parse((await cluster.nomadGet(`/v1/job/${SIDECAR_JOB}`)).body) as { Version: number }).Version;
  const before = await version();
  const replaced = new Set([...(await cluster.sidecarAllocations()).values()].map((a) => a.ID));
  await cluster.runSidecarJob();
  if ((await version()) !== before) await cluster.waitForSidecars(replaced);
  // Stopped allocations of purged jobs stay listed until collected; a file that finds them would read them
  // as its own (the same jobs run in several files).
  await waitFor('Nomad to collect the allocations of purged jobs', 120_000, async () => {
    await cluster.nomad(['system', 'gc']);
    return (await otherAllocations(cluster)).length === 0 ? true : undefined;
  });
}

/** Fails loudly, with the agents' logs, unless the cluster is as every file finds it within `timeoutMs`. */
async function expectAsFound(cluster: NomadCluster, timeoutMs: number): Promise<void> {
  try {
    await waitFor('the shared cluster as every file finds it', timeoutMs, async () => {
      const problems = await findProblems(cluster);
      if (problems.length > 0) throw new Error(problems.join('; '));
      return true;
    });
    await cluster.waitForSidecars();
  } catch (err) {
    throw new Error(`the shared cluster is not as every file must find it: ${errorMessage(err)}\n${logTails(cluster)}`);
  }
}

async function findProblems(cluster: NomadCluster): Promise<string[]> {
  const problems: string[] = [];
  const jobs = await otherJobs(cluster);
  if (jobs.length > 0) problems.push(`jobs left: ${jobs.join(', ')}`);
  const allocs = await otherAllocations(cluster);
  if (allocs.length > 0) {
    problems.push(
      `allocations left: ${allocs.map((a) => `${a.JobID} ${a.ID.slice(0, 8)} ${a.ClientStatus}`).join(', ')}`,
    );
  }
  const nodes = (await cluster.api.listNodes()).value;
  for (const client of cluster.clients) {
    const stub = nodes.find((n) => n.Name === client.name);
    if (stub === undefined) {
      problems.push(`${client.name} is not registered`);
      continue;
    }
    const node = (await cluster.api.getNode(stub.ID)).value;
    const chain = node.Drivers?.chain;
    if (node.Status !== 'ready') problems.push(`${client.name} is ${node.Status}`);
    if (node.SchedulingEligibility !== 'eligible') problems.push(`${client.name} is ${node.SchedulingEligibility}`);
    if (node.DrainStrategy !== null) problems.push(`${client.name} is draining`);
    if (chain?.Detected !== true || !chain.Healthy) problems.push(`${client.name}: chain ${JSON.stringify(chain)}`);
    const meta = Object.keys((await cluster.api.readNodeMeta(node.ID)).value.Dynamic ?? {});
    const ours = meta.filter((k) => k.startsWith('nomad_chain.'));
    if (ours.length > 0) problems.push(`${client.name} has node meta ${ours.join(', ')}`);
  }
  const config = (await cluster.api.schedulerConfiguration()).value.SchedulerConfig;
  if (config === null || !isDefaultPreemption(config.PreemptionConfig)) {
    problems.push(`preemption is ${JSON.stringify(config?.PreemptionConfig)}`);
  }
  return problems;
}

function isDefaultPreemption(config: PreemptionConfig): boolean {
  return (Object.keys(DEFAULT_PREEMPTION) as (keyof PreemptionConfig)[]).every(
    (key) => config[key] === DEFAULT_PREEMPTION[key],
  );
}

async function otherJobs(cluster: NomadCluster): Promise<string[]> {
  const { status, body } = await cluster.nomadGet('/v1/jobs');
  if (status !== 200) throw new Error(`GET /v1/jobs: HTTP ${status} ${body}`);
  return (JSON.parse(body) as { ID: string }[]).map((j) => j.ID).filter((id) => id !== SIDECAR_JOB);
}

async function otherAllocations(cluster: NomadCluster): Promise<AllocationListStub[]> {
  return (await cluster.api.listAllocations()).value.filter((a) => a.JobID !== SIDECAR_JOB);
}

/** Every agent's log, Nomad's and Consul's: a cluster that never formed may have failed in either. */
function logTails(cluster: NomadCluster): string {
  const agents = readdirSync(cluster.dir)
    .filter((file) => file.endsWith('.log'))
    .sort();
  return agents
    .map((file) => `--- ${path.join(cluster.dir, file)} (last 20 lines)\n${cluster.tail(file, 20)}`)
    .join('\n');
}
