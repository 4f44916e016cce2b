import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Allocation } from '../../common/nomad-api';
import type { TestModel } from '../fixtures/forecaster/test-model';
import {
  RESERVE_PREFIX,
  forecasterSidecarTls,
  runForecaster,
  startJournalCluster,
  stopJournalCluster,
  type ForecasterRun,
  type JournalCluster,
} from './forecaster-harness';
import { allocationsOf } from './job-allocations';
import { GiveUp, REPO, freePort, waitFor, type NomadCluster } from './nomad-cluster';

// Issue 12, item 3: pre-staging in Nomad mode. A spot notice on the node running jobs/example-journal makes
// the forecaster (ACL token of jobs/forecaster.policy.hcl) fence, reserve and, before it drains, ask the
// journal's sidecar over its transfer port (mutual TLS, the forecaster's own certificate of the sidecars' CA)
// to copy the running task to the node its placeholder landed on. The drain's hand-over then sends only what
// the pre-staged copy lacks: fewer bytes than the checkpoint, and fewer than the pre-stage's own first send.

interface StagedTask {
  alloc: string;
  task: string;
  target: string;
  checkpointBytes: number;
  wireBytes: number;
}

let journal: JournalCluster | undefined;
let cluster: NomadCluster;
let model: TestModel;
let telemetryAddress: string;
let old: Allocation;
let run: ForecasterRun | undefined;

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

function started(): JournalCluster {
  if (journal === undefined) throw new Error('the journal cluster exists only once beforeAll ran');
  return journal;
}

const messages = (alloc: Allocation): string[] => started().journal.messages(alloc);
const allocsOf = (jobId: string): Promise<Allocation[]> => allocationsOf(cluster, jobId);
const runningAlloc = (predicate?: (a: Allocation) => boolean): Promise<Allocation> =>
  started().journal.running(predicate);

beforeAll(async () => {
  journal = await startJournalCluster();
  ({ cluster, model, telemetryAddress, first: old } = journal);
  const read = (await cluster.api.schedulerConfiguration()).value.SchedulerConfig;
  if (read === null) throw new Error('Nomad answered no scheduler configuration');
  await cluster.api.setSchedulerConfiguration(
    { ...read, PreemptionConfig: { ...read.PreemptionConfig, ServiceSchedulerEnabled: true } },
    { casIndex: read.ModifyIndex },
  );
});

afterAll(() => stopJournalCluster(journal, run === undefined ? [] : [run]));

