import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Allocation, TaskEvent } from '../../common/nomad-api';
import { ConsulProbe } from './consul-probe';
import { JobAllocations } from './job-allocations';
import { GiveUp, type NomadCluster, freePort, waitFor } from './nomad-cluster';
import { attachSharedCluster, releaseSharedCluster } from './shared-cluster';

// Issue 11 item 3 (defect 3): traffic follows a chained service through real Consul. Nomad registers the
// service (provider = "consul") with an HTTP check; a probe reads the Consul server's passing list every
// 50 ms through a drain and sends every listed instance a request at once, as a Consul-routed client would.
// It fails if a listed instance does not answer or the service never passes again; how long nothing was
// listed is a figure printed for the README, not a timed assertion (this machine is shared and slow).
const JOB = 'example-consul';
const SERVICE = 'example-consul';
const TASK = 'web';

let cluster: NomadCluster;
let job: JobAllocations;
const events = (alloc: Allocation) => job.events(alloc);
const messages = (alloc: Allocation) => job.messages(alloc);
const runningAlloc = (predicate?: (a: Allocation) => boolean) => job.running(predicate);

/** The passing instances of the service as the Consul server lists them. */
async function passingIds(): Promise<string[]> {
  const entries = await cluster.consulGet<{ Service: { ID: string } }[]>(`/v1/health/service/${SERVICE}?passing`);
  return entries.map((e) => e.Service.ID);
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

beforeAll(async () => {
  cluster = await attachSharedCluster(__filename);
  job = new JobAllocations(cluster, JOB, TASK);
});

afterAll(() => releaseSharedCluster(cluster));

test('drain: every instance Consul lists as passing answers, and the moved one passes again', async () => {
  const port = await freePort();
  await cluster.runJob(JOB, { port });
  const old = await runningAlloc();
  await waitFor('the service to pass in Consul', 120_000, async () =>
    (await passingIds()).some((id) => id.includes(old.ID)) ? true : undefined,
  );

  const probe = new ConsulProbe(`http://127.0.0.1:${cluster.consulHttpPort}`, SERVICE);
  probe.start();
  let replacement: Allocation;
  let handover: TaskEvent;
  let restored: TaskEvent;
  try {
    // A few reads with the instance listed before the drain, so the gap has a start.
    await waitFor('the probe to see the instance', 60_000, async () =>
      probe.firstListed((id) => id.includes(old.ID)) === undefined ? undefined : true,
    );
    await cluster.api.drainNode(old.NodeID, { deadlineMs: 120_000, meta: { test: 'consul-routing' } });
    replacement = await runningAlloc((a) => a.PreviousAllocation === old.ID);
    expect(replacement.NodeID).not.toBe(old.NodeID);
    handover = await waitFor('the hand-over event on the drained allocation', 120_000, async () => {
      const previous = (await cluster.api.getAllocation(old.ID)).value;
      const failed = messages(previous).find((m) => /Hand-over .* failed|Could not tell/.test(m));
      if (failed !== undefined) throw new GiveUp(failed);
      return events(previous).find((e) => e.DisplayMessage.startsWith('Handed over to allocation'));
    });
    restored = await waitFor('the restore event on the replacement', 120_000, async () => {
      const current = (await cluster.api.getAllocation(replacement.ID)).value;
      const cold = messages(current).find((m) => /started cold/.test(m));
      if (cold !== undefined) throw new GiveUp(cold);
      return events(current).find((e) => e.DisplayMessage.startsWith('Restored from checkpoint'));
    });
    await waitFor('the moved instance to pass in Consul', 120_000, async () =>
      probe.firstListed((id) => id.includes(replacement.ID)) === undefined ? undefined : true,
    );
    // A little more traffic on the moved instance, so a listing that fails right after it passes shows.
    const passedAt = probe.firstListed((id) => id.includes(replacement.ID)) ?? 0;
    await waitFor('a second of reads after the move', 60_000, async () =>
      (probe.samples.at(-1)?.atMs ?? 0) > passedAt + 1000 ? true : undefined,
    );
  } finally {
    await probe.stop();
  }

  const freezeMs = Number(/\(frozen (\d+) ms/.exec(handover.DisplayMessage)?.[1]);
  const handedOverAt = handover.Time / 1e6;
  const restoredAt = restored.Time / 1e6;
  const oldDroppedAt = probe.lastDropped(old.ID);
  // The restored instance, listed by the plugin's stand-in or by Nomad's own registration, whichever first.
  const newPassedAt = probe.firstListed((id) => id.includes(replacement.ID));
  const nomadPassedAt = probe.firstListed((id) => id.startsWith(`_nomad-task-${replacement.ID}`));
  const standInReads = probe.samples.filter((s) => s.ids.some((id) => id.startsWith('nomad-chain-restored-'))).length;
  const gap = probe.longestGap();
  const rel = (t: number | undefined): string => (t === undefined ? '?' : `${Math.round(t - handedOverAt)} ms`);
  print(`[consul-routing] ${probe.samples.length} reads every 50 ms, ${probe.failures.length} unanswered`);
  print(`  ${old.ID.slice(0, 8)} on ${old.NodeName}: ${handover.DisplayMessage}`);
  print(`  ${replacement.ID.slice(0, 8)} on ${replacement.NodeName}: ${restored.DisplayMessage}`);
  print(`  times relative to the hand-over event (end of the freeze):`);
  print(`    old instance no longer listed: ${rel(oldDroppedAt)}; freeze began: ${rel(handedOverAt - freezeMs)}`);
  print(
    `    restored: ${rel(restoredAt)}; new instance listed: ${rel(newPassedAt)} ` +
      `(Nomad's registration passing: ${rel(nomadPassedAt)}; stand-in listed in ${standInReads} reads)`,
  );
  print(
    `  no instance passing for ${gap === undefined ? 0 : gap.ms} ms (${gap?.reads ?? 0} reads); freeze ${freezeMs} ms; ` +
      `restore to passing ${newPassedAt === undefined ? '?' : Math.round(newPassedAt - restoredAt)} ms; ` +
      `out of rotation before the freeze ${oldDroppedAt === undefined ? '?' : Math.round(handedOverAt - freezeMs - oldDroppedAt)} ms`,
  );

  // The plugin's Consul hand-over ran on the target against its real agent and found the service Nomad
  // registered: it listed a stand-in, or found Nomad's own check already passing.
  const bridged = await waitFor("the plugin's Consul hand-over on the target", 60_000, async () => {
    const lines = readFileSync(path.join(cluster.dir, `${replacement.NodeName}.log`), 'utf8')
      .split('\n')
      .filter(
        (line) =>
          line.includes(replacement.ID) && /restored instance (listed ahead of its check|already passing)/.test(line),
      );
    return lines.length === 0 ? undefined : lines;
  });
  print(`  plugin: ${bridged.map((line) => line.replace(/^.*client\.driver_mgr\.chain: /, '')).join(' | ')}`);
  expect(bridged).toHaveLength(1);

  expect(probe.pollErrors).toEqual([]);
  expect(probe.failures).toEqual([]);
  expect(newPassedAt).toBeDefined();
  expect(handover.DisplayMessage).toContain(replacement.ID);
  // Still listed at the end: the moved instance keeps passing.
  expect(probe.samples.at(-1)?.ids.some((id) => id.includes(replacement.ID))).toBe(true);
});
