import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Allocation } from '../../common/nomad-api';
import { httpGet } from '../harness/programs';
import { JobAllocations } from './job-allocations';
import { GiveUp, type NomadCluster, freePort, waitFor } from './nomad-cluster';
import { attachSharedCluster, releaseSharedCluster } from './shared-cluster';

// Issue 10, "done when": in Nomad mode a task writing into alloc/data survives a drain with its data. One
// server and two clients (NOMAD_BIN), the chain plugin and a sidecar per client. jobs/example-journal holds
// alloc/data/journal.log open and appends a numbered line every 50 ms; the number lives only in memory, so
// a file that keeps every line while the numbering continues without a gap or a repeat proves that memory
// and file moved together, at the same instant, and that nothing restarted.
const JOB = 'example-journal';
const TASK = 'journal';
const JOURNAL = 'alloc/data/journal.log';

interface JournalStatus {
  seq: number;
  started: number;
}

interface FsEntry {
  Name: string;
  IsDir: boolean;
  Size: number;
  FileMode: string;
}

let cluster: NomadCluster;
let job: JobAllocations;
const messages = (alloc: Allocation) => job.messages(alloc);
const allocsOfJob = () => job.all();
const runningAlloc = (predicate?: (a: Allocation) => boolean) => job.running(predicate);

async function journalStatus(port: number): Promise<JournalStatus> {
  const res = await httpGet(`http://127.0.0.1:${port}/`, 10_000);
  return JSON.parse(res.body) as JournalStatus;
}

/** GET on the server's client file-system API (`nomad alloc fs`), forwarded to the allocation's node. */
async function allocFs(verb: 'cat' | 'ls', allocId: string, file: string): Promise<string> {
  const url = `/v1/client/fs/${verb}/${allocId}?path=${encodeURIComponent(file)}`;
  const { status, body } = await cluster.nomadGet(url);
  if (status !== 200) throw new Error(`GET ${url}: HTTP ${status} ${body}`);
  return body;
}

async function listing(allocId: string, dir: string): Promise<string> {
  const entries = JSON.parse(await allocFs('ls', allocId, dir)) as FsEntry[] | null;
  return (entries ?? []).map((e) => `${e.Name} (${e.FileMode}, ${e.Size} B)`).join(', ');
}

