import type { TaskEvent } from '../../common/nomad-api';
import { httpGet } from '../harness/programs';
import { JobAllocations } from './job-allocations';
import { type NomadCluster, freePort, waitFor } from './nomad-cluster';
import { attachSharedCluster, releaseSharedCluster } from './shared-cluster';

// Issue #12 item 2 in Nomad mode, as far as Nomad allows: jobs/example-counter with migration_mode = "lazy".
// Nomad starts a drained allocation's replacement only once the previous allocation's tasks ended, so a
// post-copy source could never serve its pages to it: asked for, the hand-over timed out, the source was
// stopped and the replacement started cold, its count lost. The driver now moves such a task by stop-and-copy:
// the count (in memory only) goes on, and the task event says which mode ran and why.
const JOB = 'example-counter';
const TASK = 'counter';

let cluster: NomadCluster;
let job: JobAllocations;

async function count(port: number): Promise<number> {
  const res = await httpGet(`http://127.0.0.1:${port}/`, 10_000);
  return (JSON.parse(res.body) as { count: number }).count;
}

beforeAll(async () => {
  cluster = await attachSharedCluster(__filename);
  job = new JobAllocations(cluster, JOB, TASK);
});

afterAll(() => releaseSharedCluster(cluster));

test('a task configured for post-copy drains by stop-and-copy with its memory, and its event says why', async () => {
  const port = await freePort();
  await cluster.runJob(JOB, { port, service_provider: 'nomad', migration_mode: 'lazy' });
  const old = await job.running();
  await waitFor('the counter to answer', 120_000, () => count(port));
  let before = 0;
  for (let i = 0; i < 10; i++) before = await count(port);

  await cluster.api.drainNode(old.NodeID, { deadlineMs: 120_000, meta: { test: 'lazy-fallback' } });
  const replacement = await job.running((a) => a.PreviousAllocation === old.ID);
  expect(replacement.NodeID).not.toBe(old.NodeID);

  const handover = await waitFor('the drained allocation to record its hand-over', 120_000, async () => {
    const previous = (await cluster.api.getAllocation(old.ID)).value;
    const event = job.events(previous).find((e: TaskEvent) => e.DisplayMessage.startsWith('Handed over to allocation'));
    if (event === undefined) throw new Error(`no hand-over yet: ${JSON.stringify(job.messages(previous))}`);
    return event;
  });
  const restored = job.messages(replacement);
  process.stdout.write(
    `[lazy-fallback] ${old.ID.slice(0, 8)} on ${old.NodeName}: ${handover.DisplayMessage} ${JSON.stringify(handover.Details)}\n` +
      `  ${replacement.ID.slice(0, 8)} on ${replacement.NodeName}: ${JSON.stringify(restored)}\n`,
  );
  expect(handover.DisplayMessage).toMatch(
    new RegExp(`^Handed over to allocation ${replacement.ID} \\(frozen \\d+ ms, \\d+ bytes sent\\)$`),
  );
  expect(handover.Details?.mode).toBe('stop-and-copy');
  expect(handover.Details?.mode_fallback).toContain('Nomad starts a replacement only after the previous allocation');
  expect(restored.some((m) => m.startsWith('Driver: Restored from checkpoint') && m.endsWith(old.ID))).toBe(true);
  expect(restored.filter((m) => /started cold/.test(m))).toEqual([]);

  const after = await waitFor('the moved counter to answer', 120_000, () => count(port));
  expect(after).toBe(before + 1);
});
