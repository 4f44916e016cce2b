import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../../common/errors';
import type { Allocation } from '../../common/nomad-api';
import { httpGet } from '../harness/programs';
import { GiveUp, type NomadCluster, REPO, freePort, waitFor } from './nomad-cluster';
import { attachSharedCluster, releaseSharedCluster } from './shared-cluster';

// The Nomad-mode story against a real Nomad (NOMAD_BIN): one server and two clients on loopback, the chain
// plugin in each client's plugin_dir, a sidecar per client. Steps run in order and share the cluster; the
// drain comes before the client restart so that each step's outcome is its own.
const JOB = 'example-counter';

let cluster: NomadCluster;
let counterPort: number;
let allocId = '';

async function count(): Promise<number> {
  const res = await httpGet(`http://127.0.0.1:${counterPort}/`, 10_000);
  return (JSON.parse(res.body) as { count: number }).count;
}

/**
 * How long each launch of the chain plugin took from process start to the end of its handshake, read from the
 * client agent's own log lines: the loader's launches ("agent.plugin_loader: plugin started: … /chain" then
 * "using plugin") and the long-lived one ("client.driver_mgr: plugin started: driver=chain" then "using plugin").
 */
function pluginLaunches(log: string): number[] {
  const started = new Map<string, number>();
  const durations: number[] = [];
  for (const line of log.split('\n')) {
    const event = /(agent\.plugin_loader|client\.driver_mgr): (plugin started|using plugin): (.*)/.exec(line);
    const [, logger, what, fields] = event ?? [];
    if (logger === undefined || fields === undefined) continue;
    const at = Date.parse(line.trim().split(' ')[0] ?? '');
    const chain = logger === 'client.driver_mgr' ? fields.includes('driver=chain') : true;
    if (what === 'plugin started' && chain && /path=\S+\/chain /.test(fields)) started.set(logger, at);
    const from = started.get(logger);
    if (what === 'using plugin' && chain && from !== undefined) {
      durations.push(at - from);
      started.delete(logger);
    }
  }
  return durations;
}

function taskEvents(alloc: Allocation): string[] {
  return (alloc.TaskStates?.counter?.Events ?? []).map((e) => e.Type);
}

/** Waits for a running allocation matching `predicate`; gives up once a wanted one fails or restarts instead. */
async function runningAlloc(predicate: (a: Allocation) => boolean = () => true): Promise<Allocation> {
  return waitFor(`a running ${JOB} allocation`, 300_000, async () => {
    const { value } = await cluster.api.listAllocations({ filter: `JobID == "${JOB}"` });
    const states: string[] = [];
    let hopeless: string | undefined;
    for (const stub of value) {
      const alloc = (await cluster.api.getAllocation(stub.ID)).value;
      if (!predicate(alloc)) continue;
      if (alloc.ClientStatus === 'running' && alloc.DesiredStatus === 'run') return alloc;
      const line = `${alloc.ID.slice(0, 8)} on ${alloc.NodeName} ${alloc.ClientStatus}/${alloc.DesiredStatus}: ${JSON.stringify(
        alloc.TaskStates?.counter?.Events?.map((e) => e.DisplayMessage) ?? [],
      )}`;
      const failing = alloc.ClientStatus === 'failed' || taskEvents(alloc).includes('Restarting');
      if (alloc.DesiredStatus === 'run' && failing) hopeless = line;
      states.push(line);
    }
    if (hopeless !== undefined) throw new GiveUp(hopeless);
    throw new Error(states.join('; ') || 'no matching allocation yet');
  });
}

beforeAll(async () => {
  cluster = await attachSharedCluster(__filename);
  counterPort = await freePort();
});

afterAll(() => releaseSharedCluster(cluster));

test('jobs/ and hcl/ are nomad-fmt clean', async () => {
  const { stdout } = await cluster.nomad(['fmt', '-check', '-recursive', 'jobs', 'hcl']);
  expect(stdout).toBe('');
});

test('the server validates every job', async () => {
  const jobs = readdirSync(path.join(REPO, 'jobs')).filter((f) => f.endsWith('.nomad.hcl'));
  expect(jobs.length).toBeGreaterThanOrEqual(4);
  for (const job of jobs) {
    const { stdout } = await cluster.nomad(['job', 'validate', path.join('jobs', job)]);
    expect(`${job}: ${stdout}`).toContain('Job validation successful');
  }
});

test('both clients register with the chain driver detected and healthy', async () => {
  const nodes = await cluster.waitForHealthyChainDriver(300_000);
  expect(nodes.map((n) => n.Name).sort()).toEqual(cluster.clients.map((c) => c.name));
  const node = (await cluster.api.getNode(nodes[0]?.ID ?? '')).value;
  expect(node.Attributes?.['driver.chain']).toBe('1');
});

