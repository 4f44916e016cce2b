import pino from 'pino';
import { errorMessage } from '../common/errors';
import { GrpcSidecarApi } from '../common/sidecar-api/grpc-sidecar-api';
import { backgroundKey } from '../sidecar/src/background/background-checkpointer';
import { LoadProbe, type ProbeSummary } from '../local/demo/load-probe';
import { EXAMPLE_SERVICE, startLocalMode, waitForPort, type LocalMode } from '../local/local-mode';
import { intFlag, parseFlags, runcContainers, serviceOf, sidecarUsage, type SidecarUsage } from './cluster-watch';
import { percentile, printVerdict, table } from './report';

// npm run soak -- [-migrations N] [-interval 5s] [-probe-ms 20] [-json]
// The soak (issue #13 item 2): the example key/value service moved back and forth between two nodes of a real
// local cluster, N times, each move under load through HAProxy (one request after another to /counter) and
// with background checkpoints on (each node's sidecar checkpoints its tasks to the other every -interval; a move
// starts only once the task has reached its buddy so at least once).
// After every move: runc's view (exactly one running copy, on the node the move reports), every request
// answered, the counter continuous, one acknowledged write more; every few moves, each sidecar's RSS, open
// fds and store size. Prints the moves' freeze p50/p99 and the resource table; exits 1 when a promise breaks.
const USAGE = 'usage: npm run soak -- [-migrations 200] [-interval 5s] [-probe-ms 20] [-json]';
const SERVICE = EXAMPLE_SERVICE.name;
const REQUEST_TIMEOUT_MS = 30_000;
/**
 * After two moves each node has held the task, received it and kept its buddy copy: what a sidecar holds before
 * that is a role not yet played (the first buddy copy, the peer's connection), not a leak.
 */
const WARM_UP_MOVES = 2;

interface Move {
  readonly index: number;
  readonly from: string;
  readonly to: string;
  readonly outcome: string;
  readonly freezeMs: number;
  /** From the move's plan to its last step. */
  readonly moveMs: number;
  readonly probe: ProbeSummary;
  readonly runningCopies: number;
  /** How long after the move its task's first background checkpoint reached the buddy. */
  readonly backgroundMs: number;
  readonly failures: readonly string[];
}

