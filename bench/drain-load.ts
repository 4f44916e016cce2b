import pino from 'pino';
import { errorMessage } from '../common/errors';
import { LoadProbe, type ProbeSummary } from '../local/demo/load-probe';
import type { DrainOutcome } from '../local/controller/local-controller';
import { EXAMPLE_SERVICE, startLocalMode, waitForPort } from '../local/local-mode';
import type { ServiceDefinition } from '../local/controller/service-definition';
import { intFlag, parseFlags, runcContainers, serviceOf } from './cluster-watch';
import { percentile, printVerdict, table } from './report';

// npm run bench:drain -- [-tasks N] [-nodes K] [-targets T] [-concurrency C] [-probe-ms 200] [-json]
// Drain under load (issue #13 item 3): K nodes of a real local cluster each hold N chained copies of the
// example key/value service (each its own service behind HAProxy, its own port), T more nodes have room for
// all of them. All K nodes are drained at once, each moving at most C tasks at a time, while every service
// answers requests through HAProxy. Prints each task's move (freeze, time, when it started) and each drain's
// time; exits 1 when a promise breaks: a task lost or duplicated by runc's view, a failed request, a lost
// acknowledged write.
const USAGE =
  'usage: npm run bench:drain -- [-tasks 20] [-nodes 1] [-targets 2] [-concurrency 4] [-probe-ms 200] [-json]';
const REQUEST_TIMEOUT_MS = 30_000;
const FIRST_PORT = 8081;

interface TaskRow {
  readonly service: string;
  readonly from: string;
  readonly to: string;
  readonly outcome: string;
  readonly freezeMs: number;
  readonly moveMs: number;
  /** When its move was planned, from the drains' start. */
  readonly startedAtMs: number;
  readonly probe: ProbeSummary;
  readonly failures: string[];
}

function services(count: number): ServiceDefinition[] {
  return Array.from({ length: count }, (_, i) => ({
    ...EXAMPLE_SERVICE,
    name: `kv${i + 1}`,
    port: FIRST_PORT + i,
    env: { ...EXAMPLE_SERVICE.env, PORT: String(FIRST_PORT + i) },
  }));
}