test('ACLs are on: a missing or wrong token is NC_NOMAD_API_ACL_DENIED; the plugin policy reads lineage only', async () => {
  const [node] = (await cluster.api.listNodes()).value;
  if (node === undefined) throw new Error('no client registered');
  const denied = async (call: Promise<unknown>): Promise<unknown> =>
    call.then(
      () => {
        throw new Error('Nomad allowed the call');
      },
      (err: unknown) => err,
    );
  const anonymous = await denied(cluster.apiFor(cluster.serverHttpPort, undefined).getNode(node.ID));
  expect(anonymous).toMatchObject({ code: 'NC_NOMAD_API_ACL_DENIED', status: 403, context: { tokenSent: false } });
  expect(errorMessage(anonymous)).toContain('no ACL token was sent');
  const wrong = await denied(cluster.apiFor(cluster.serverHttpPort, randomUUID()).getNode(node.ID));
  expect(wrong).toMatchObject({ code: 'NC_NOMAD_API_ACL_DENIED', status: 403, context: { tokenSent: true } });
  expect(errorMessage(wrong)).toContain('the ACL token is unknown to Nomad or its policies do not allow this call');

  // The plugin's policy (jobs/chain-plugin.policy.hcl) reads nodes and allocations, and may change nothing.
  const policy = readFileSync(path.join(REPO, 'jobs', 'chain-plugin.policy.hcl'), 'utf8');
  const plugin = cluster.apiFor(cluster.serverHttpPort, await cluster.createToken('plugin-policy-check', policy));
  expect((await plugin.getNode(node.ID)).value.ID).toBe(node.ID);
  await expect(plugin.listAllocations()).resolves.toBeDefined();
  const drain = await denied(plugin.setEligibility(node.ID, false));
  expect(drain).toMatchObject({ code: 'NC_NOMAD_API_ACL_DENIED', context: { detail: 'Permission denied' } });
});

test('common/nomad-api against the real server: blocking read, node meta, eligibility, event stream', async () => {
  const [node] = (await cluster.api.listNodes()).value.filter((n) => n.Name === cluster.clients[0]?.name);
  if (node === undefined) throw new Error('first client not registered');
  const controller = new AbortController();
  const seen: string[] = [];
  const stream = (async () => {
    for await (const frame of cluster.api.events({ topics: { Node: [node.ID] }, signal: controller.signal })) {
      for (const event of frame.Events) {
        seen.push(event.Type);
        if (event.Type === 'NodeDrain') controller.abort();
      }
    }
  })();
  const before = await cluster.api.getNode(node.ID);
  const blocked = cluster.api.getNode(node.ID, { index: before.lastIndex, waitMs: 60_000 });
  // Fencing (ineligible) is what the forecaster does first; Nomad reports it as a NodeDrain event.
  await cluster.api.setEligibility(node.ID, false);
  expect((await blocked).value.SchedulingEligibility).toBe('ineligible');
  await cluster.api.setEligibility(node.ID, true);
  const guard = setTimeout(() => controller.abort(), 60_000);
  await stream;
  clearTimeout(guard);
  expect(seen).toContain('NodeDrain');

  await cluster.api.applyNodeMeta({ 'nomad_chain.test': 'yes' }, node.ID);
  const meta = await cluster.api.readNodeMeta(node.ID);
  expect(meta.value.Dynamic?.['nomad_chain.test']).toBe('yes');
  await cluster.api.applyNodeMeta({ 'nomad_chain.test': null }, node.ID);
  expect((await cluster.api.readNodeMeta(node.ID)).value.Dynamic?.['nomad_chain.test']).toBeUndefined();
});

test('job run: the counter runs under the chain driver and serves', async () => {
  await cluster.runJob(JOB, { service_provider: 'nomad', port: counterPort });
  const alloc = await runningAlloc();
  allocId = alloc.ID;
  const first = await waitFor('the counter to answer', 120_000, count);
  expect(await count()).toBe(first + 1);
  expect(await count()).toBe(first + 2);
});

test('alloc status, logs and signal', async () => {
  const status = await cluster.nomad(['alloc', 'status', allocId]);
  expect(status.stdout).toMatch(/Client Status\s+= running/);
  const before = await count();
  await cluster.nomad(['alloc', 'signal', '-s', 'SIGUSR1', allocId, 'counter']);
  const logs = await waitFor('the signal in the task log', 60_000, async () => {
    const { stdout } = await cluster.nomad(['alloc', 'logs', allocId, 'counter']);
    return stdout.includes(`SIGUSR1 count=${before}`) ? stdout : undefined;
  });
  expect(logs).toContain(`listening on ${counterPort}`);
});

