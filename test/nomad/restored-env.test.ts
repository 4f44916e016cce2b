import type { Allocation } from '../../common/nomad-api';
import { httpGet } from '../harness/programs';
import { JobAllocations } from './job-allocations';
import { type NomadCluster, freePort, waitFor } from './nomad-cluster';
import { attachSharedCluster, releaseSharedCluster } from './shared-cluster';

// Issue #11, defect 4: after a drain the CRIU-restored task kept its predecessor's NOMAD_ALLOC_ID (the
// environment is memory, and CRIU restores memory). jobs/example-env serves process.env.NOMAD_ALLOC_ID on each
// request from a Node.js process; after `nomad node drain` the same process (pid, start time and hit count
// carried over) must answer with the replacement allocation's id.
const JOB = 'example-env';
const TASK = 'server';

interface EnvStatus {
  allocId: string;
  shortAllocId: string;
  hits: number;
  pid: number;
  started: number;
}

let cluster: NomadCluster;
let job: JobAllocations;
const messages = (alloc: Allocation) => job.messages(alloc);
const runningAlloc = (predicate?: (a: Allocation) => boolean) => job.running(predicate);

async function status(port: number): Promise<EnvStatus> {
  const res = await httpGet(`http://127.0.0.1:${port}/`, 10_000);
  return JSON.parse(res.body) as EnvStatus;
}

beforeAll(async () => {
  cluster = await attachSharedCluster(__filename);
  job = new JobAllocations(cluster, JOB, TASK);
});

afterAll(() => releaseSharedCluster(cluster));

test('drain: the restored task reads the new allocation’s NOMAD_ALLOC_ID (issue #11)', async () => {
  const port = await freePort();
  await cluster.runJob(JOB, { port });
  const old = await runningAlloc();
  const before = await waitFor('the server to answer', 120_000, () => status(port).catch(() => undefined));
  expect(before.allocId).toBe(old.ID);
  expect(before.shortAllocId).toBe(old.ID.slice(0, 8));

  await cluster.api.drainNode(old.NodeID, { deadlineMs: 120_000, meta: { test: 'restored-env' } });
  const replacement = await runningAlloc((a) => a.PreviousAllocation === old.ID);
  expect(replacement.NodeID).not.toBe(old.NodeID);
  expect(replacement.ID).not.toBe(old.ID);

  // Restored from the drained allocation's checkpoint, not started cold.
  const restored = messages(replacement);
  process.stdout.write(`${replacement.ID.slice(0, 8)} on ${replacement.NodeName}: ${JSON.stringify(restored)}\n`);
  expect(restored.some((m) => m.startsWith('Driver: Restored from checkpoint') && m.endsWith(old.ID))).toBe(true);
  expect(restored.filter((m) => /started cold/.test(m))).toEqual([]);

  const after = await waitFor('the restored server to answer', 120_000, () => status(port).catch(() => undefined));
  // The same process with its memory...
  expect(after.pid).toBe(before.pid);
  expect(after.started).toBe(before.started);
  expect(after.hits).toBeGreaterThan(before.hits);
  // ...reading the replacement's identity from its environment.
  expect(after.allocId).toBe(replacement.ID);
  expect(after.shortAllocId).toBe(replacement.ID.slice(0, 8));
});