async function request(url: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${url}: HTTP ${res.status}`);
  return res;
}

async function main(): Promise<void> {
  const flags = parseFlags(
    process.argv.slice(2),
    { tasks: '20', nodes: '1', targets: '2', concurrency: '4', 'probe-ms': '200', json: 'false' },
    USAGE,
  );
  const perNode = intFlag('tasks', flags.tasks, 1, USAGE);
  const drained = intFlag('nodes', flags.nodes, 1, USAGE);
  const targets = intFlag('targets', flags.targets, 1, USAGE);
  const concurrency = intFlag('concurrency', flags.concurrency, 1, USAGE);
  const probeMs = intFlag('probe-ms', flags['probe-ms'], 1, USAGE);
  const json = flags.json === 'true';
  const say = (line: string): void => {
    if (!json) console.log(line);
  };
  const log = pino({ level: process.env.NOMAD_CHAIN_LOG_LEVEL ?? 'silent' });
  const all = services(perNode * drained);
  const local = await startLocalMode(
    {
      cluster: { nodes: drained + targets, services: all.map((s) => s.name) },
      capacityPerNode: perNode * drained,
      checkpointWaitMs: 300_000,
      drainConcurrency: concurrency,
    },
    log,
  );
  const broken: string[] = [];
  const rows: TaskRow[] = [];
  const drains: { node: string; ms: number; error?: string }[] = [];
  let wholeMs = NaN;
  try {
    const { controller, cluster } = local;
    const sources = cluster.nodes.slice(0, drained).map((n) => n.name);
    const homes = new Map<string, string>();
    // Each source gets its share: every other node is fenced while its services start.
    for (const [d, source] of sources.entries()) {
      for (const n of cluster.nodes) if (n.name !== source) await controller.setEligibility(n.name, false, 'placing');
      const mine = all.slice(d * perNode, (d + 1) * perNode);
      for (let i = 0; i < mine.length; i += 4)
        await Promise.all(mine.slice(i, i + 4).map((s) => controller.runService(s, (x) => waitForPort(x, 120_000))));
      for (const s of mine) homes.set(s.name, source);
      for (const n of cluster.nodes) await controller.setEligibility(n.name, true, 'placed');
      say(`${mine.length} tasks running on ${source}`);
    }
    const url = (s: ServiceDefinition): string => `http://127.0.0.1:${cluster.haproxy.portOf(s.name)}`;
    for (const s of all) await request(`${url(s)}/kv/before`, { method: 'PUT', body: s.name });
    const probes = new Map(all.map((s) => [s.name, new LoadProbe(`${url(s)}/counter`, probeMs, REQUEST_TIMEOUT_MS)]));
    for (const p of probes.values()) p.start();
    await Promise.all([...probes.values()].map((p) => p.answered(2)));

    say(`draining ${sources.join(', ')} at once, at most ${concurrency} moves at a time per node`);
    const started = Date.now();
    const outcomes: DrainOutcome[] = [];
    await Promise.all(
      sources.map(async (node) => {
        const t0 = Date.now();
        try {
          outcomes.push(...(await controller.drainNode(node, 'bench:drain')));
          drains.push({ node, ms: Date.now() - t0 });
        } catch (err) {
          drains.push({ node, ms: Date.now() - t0, error: errorMessage(err) });
          broken.push(`drain of ${node} threw: ${errorMessage(err)}`);
        }
      }),
    );
    wholeMs = Date.now() - started;
    await Promise.all([...probes.values()].map((p) => p.answered(2)));
    const summaries = new Map<string, ProbeSummary>();
    for (const [name, p] of probes) summaries.set(name, await p.stop());

    const containers = await runcContainers(cluster);
    for (const s of all) {
      const failures: string[] = [];
      const outcome = outcomes.find((o) => o.taskKey === s.name);
      const migration = outcome !== undefined && outcome.outcome !== 'stayed' ? outcome.migration : undefined;
      const probe = summaries.get(s.name) as ProbeSummary;
      if (probe.failedRequests > 0) failures.push(`${probe.failedRequests} failed requests`);
      if (!probe.counterContinuous) failures.push('counter not continuous');
      const ours = containers.filter((c) => serviceOf(c.id) === s.name);
      const running = ours.filter((c) => c.status === 'running');
      const placedOn = controller.tasks()[s.name]?.node ?? '?';
      if (running.length !== 1)
        failures.push(`${running.length} running copies (runc): ${running.map((c) => c.node).join(',')}`);
      else if (running[0]?.node !== placedOn)
        failures.push(`runc runs it on ${running[0]?.node}, the controller says ${placedOn}`);
      for (const c of ours.filter((x) => x.status !== 'running')) failures.push(`${c.node}: ${c.id} left ${c.status}`);
      try {
        const value = ((await (await request(`${url(s)}/kv/before`)).json()) as { value?: string }).value;
        if (value !== s.name) failures.push(`acknowledged write reads ${String(value)}`);
      } catch (err) {
        failures.push(`acknowledged write unreadable: ${errorMessage(err)}`);
      }
      if (outcome?.outcome !== 'moved') failures.push(`not moved: ${outcome?.outcome ?? 'no outcome'}`);
      const end =
        migration === undefined ? NaN : (migration.stepsAtUnixMs[migration.step] ?? migration.updatedAtUnixMs);
      rows.push({
        service: s.name,
        from: homes.get(s.name) ?? '?',
        to: placedOn,
        outcome: outcome?.outcome ?? 'none',
        freezeMs: migration?.freezeMs ?? NaN,
        moveMs: migration === undefined ? NaN : end - migration.createdAtUnixMs,
        startedAtMs: migration === undefined ? NaN : migration.createdAtUnixMs - started,
        probe,
        failures,
      });
      // Lost, duplicated, a failed request, a lost write break a promise; a task that stayed or rolled back
      // (and the error that rolled it back) did not: it still runs exactly once, where it was. Both are in the table.
      if (migration?.error !== undefined) failures.push(`${migration.error.code} at ${migration.error.step}`);
      for (const f of failures.filter((x) => !x.startsWith('not moved') && !x.startsWith('NC_')))
        broken.push(`${s.name}: ${f}`);
    }
  } catch (err) {
    broken.push(`bench stopped: ${errorMessage(err)}`);
  } finally {
    // Logs stay when something went wrong, to find out why.
    const keep = broken.length > 0 || rows.some((r) => r.failures.length > 0);
    await local.stop(!keep).catch((err: unknown) => broken.push(`teardown: ${errorMessage(err)}`));
    if (keep) say(`cluster logs kept in ${local.cluster.logDir}`);
  }
  const freezes = rows.map((r) => r.freezeMs).filter(Number.isFinite);
  const result = {
    tasksPerNode: perNode,
    drainedNodes: drained,
    concurrency,
    wholeDrainMs: wholeMs,
    drains,
    moved: rows.filter((r) => r.outcome === 'moved').length,
    tasks: rows.length,
    freezeP50Ms: percentile(freezes, 50),
    freezeMaxMs: Math.max(...freezes),
    failedRequests: rows.reduce((n, r) => n + r.probe.failedRequests, 0),
    requests: rows.reduce((n, r) => n + r.probe.requests, 0),
    rows,
    broken,
  };
  if (json) console.log(JSON.stringify(result));
  else {
    const taskTable = [
      [
        'task',
        'from',
        'to',
        'outcome',
        'started +ms',
        'freeze ms',
        'move ms',
        'client gap ms',
        'requests',
        'failed',
        'notes',
      ],
    ];
    for (const r of rows)
      taskTable.push([
        r.service,
        r.from,
        r.to,
        r.outcome,
        String(r.startedAtMs),
        String(r.freezeMs),
        String(r.moveMs),
        String(r.probe.downtimeMs),
        String(r.probe.requests),
        String(r.probe.failedRequests),
        r.failures.join('; '),
      ]);
    console.log(`\n${table(taskTable)}\n`);
    const drainTable = [['drained node', 'tasks', 'drain ms', 'error']];
    for (const d of drains)
      drainTable.push([d.node, String(rows.filter((r) => r.from === d.node).length), String(d.ms), d.error ?? '']);
    console.log(`${table(drainTable)}\n`);
    console.log(
      `${result.moved} of ${result.tasks} tasks moved; whole drain ${wholeMs} ms (concurrency ${concurrency}); ` +
        `freeze p50 ${result.freezeP50Ms} ms, max ${result.freezeMaxMs} ms; ${result.failedRequests} of ${result.requests} requests failed`,
    );
    printVerdict(broken);
  }
  if (broken.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 2;
});