test('a spot notice pre-stages the journal on its reserved node before the drain, whose hand-over then sends less than the checkpoint', async () => {
  const token = await cluster.createToken(
    'forecaster',
    readFileSync(path.join(REPO, 'jobs', 'forecaster.policy.hcl'), 'utf8'),
  );
  const httpPort = await freePort();
  run = runForecaster(
    cluster,
    'forecaster-prestage',
    {
      NOMAD_ADDR: cluster.env.NOMAD_ADDR ?? '',
      NOMAD_CACERT: cluster.nomadCaFile,
      NOMAD_TOKEN: token,
      NOMAD_CHAIN_FORECASTER_MODEL_DIR: model.dir,
      NOMAD_CHAIN_FORECASTER_TELEMETRY_PORT: telemetryAddress.split(':')[1] ?? '',
      NOMAD_CHAIN_FORECASTER_HTTP_PORT: String(httpPort),
      NOMAD_CHAIN_FORECASTER_TICK: '1s',
      ...(await forecasterSidecarTls(cluster, 'nomad-chain-forecaster')),
    },
    // Risk alone never fences (both clients share this host's load): the notice is the one signal.
    { telemetryAddress: '127.0.0.1', httpAddress: '127.0.0.1', policy: { enterThreshold: 1, exitThreshold: 0.99 } },
  );
  const forecaster = run;
  const a = old.NodeName;
  const other = cluster.clients.find((c) => c.name !== a);
  if (other === undefined) throw new Error('expected two clients');
  // The cloud announces the journal's node goes in 5 minutes: room for a pre-stage before the drain.
  started()
    .imds.get(a)
    ?.interrupt(Date.now() + 5 * 60_000);

  await waitFor(`the forecaster's drain of ${a} carried out`, 300_000, async () => {
    if (forecaster.child.exitCode !== null)
      throw new GiveUp(`forecaster exited ${forecaster.child.exitCode}: ${forecaster.stderr.join('')}`);
    const failed = forecaster.lines.find((l) => l.msg === 'decision could not be carried out');
    if (failed !== undefined) throw new GiveUp(JSON.stringify(failed));
    return forecaster.lines.find((l) => l.msg === 'decision carried out' && l.action === 'drain' && l.node === a);
  });
  const lines = forecaster.lines;
  const prestaged = lines.findIndex((l) => l.msg === 'checkpoints pre-staged');
  const summary = lines[prestaged];
  print(`forecaster pre-stage: ${JSON.stringify(summary)}`);
  expect(lines.filter((l) => l.msg === 'pre-stage failed: the drain will move the tasks anyway')).toEqual([]);
  // Pre-staged on the placeholder's node, before the drain was asked for.
  const reserved = lines.findIndex((l) => l.msg === 'capacity reserved');
  const drained = lines.findIndex((l) => l.msg === 'decision carried out' && l.action === 'drain');
  expect(reserved).toBeGreaterThanOrEqual(0);
  expect(prestaged).toBeGreaterThan(reserved);
  expect(drained).toBeGreaterThan(prestaged);
  expect(summary).toMatchObject({ node: a, reservation: `${RESERVE_PREFIX}${a}`, failed: 0, unplaced: [] });
  const staged = (summary?.staged ?? []) as StagedTask[];
  expect(staged).toEqual([
    {
      alloc: old.ID,
      task: started().journal.task,
      target: other.name,
      checkpointBytes: expect.any(Number) as number,
      wireBytes: expect.any(Number) as number,
    },
  ]);
  const [copy] = staged as [StagedTask];
  const placeholder = await waitFor('the placeholder allocation', 120_000, async () =>
    (await allocsOf(`${RESERVE_PREFIX}${a}`)).find((p) => p.NodeName === other.name),
  );
  expect(placeholder.Job?.Meta).toMatchObject({ 'nomad_chain.reserved_for': old.NodeID });

  // The drain hands the journal over to a replacement on the pre-staged node; the hand-over's send is small.
  const replacement = await runningAlloc((x) => x.PreviousAllocation === old.ID);
  expect(replacement.NodeName).toBe(other.name);
  const handover = await waitFor('the hand-over event on the drained allocation', 120_000, async () => {
    const previous = (await cluster.api.getAllocation(old.ID)).value;
    const failed = messages(previous).find((m) => /Hand-over .* failed|Could not tell/.test(m));
    if (failed !== undefined) throw new GiveUp(failed);
    return messages(previous).find((m) => m.startsWith('Driver: Handed over to allocation'));
  });
  const sent = /\(frozen (\d+) ms, (\d+) bytes sent\)/.exec(handover);
  expect(sent).not.toBeNull();
  const handoverBytes = Number(sent?.[2]);
  print(
    `pre-stage of ${old.ID.slice(0, 8)} to ${other.name}: checkpoint ${copy.checkpointBytes} bytes, ` +
      `${copy.wireBytes} sent; drain's hand-over: ${handover.replace('Driver: ', '')}`,
  );
  expect(handoverBytes).toBeLessThan(copy.checkpointBytes);
  expect(handoverBytes).toBeLessThan(copy.wireBytes);
  const restored = await waitFor("the replacement's restore event", 120_000, async () => {
    const now = messages((await cluster.api.getAllocation(replacement.ID)).value);
    const cold = now.find((m) => /started cold/.test(m));
    if (cold !== undefined) throw new GiveUp(cold);
    return now.find((m) => m.startsWith('Driver: Restored from checkpoint'));
  });
  expect(restored).toMatch(new RegExp(`of allocation ${old.ID}$`));
});
