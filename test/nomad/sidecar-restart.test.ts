import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Allocation } from '../../common/nomad-api';
import { httpGet } from '../harness/programs';
import type { ClientNode } from './nomad-cluster';
import { GiveUp, type NomadCluster, freePort, waitFor } from './nomad-cluster';
import { attachSharedCluster, releaseSharedCluster } from './shared-cluster';

// The sidecar runs as the documented system job (jobs/chain-sidecar.nomad.hcl, raw_exec). Restarting it, as
// an upgrade or `nomad alloc restart` does, must leave chained tasks running, observed (status, logs, exec,
// signal) and stoppable: issue #11 defect 1, where the tasks' shims died with the sidecar's cgroup.
const JOB = 'example-counter';

const execFileAsync = promisify(execFile);
let cluster: NomadCluster;
let counterPort: number;
let allocId = '';
let client: ClientNode;
/** Lines of `nomad alloc logs` seen so far; each check expects new ones. */
let signals = 0;

async function count(): Promise<number> {
  const res = await httpGet(`http://127.0.0.1:${counterPort}/`, 10_000);
  return (JSON.parse(res.body) as { count: number }).count;
}

function events(alloc: Allocation): { type: string; message: string }[] {
  return (alloc.TaskStates?.counter?.Events ?? []).map((e) => ({ type: e.Type, message: e.DisplayMessage }));
}

/** Pids of processes on this host whose environment names `key=value` exactly. */
function pidsWithEnv(key: string, value: string): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`${key}=${value}`)) pids.push(Number(pid));
    } catch {
      // Gone, or a kernel thread.
    }
  }
  return pids;
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => path.join(dir, e.name));
  } catch {
    return [];
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** The pid of the client's sidecar (node running its main.js with this client's data dir). */
function sidecarPid(node: ClientNode): number | undefined {
  return pidsWithEnv('NOMAD_CHAIN_DATA_DIR', node.sidecarDir).find((pid) => cmdline(pid).includes('sidecar/src/main'));
}

/**
 * Everything an operator does with a running task, after the sidecar that runs it was replaced: Nomad still
 * reports it running, it kept its memory (not restarted), a signal reaches it and the log line it writes
 * reaches `nomad alloc logs`, and `nomad alloc exec` runs in it.
 */
async function expectObserved(): Promise<void> {
  const status = await cluster.nomad(['alloc', 'status', allocId]);
  expect(status.stdout).toMatch(/Client Status\s+= running/);
  const before = await waitFor('the counter to answer', 60_000, count);
  expect(await count()).toBe(before + 1);
  const alloc = (await cluster.api.getAllocation(allocId)).value;
  expect(events(alloc).filter((e) => e.type === 'Started')).toHaveLength(1);
  expect(alloc.TaskStates?.counter?.Restarts).toBe(0);

  await cluster.nomad(['alloc', 'signal', '-s', 'SIGUSR1', allocId, 'counter']);
  signals += 1;
  const line = `SIGUSR1 count=${before + 1}`;
  await waitFor(`"${line}" in nomad alloc logs`, 60_000, async () => {
    const { stdout } = await cluster.nomad(['alloc', 'logs', allocId, 'counter']);
    return stdout.includes(line) ? true : undefined;
  });
  const { stdout: logs } = await cluster.nomad(['alloc', 'logs', allocId, 'counter']);
  expect(logs.split('\n').filter((l) => l.startsWith('SIGUSR1 count='))).toHaveLength(signals);

  const exec = await cluster.nomad(['alloc', 'exec', '-task', 'counter', allocId, '/bin/cat', '/proc/1/cmdline']);
  expect(exec.stdout).toContain('counter.py');

  // Stats come from the sidecar that runs the task now (a fresh sample, the task's memory).
  const asked = Date.now();
  const stats = await waitFor('fresh task stats', 60_000, async () => {
    const { status, body } = await cluster.nomadGet(`/v1/client/allocation/${allocId}/stats`, client);
    if (status !== 200) throw new Error(`stats: HTTP ${status} ${body}`);
    const usage = JSON.parse(body) as {
      Tasks?: Record<string, { Timestamp: number; ResourceUsage?: { MemoryStats?: { RSS?: number } } }>;
    };
    const task = usage.Tasks?.counter;
    return task !== undefined && task.Timestamp / 1e6 > asked ? task : undefined;
  });
  expect(stats.ResourceUsage?.MemoryStats?.RSS ?? 0).toBeGreaterThan(0);
}

beforeAll(async () => {
  cluster = await attachSharedCluster(__filename);
  counterPort = await freePort();
});

// Puts the sidecar job back as the tier runs it (this file re-runs it with another log level).
afterAll(() => releaseSharedCluster(cluster));