async function put(base: string, key: string, value: string): Promise<void> {
  const res = await fetch(`${base}/kv/${key}`, {
    method: 'PUT',
    body: value,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  if (!res.ok) throw new Error(`PUT ${key}: HTTP ${res.status}`);
}

async function getJson(base: string, path: string): Promise<unknown> {
  const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
  return res.json();
}

/** Restarts both sidecars so each checkpoints its tasks to the other in the background (the buddy). */
async function backgroundCheckpointsOn(local: LocalMode, interval: string, apis: Map<string, GrpcSidecarApi>) {
  const [a, b] = local.cluster.nodes;
  if (a === undefined || b === undefined) throw new Error('the soak needs two nodes');
  const transfer = new Map<string, string>();
  for (const n of [a, b]) transfer.set(n.name, (await apis.get(n.name)?.features())?.transferAddress ?? '');
  for (const [self, buddy] of [
    [a.name, b.name],
    [b.name, a.name],
  ] as const) {
    await local.cluster.killSidecar(self);
    await local.cluster.restartNode(self, {
      sidecarEnv: {
        NOMAD_CHAIN_BACKGROUND_INTERVAL: interval,
        NOMAD_CHAIN_BACKGROUND_BUDDY: transfer.get(buddy) ?? '',
      },
    });
  }
}

/** Resolves once the buddy holds a background checkpoint of the task: proof they are on, not just configured. */
async function firstBackgroundCheckpoint(buddy: GrpcSidecarApi, taskId: string, waitMs: number): Promise<void> {
  const found = await buddy.findCheckpoint({ handoverKey: backgroundKey(taskId), waitMs });
  if (!found.found) throw new Error(`no background checkpoint of ${taskId} on its buddy within ${waitMs} ms`);
}

/** A sidecar's usage after a move, and the plain size of the task's background checkpoint it holds (0: none). */
interface Sample {
  readonly after: number;
  readonly usage: SidecarUsage[];
  readonly heldBytes: ReadonlyMap<string, number>;
}

const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;

/**
 * What a sidecar holds that grew all along: a count that never went down between samples from the warm-up on
 * and ended higher than it started is a leak the soak reports (RSS is only shown: a garbage collector makes it
 * wander).
 */
function grown(all: readonly Sample[]): string[] {
  const found: string[] = [];
  const samples = all.filter((s) => s.after >= WARM_UP_MOVES);
  const nodes = samples[0]?.usage.map((u) => u.node) ?? [];
  const metrics = [
    ['open fds', (u: SidecarUsage) => u.fds],
    ['store files', (u: SidecarUsage) => u.storeFiles],
    ['store MiB', (u: SidecarUsage) => mib(u.storeBytes)],
  ] as const;
  for (const node of nodes) {
    for (const [name, read] of metrics) {
      const values = samples
        .map((s) => s.usage.find((u) => u.node === node))
        .map((u) => (u === undefined ? 0 : read(u)));
      const first = values[0] ?? 0;
      const last = values[values.length - 1] ?? 0;
      if (values.length > 2 && last > first && values.every((v, i) => i === 0 || v >= (values[i - 1] ?? 0))) {
        // A store that holds the task's background checkpoint grows with the task itself: say by how much.
        const held = samples.map((s) => mib(s.heldBytes.get(node) ?? 0));
        const withTask = name === 'store MiB' ? ` (the task's checkpoint it holds: ${held.join(' -> ')} MiB)` : '';
        found.push(`${node}: ${name} grew from ${first} to ${last} and never went down${withTask}`);
      }
    }
  }
  return found;
}

function usageRows(samples: readonly Sample[]): string[][] {
  const rows = [
    ['after move', 'node', 'RSS MiB', 'fds', 'store MiB', 'store files', 'alloc dirs', 'task ckpt held MiB'],
  ];
  for (const s of samples)
    for (const u of s.usage)
      rows.push([
        String(s.after),
        u.node,
        (u.rssKiB / 1024).toFixed(1),
        String(u.fds),
        (u.storeBytes / 2 ** 20).toFixed(1),
        String(u.storeFiles),
        String(u.allocDirs),
        mib(s.heldBytes.get(u.node) ?? 0).toFixed(1),
      ]);
  return rows;
}

async function main(): Promise<void> {
  const flags = parseFlags(
    process.argv.slice(2),
    { migrations: '200', interval: '5s', 'probe-ms': '20', json: 'false' },
    USAGE,
  );
  const migrations = intFlag('migrations', flags.migrations, 1, USAGE);
  const probeMs = intFlag('probe-ms', flags['probe-ms'], 1, USAGE);
  const json = flags.json === 'true';
  const backgroundWaitMs = 60_000;
  const say = (line: string): void => {
    if (!json) console.log(line);
  };
  const log = pino({ level: process.env.NOMAD_CHAIN_LOG_LEVEL ?? 'silent' });
  const started = Date.now();
  const local = await startLocalMode(
    { cluster: { nodes: 2, services: [SERVICE] }, capacityPerNode: 2, checkpointWaitMs: 120_000 },
    log,
  );
  const apis = new Map(
    local.cluster.nodes.map((n) => [n.name, new GrpcSidecarApi({ socketPath: n.localSocket, timeoutMs: 60_000 })]),
  );
  const moves: Move[] = [];
  const samples: Sample[] = [];
  const broken: string[] = [];
  try {
    await backgroundCheckpointsOn(local, flags.interval, apis);
    const placed = await local.controller.runService(EXAMPLE_SERVICE, (i) => waitForPort(i));
    const buddy = local.cluster.nodes.find((n) => n.name !== placed.node)?.name ?? '';
    await firstBackgroundCheckpoint(apis.get(buddy) as GrpcSidecarApi, placed.taskId, backgroundWaitMs);
    const base = `http://127.0.0.1:${local.cluster.haproxy.portOf(SERVICE)}`;
    await put(base, 'start', 'acknowledged');
    const acknowledged = ['start'];
    const sample = async (after: number): Promise<void> => {
      const key = backgroundKey(local.controller.tasks()[SERVICE]?.taskId ?? '');
      const heldBytes = new Map<string, number>();
      for (const n of local.cluster.nodes) {
        const held = await (apis.get(n.name) as GrpcSidecarApi).findCheckpoint({ handoverKey: key, waitMs: 0 });
        heldBytes.set(n.name, held.checkpoint?.sizeBytes ?? 0);
      }
      samples.push({
        after,
        usage: await Promise.all(local.cluster.nodes.map((n) => sidecarUsage(local.cluster, n.name))),
        heldBytes,
      });
    };
    await sample(0);
    say(`cluster ${local.cluster.id} up, ${SERVICE} on ${placed.node}, background checkpoints every ${flags.interval}`);
    const sampleEvery = Math.max(1, Math.floor(migrations / 10));
    let lastCounter = 0;
    for (let i = 1; i <= migrations; i++) {
      const failures: string[] = [];
      const from = local.controller.tasks()[SERVICE]?.node ?? '?';
      const probe = new LoadProbe(`${base}/counter`, probeMs, REQUEST_TIMEOUT_MS);
      probe.start();
      await probe.answered(3);
      let outcome = 'error';
      let freezeMs = NaN;
      let moveMs = NaN;
      try {
        const moved = await local.controller.migrateTask(SERVICE);
        outcome = moved.outcome;
        if (moved.outcome !== 'stayed') {
          freezeMs = moved.migration.freezeMs ?? NaN;
          const end = moved.migration.stepsAtUnixMs[moved.migration.step] ?? moved.migration.updatedAtUnixMs;
          moveMs = end - moved.migration.createdAtUnixMs;
          if (moved.migration.error !== undefined)
            failures.push(`${moved.migration.error.code} at ${moved.migration.error.step}`);
        }
      } catch (err) {
        failures.push(`migration threw: ${errorMessage(err)}`);
      }
      await probe.answered(3);
      const summary = await probe.stop();
      if (summary.failedRequests > 0) failures.push(`${summary.failedRequests} failed requests`);
      if (!summary.counterContinuous) failures.push('counter not continuous');
      if (summary.lastCounter <= lastCounter) failures.push(`counter ${summary.lastCounter} not past ${lastCounter}`);
      lastCounter = summary.lastCounter;
      try {
        await put(base, `m${i}`, String(i));
        acknowledged.push(`m${i}`);
      } catch (err) {
        failures.push(`write failed: ${errorMessage(err)}`);
      }
      const to = local.controller.tasks()[SERVICE]?.node ?? '?';
      // The next move starts only once the moved task has been checkpointed in the background at least once,
      // so every move meets a task whose background checkpoints run (and may overlap the move's own dump).
      const taskId = local.controller.tasks()[SERVICE]?.taskId ?? '';
      const buddyOfTo = local.cluster.nodes.find((n) => n.name !== to)?.name ?? '';
      const waited = Date.now();
      try {
        await firstBackgroundCheckpoint(apis.get(buddyOfTo) as GrpcSidecarApi, taskId, backgroundWaitMs);
      } catch (err) {
        failures.push(errorMessage(err));
      }
      const backgroundMs = Date.now() - waited;
      const ours = (await runcContainers(local.cluster)).filter((c) => serviceOf(c.id) === SERVICE);
      const running = ours.filter((c) => c.status === 'running');
      if (running.length !== 1)
        failures.push(`${running.length} running copies (runc): ${running.map((c) => c.node).join(',')}`);
      else if (running[0]?.node !== to) failures.push(`runc runs it on ${running[0]?.node}, the controller says ${to}`);
      for (const c of ours.filter((x) => x.status !== 'running')) failures.push(`${c.node}: ${c.id} left ${c.status}`);
      const move: Move = {
        index: i,
        from,
        to,
        outcome,
        freezeMs,
        moveMs,
        probe: summary,
        runningCopies: running.length,
        backgroundMs,
        failures,
      };
      moves.push(move);
      if (json) process.stdout.write(`${JSON.stringify(move)}\n`);
      else
        say(
          `[${i}/${migrations}] ${from} -> ${to} ${outcome}: freeze ${freezeMs} ms, client gap ${summary.downtimeMs} ms, ` +
            `move ${moveMs} ms, ${summary.requests} requests, background checkpoint after ${backgroundMs} ms${failures.length > 0 ? `  BROKEN: ${failures.join('; ')}` : ''}`,
        );
      if (i % sampleEvery === 0 || i === migrations || i === WARM_UP_MOVES) await sample(i);
    }
    const keys = (await getJson(base, '/keys')) as Record<string, string>;
    const missing = acknowledged.filter((k) => keys[k] === undefined);
    if (missing.length > 0) broken.push(`acknowledged writes lost: ${missing.join(',')}`);
  } catch (err) {
    broken.push(`soak stopped: ${errorMessage(err)}`);
  } finally {
    for (const api of apis.values()) api.close();
    // Logs stay when something went wrong, to find out why.
    const keep = broken.length > 0 || moves.some((m) => m.failures.length > 0);
    await local.stop(!keep).catch((err: unknown) => broken.push(`teardown: ${errorMessage(err)}`));
    if (keep) say(`cluster logs kept in ${local.cluster.logDir}`);
  }
  for (const m of moves) for (const f of m.failures) broken.push(`move ${m.index}: ${f}`);
  broken.push(...grown(samples));
  const freezes = moves.map((m) => m.freezeMs).filter(Number.isFinite);
  const gaps = moves.map((m) => m.probe.downtimeMs);
  const moved = moves.filter((m) => m.outcome === 'moved').length;
  const summary = {
    migrations: moves.length,
    moved,
    lostOrDuplicated: moves.filter((m) => m.runningCopies !== 1).length,
    failedRequests: moves.reduce((n, m) => n + m.probe.failedRequests, 0),
    requests: moves.reduce((n, m) => n + m.probe.requests, 0),
    freezeP50Ms: percentile(freezes, 50),
    freezeP99Ms: percentile(freezes, 99),
    clientGapP50Ms: percentile(gaps, 50),
    clientGapP99Ms: percentile(gaps, 99),
    movesP50Ms: percentile(moves.map((m) => m.moveMs).filter(Number.isFinite), 50),
    elapsedS: Math.round((Date.now() - started) / 1000),
    samples,
    broken,
  };
  if (json) console.log(JSON.stringify(summary));
  else {
    console.log(
      `\n${table([
        [
          'migrations',
          'moved',
          'lost/dup (runc)',
          'requests',
          'failed',
          'freeze p50',
          'freeze p99',
          'client gap p50',
          'client gap p99',
          'move p50',
          'elapsed',
        ],
        [
          summary.migrations,
          summary.moved,
          summary.lostOrDuplicated,
          summary.requests,
          summary.failedRequests,
          `${summary.freezeP50Ms} ms`,
          `${summary.freezeP99Ms} ms`,
          `${summary.clientGapP50Ms} ms`,
          `${summary.clientGapP99Ms} ms`,
          `${summary.movesP50Ms} ms`,
          `${summary.elapsedS} s`,
        ],
      ])}\n`,
    );
    console.log(`${table(usageRows(samples))}\n`);
    printVerdict(broken);
  }
  if (broken.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 2;
});