/** The journal's lines as [seq, started]; a torn or foreign line fails the parse loudly. */
function parseJournal(text: string): [number, number][] {
  const lines = text.split('\n');
  if (lines.pop() !== '') throw new Error(`journal does not end with a whole line: ${JSON.stringify(text.slice(-80))}`);
  return lines.map((line) => {
    const match = /^(\d+) (\d+\.\d{6})$/.exec(line);
    if (match === null) throw new Error(`journal line ${JSON.stringify(line)} is not "<seq> <started>"`);
    return [Number(match[1]), Number(match[2])];
  });
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

/**
 * Runs the journal, drains its node, and checks the replacement: restored from the checkpoint, the journal
 * with every line written before the drain and the numbering continuing, one allocation running.
 */
async function drainStory(migrateDisk: boolean): Promise<void> {
  const port = await freePort();
  await cluster.runJob(JOB, { port, migrate_disk: migrateDisk });
  const old = await runningAlloc();
  const before = await waitFor('the journal to pass 40 lines', 120_000, async () => {
    const status = await journalStatus(port);
    return status.seq >= 40 ? status : undefined;
  });
  print(`[ephemeral_disk migrate = ${migrateDisk}] before the drain, on ${old.NodeName}:`);
  print(`  alloc/data: ${await listing(old.ID, 'alloc/data')}`);
  print(`  alloc/logs: ${await listing(old.ID, 'alloc/logs')}`);

  await cluster.api.drainNode(old.NodeID, { deadlineMs: 120_000, meta: { test: 'alloc-data-drain' } });
  const replacement = await runningAlloc((a) => a.PreviousAllocation === old.ID);
  expect(replacement.NodeID).not.toBe(old.NodeID);
  const handover = await waitFor('the hand-over event on the drained allocation', 120_000, async () => {
    const previous = (await cluster.api.getAllocation(old.ID)).value;
    const failed = messages(previous).find((m) => /Hand-over .* failed|Could not tell/.test(m));
    if (failed !== undefined) throw new GiveUp(failed);
    return messages(previous).find((m) => m.startsWith('Driver: Handed over to allocation'));
  });
  print(`  ${old.ID.slice(0, 8)} on ${old.NodeName}: ${handover}`);
  expect(handover).toMatch(
    new RegExp(`Handed over to allocation ${replacement.ID} \\(frozen \\d+ ms, \\d+ bytes sent\\)`),
  );

  // Restored from the drained allocation's checkpoint, not started cold.
  const restored = messages(replacement);
  print(`  ${replacement.ID.slice(0, 8)} on ${replacement.NodeName}: ${JSON.stringify(restored)}`);
  expect(restored.some((m) => m.startsWith(`Driver: Restored from checkpoint`) && m.endsWith(old.ID))).toBe(true);
  expect(restored.filter((m) => /started cold/.test(m))).toEqual([]);

  // The same process (its start time is in memory), and it keeps writing where it left off.
  const after = await waitFor('new lines on the replacement', 120_000, async () => {
    const status = await journalStatus(port);
    return status.seq >= before.seq + 40 ? status : undefined;
  });
  expect(after.started).toBe(before.started);

  // The drained allocation's journal ends at the freeze; the replacement's starts with all of it, and the
  // whole file counts 1, 2, 3, ... from one process: nothing lost, nothing repeated, no restart.
  const oldJournal = await allocFs('cat', old.ID, JOURNAL);
  const journal = await allocFs('cat', replacement.ID, JOURNAL);
  const oldLines = parseJournal(oldJournal);
  const lines = parseJournal(journal);
  print(`  journal: ${oldLines.length} lines on the drained allocation, ${lines.length} on the replacement`);
  expect(oldLines.length).toBeGreaterThanOrEqual(before.seq);
  expect(journal.startsWith(oldJournal)).toBe(true);
  expect(lines.length).toBeGreaterThanOrEqual(after.seq);
  expect(lines.map(([seq]) => seq)).toEqual(lines.map((_, i) => i + 1));
  for (const [, started] of lines) expect(started).toBeCloseTo(before.started, 5);

  const allocs = await allocsOfJob();
  expect(allocs.filter((a) => a.ClientStatus === 'running').map((a) => a.ID)).toEqual([replacement.ID]);
  expect(allocs.filter((a) => a.DesiredStatus === 'run').map((a) => a.ID)).toEqual([replacement.ID]);

  print(`  after the drain, on ${replacement.NodeName}:`);
  print(`    alloc/data: ${await listing(replacement.ID, 'alloc/data')}`);
  print(`    alloc/logs: ${await listing(replacement.ID, 'alloc/logs')}`);
  print(`    drained allocation's alloc/logs: ${await listing(old.ID, 'alloc/logs')}`);
  const target = cluster.clients.find((c) => c.name === replacement.NodeName);
  if (target !== undefined) {
    const migrator = readFileSync(path.join(cluster.dir, `${target.name}.log`), 'utf8')
      .split('\n')
      .filter((line) => line.includes(replacement.ID) && /alloc_migrator|migrat/i.test(line));
    print(`    ${target.name}'s Nomad log on migrating the disk: ${JSON.stringify(migrator)}`);
  }
}

/** Stops the job and makes every node eligible again, so the next story starts from a clean cluster. */
async function resetCluster(): Promise<void> {
  await cluster.nomad(['job', 'stop', '-purge', JOB]).catch(() => undefined);
  await waitFor(`${JOB} to stop`, 120_000, async () =>
    (await allocsOfJob()).every((a) => a.ClientStatus !== 'running' && a.ClientStatus !== 'pending') ? true : undefined,
  );
  for (const node of (await cluster.api.listNodes()).value) {
    if (cluster.clients.some((c) => c.name === node.Name) && node.SchedulingEligibility !== 'eligible') {
      await cluster.api.cancelDrain(node.ID, { markEligible: true });
    }
  }
}

beforeAll(async () => {
  cluster = await attachSharedCluster(__filename);
  job = new JobAllocations(cluster, JOB, TASK);
});

afterAll(() => releaseSharedCluster(cluster));

test('drain: a task writing into alloc/data moves with its file and its memory (ephemeral_disk as default)', async () => {
  await drainStory(false);
});

test('drain with ephemeral_disk { migrate = true }: Nomad copies alloc/data too, and the journal still continues', async () => {
  await resetCluster();
  await drainStory(true);
});