test('every client runs the built sidecar as an allocation of the chain-sidecar system job', async () => {
  const allocs = await cluster.sidecarAllocations();
  expect([...allocs.keys()].sort()).toEqual(cluster.clients.map((c) => c.name));
  for (const node of cluster.clients) {
    const pid = sidecarPid(node);
    expect(pid).toBeDefined();
    expect(cmdline(pid ?? 0)).toContain('dist/sidecar/src/main.js');
  }
});

test('a chained task runs and is observed', async () => {
  await cluster.runJob(JOB, { service_provider: 'nomad', port: counterPort });
  const alloc = await waitFor(`a running ${JOB} allocation`, 300_000, async () => {
    const { value } = await cluster.api.listAllocations({ filter: `JobID == "${JOB}"` });
    const found = value[0];
    if (found === undefined) return undefined;
    if (found.ClientStatus === 'failed') throw new GiveUp(`${JOB} failed: ${JSON.stringify(found.TaskStates)}`);
    return found.ClientStatus === 'running' ? found : undefined;
  });
  allocId = alloc.ID;
  const node = cluster.clients.find((c) => c.name === alloc.NodeName);
  if (node === undefined) throw new Error(`allocation on unknown node ${alloc.NodeName}`);
  client = node;
  await expectObserved();
});

test('nomad alloc restart of the sidecar: the task keeps running and is still observed', async () => {
  const sidecarAlloc = (await cluster.sidecarAllocations()).get(client.name);
  if (sidecarAlloc === undefined) throw new Error(`no sidecar allocation on ${client.name}`);
  const oldPid = sidecarPid(client);
  await cluster.nomad(['alloc', 'restart', sidecarAlloc.ID, 'sidecar']);
  await waitFor(`a new sidecar process on ${client.name}`, 120_000, async () => {
    const pid = sidecarPid(client);
    return pid !== undefined && pid !== oldPid ? pid : undefined;
  });
  await cluster.waitForSidecars();
  await expectObserved();
});

test('a re-run of the sidecar job with another environment replaces it; the task is still observed', async () => {
  const before = new Set([...(await cluster.sidecarAllocations()).values()].map((a) => a.ID));
  await cluster.runSidecarJob({ log_level: 'info' });
  await cluster.waitForSidecars(before);
  await expectObserved();
});

test('nomad job stop then stops the task cleanly and leaves nothing behind', async () => {
  await cluster.nomad(['job', 'stop', '-detach', JOB]);
  const stopped = await waitFor('the counter allocation to complete', 180_000, async () => {
    const alloc = (await cluster.api.getAllocation(allocId)).value;
    return alloc.ClientStatus === 'complete' || alloc.ClientStatus === 'failed' ? alloc : undefined;
  });
  const seen = events(stopped);
  expect(stopped.ClientStatus).toBe('complete');
  expect(seen.map((e) => e.type)).toContain('Killed');
  // The task's own exit was seen: the stop recorded a made-up exit code 255 once the task was gone.
  const terminated = stopped.TaskStates?.counter?.Events?.find((e) => e.Type === 'Terminated');
  expect(terminated?.Details?.exit_code).toBeDefined();
  expect(terminated?.Details?.exit_code).not.toBe('255');
  expect(seen.filter((e) => /ignored|NC_SIDECAR|Deadline exceeded/i.test(e.message))).toEqual([]);
  await expect(httpGet(`http://127.0.0.1:${counterPort}/`, 2000)).rejects.toThrow();

  // Nothing left behind: no container in the sidecar's runc root, no shim, no cgroup of the task or its shim.
  const runcRoot = path.join(client.sidecarDir, 'runc');
  const { stdout: containers } = await execFileAsync('runc', ['--root', runcRoot, 'list', '-q']);
  expect(containers.trim()).toBe('');
  const shims = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map((p) => cmdline(Number(p)))
    .filter((c) => c.includes('nomad-chain-shim') && c.includes(client.sidecarDir));
  expect(shims).toEqual([]);
  const cgroups = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter(([, mountPoint, type]) => mountPoint?.startsWith('/sys/fs/cgroup') && /^cgroup2?$/.test(type ?? ''))
    .flatMap(([, mountPoint]) => {
      // The sidecar's cgroup parent (its default, /nomad-chain/<node>) and the Nomad client's (cgroup_parent).
      const sidecarParent = path.join(mountPoint ?? '', 'nomad-chain', client.name);
      const clientParent = path.join(mountPoint ?? '', client.name);
      return [
        ...subdirs(sidecarParent),
        ...subdirs(clientParent).filter((dir) => path.basename(dir).includes(allocId)),
      ];
    });
  expect(cgroups).toEqual([]);
  // Once the client collected the allocation (Nomad unmounts its own secrets dir then), nothing holds a mount.
  const gc = await cluster.nomadGet(`/v1/client/allocation/${allocId}/gc`, client);
  expect(gc.status).toBe(200);
  await waitFor(`no mount under allocation ${allocId}'s dir`, 60_000, async () => {
    const left = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .filter((l) => l.includes(`/alloc/${allocId}`));
    if (left.length > 0) throw new Error(left.join('; '));
    return true;
  });
});