test('drain: the counter moves to the other client with its state', async () => {
  const old = (await cluster.api.getAllocation(allocId)).value;
  const before = await count();
  await cluster.api.drainNode(old.NodeID, { deadlineMs: 120_000, meta: { test: 'nomad-story' } });
  const replacement = await runningAlloc((a) => a.PreviousAllocation === old.ID);
  expect(replacement.NodeID).not.toBe(old.NodeID);
  const previous = (await cluster.api.getAllocation(old.ID)).value;
  expect(previous.NextAllocation).toBe(replacement.ID);
  allocId = replacement.ID;
  const after = await waitFor('the moved counter to answer', 120_000, count);
  expect(after).toBe(before + 1);
});

test('client restart: the task keeps running and is recovered, not restarted', async () => {
  // Whatever the drain did, restart the client that runs the counter now.
  const alloc = await runningAlloc();
  allocId = alloc.ID;
  const client = cluster.clients.find((c) => c.name === alloc.NodeName);
  if (client === undefined) throw new Error(`allocation on unknown node ${alloc.NodeName}`);
  const startsBefore = taskEvents(alloc).filter((t) => t === 'Started').length;
  const before = await count();
  await cluster.stopClient(client);
  // The task lives in the sidecar, not in the Nomad client.
  expect(await count()).toBe(before + 1);
  const logOffset = statSync(client.agent.logPath).size;
  const restartedAt = Date.now();
  cluster.restartClient(client);
  // Issue #11 defect 2: the plugin must be up well within the server's heartbeat grace after every client start.
  const healthyMs = await waitFor('the restarted client to fingerprint a healthy chain driver', 120_000, async () => {
    const node = (await cluster.api.listNodes()).value.find((n) => n.Name === client.name);
    const chain = node?.Drivers?.chain;
    const fresh = chain !== undefined && Date.parse(chain.UpdateTime) > restartedAt;
    return node?.Status === 'ready' && fresh && chain.Healthy ? Date.now() - restartedAt : undefined;
  });
  // Nomad holds an agent's log lines until the agent has started, then writes them at once (seen: the healthy
  // fingerprint read before they were there): read them once the client's own start is logged. The offset
  // counts bytes (the log has multi-byte characters, like the µ of durations), not characters.
  const restartLog = await waitFor("the restarted client's start in its log", 60_000, async () => {
    const text = readFileSync(client.agent.logPath).subarray(logOffset).toString('utf8');
    return text.includes('client: started client') ? text : undefined;
  });
  const launches = pluginLaunches(restartLog);
  // plugin/bin/chain says so when it fell back to the sources (dist/ went stale under the run).
  const fromSources = restartLog.split('chain plugin running from its TypeScript sources').length - 1;
  process.stdout.write(
    `plugin after a client restart: ${launches.length} launches (${fromSources} from sources), handshake ` +
      `${launches.join('/')} ms each; chain driver fingerprinted healthy ${healthyMs} ms after the agent started\n`,
  );
  expect(launches.length).toBeGreaterThanOrEqual(3);
  // The restarted client answers for the allocation only once its task runner holds a driver handle again:
  // recovered (RecoverTask) or, if recovery failed, started anew, which the events below tell apart.
  await waitFor('the restarted client to report task stats', 180_000, async () => {
    const res = await cluster.clientGet(client, `/v1/client/allocation/${allocId}/stats`);
    return res.status === 200 ? true : undefined;
  });
  const after = await waitFor('the restarted client to sync its task state', 60_000, async () => {
    const current = (await cluster.api.getAllocation(allocId)).value;
    if (taskEvents(current).includes('Failed Restoring Task')) {
      throw new GiveUp(
        `recovery failed: ${JSON.stringify(current.TaskStates?.counter?.Events?.map((e) => e.DisplayMessage))}`,
      );
    }
    return current.ModifyIndex > alloc.ModifyIndex || current.AllocModifyIndex > alloc.AllocModifyIndex
      ? current
      : undefined;
  }).catch(async (err: unknown) => {
    if (err instanceof GiveUp) throw err;
    // No state change to sync is what a clean recovery looks like: read the allocation as it stands.
    return (await cluster.api.getAllocation(allocId)).value;
  });
  expect(taskEvents(after)).not.toContain('Failed Restoring Task');
  expect(taskEvents(after).filter((t) => t === 'Started')).toHaveLength(startsBefore);
  expect(after.TaskStates?.counter?.Restarts).toBe(0);
  expect(await count()).toBe(before + 2);
});
