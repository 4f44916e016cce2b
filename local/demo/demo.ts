import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireString } from '../../common/config';
import { ConfigError } from '../../common/config-error';
import { makeWorkDir } from '../cluster/work-dir';
import { errorCode, errorMessage } from '../../common/errors';
import { createRootLogger } from '../../common/logging';
import { TaskState } from '../../proto/gen/chain/v1/sidecar';
import type { MigrationRecord } from '../migration/migration-record';
import { LoadProbe } from './load-probe';
import { EXAMPLE_SERVICE, startLocalMode, waitForPort, type LocalMode } from '../local-mode';
import { formatReport, runReplay, type ReplayReport } from '../replay/replay-command';

// Fast through quiet hours, slow enough around held-out pre-emptions for a migration to fit in a notice.
const DEMO_REPLAY = { speed: 600, eventSpeed: 20, nodes: 4, services: 3 } as const;

const USAGE = `Usage: npm run demo -- [-json] [-replay TRACE]

Runs the whole story once in local mode: starts a stateful key/value service on a local cluster, puts load
on it through HAProxy, drains its node, and prints the outcome beside the baseline (the same service
cold-restarted on another node, as Nomad's own drivers would). -json prints one JSON object instead.
-replay TRACE then replays a pre-emption trace with the forecaster and with the reactive baseline (as
npm start -- -replay TRACE -speed ${DEMO_REPLAY.speed} -event-speed ${DEMO_REPLAY.eventSpeed}) and prints its table too.
The real-Nomad story is npm run test:nomad (it needs NOMAD_BIN).
`;

export interface Outcome {
  readonly stateIntact: boolean;
  readonly downtimeMs: number;
  readonly failedRequests: number;
  readonly worstLatencyMs: number;
  readonly routerFollowed: boolean;
  readonly requests: number;
  readonly from: string;
  readonly to: string;
}

const KEYS = 50;

/** What the chained move carried and where its time went, from its migration record. */
interface MovedBytes {
  /** From the task's stop until the target held its checkpoint (the source's dump and ship). */
  readonly freezeMs: number;
  /** Journaled steps: leaving rotation to the checkpoint on the target, to the restored task, to back in rotation. */
  readonly handOverMs: number;
  readonly restoreMs: number;
  readonly outOfRotationMs: number;
  readonly memoryBytes: number;
  readonly fileBytes: number;
  readonly wireBytes: number;
}

function movedBytes(record: MigrationRecord): MovedBytes {
  const fileBytes = record.fileBytes ?? 0;
  const at = record.stepsAtUnixMs;
  const between = (from: number | undefined, to: number | undefined): number =>
    from === undefined || to === undefined ? 0 : to - from;
  return {
    freezeMs: record.freezeMs ?? 0,
    handOverMs: between(at['left-rotation'], at['handed-over']),
    restoreMs: between(at['handed-over'], at.restored),
    outOfRotationMs: between(at['left-rotation'], at['joined-rotation']),
    memoryBytes: (record.checkpointBytes ?? 0) - fileBytes,
    fileBytes,
    wireBytes: record.wireBytes ?? 0,
  };
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}

async function http(url: string, method = 'GET', body?: string): Promise<string> {
  const res = await fetch(url, { method, ...(body !== undefined ? { body } : {}) });
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status}`);
  return res.text();
}

async function seed(base: string): Promise<void> {
  for (let i = 0; i < KEYS; i++) await http(`${base}/kv/key${i}`, 'PUT', `value-${i}-${'x'.repeat(i)}`);
}

async function keysIntact(base: string): Promise<boolean> {
  const keys = JSON.parse(await http(`${base}/keys`)) as Record<string, string>;
  return Array.from({ length: KEYS }, (_, i) => keys[`key${i}`] === `value-${i}-${'x'.repeat(i)}`).every(Boolean);
}

async function servedFrom(base: string): Promise<string[]> {
  return (JSON.parse(await http(`${base}/whoami`)) as { addresses: string[] }).addresses;
}

async function measure(
  local: LocalMode,
  move: () => Promise<{ from: string; to: string; moved: boolean }>,
): Promise<Outcome> {
  const base = `http://127.0.0.1:${local.cluster.haproxy.portOf(EXAMPLE_SERVICE.name)}`;
  await seed(base);
  const probe = new LoadProbe(`${base}/counter`);
  probe.start();
  await new Promise((r) => setTimeout(r, 1500));
  const { from, to, moved } = await move();
  await new Promise((r) => setTimeout(r, 1500));
  const load = await probe.stop();
  const target = local.cluster.node(to).address;
  return {
    stateIntact: moved && load.counterContinuous && (await keysIntact(base)),
    downtimeMs: load.downtimeMs,
    failedRequests: load.failedRequests,
    worstLatencyMs: load.worstLatencyMs,
    routerFollowed: (await servedFrom(base)).includes(target),
    requests: load.requests,
    from,
    to,
  };
}

/** Nomad's own drivers on a drain: stop the old task, start a fresh one elsewhere, state lost. */
async function coldRestart(local: LocalMode): Promise<{ from: string; to: string; moved: boolean }> {
  const task = local.controller.tasks()[EXAMPLE_SERVICE.name];
  if (task === undefined) throw new Error('the demo service is not running');
  const target = (await local.controller.nodes()).find((n) => n.name !== task.node && n.healthy);
  if (target === undefined) throw new Error('no other node for the baseline');
  const restarted = await local.controller.coldRestart(EXAMPLE_SERVICE.name, target.name, (i) => waitForPort(i));
  return { from: task.node, to: restarted.node, moved: true };
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.some((a) => a === '-h' || a === '-help' || a === '--help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  let json = false;
  let trace: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '-nomad' || arg === '--nomad') {
      throw new ConfigError(
        arg,
        'the demo runs local mode only; the Nomad-mode story is npm run test:nomad (NOMAD_BIN=…)',
      );
    }
    if (arg === '-json' || arg === '--json') json = true;
    else if (arg === '-replay' || arg === '--replay') trace = requireString(arg, argv[++i]);
    else throw new ConfigError(arg, 'unknown option (see npm run demo -- -help)');
  }
  const say = (line: string): void => {
    if (!json) process.stdout.write(`${line}\n`);
  };
  const logFile = join(tmpdir(), `nomad-chain-demo-${process.pid}.log`);
  const log = createRootLogger({ level: process.env.NOMAD_CHAIN_LOG_LEVEL ?? 'info', file: logFile });
  say('==> Starting a local cluster of 3 nodes');
  const local = await startLocalMode({ cluster: { nodes: 3, services: [EXAMPLE_SERVICE.name] } }, log);
  let chained: Outcome;
  let baseline: Outcome;
  let restoredState: boolean;
  let moved: MovedBytes | undefined;
  try {
    const placed = await local.controller.runService(EXAMPLE_SERVICE, (i) => waitForPort(i));
    say(
      `==> Service "${EXAMPLE_SERVICE.name}" running on ${placed.node}; ${KEYS} keys written, load on, draining ${placed.node}`,
    );
    chained = await measure(local, async () => {
      const [outcome] = await local.controller.drainNode(placed.node, 'demo');
      if (outcome !== undefined && outcome.outcome !== 'stayed') moved = movedBytes(outcome.migration);
      const to = local.controller.tasks()[EXAMPLE_SERVICE.name]?.node ?? placed.node;
      return { from: placed.node, to, moved: outcome?.outcome === 'moved' };
    });
    say(`==> Baseline: the same service cold-restarted on another node`);
    await local.controller.setEligibility(placed.node, true, 'demo baseline');
    baseline = await measure(local, () => coldRestart(local));
    restoredState = (await local.controller.inspect(EXAMPLE_SERVICE.name)).state === TaskState.TASK_STATE_RUNNING;
  } finally {
    await local.stop(true);
  }
  const row = (name: string, o: Outcome): string =>
    `${name.padEnd(22)} ${String(o.stateIntact).padEnd(12)} ${String(o.downtimeMs).padStart(10)} ${String(o.failedRequests).padStart(8)}/${String(o.requests).padEnd(6)} ${String(o.worstLatencyMs).padStart(15)} ${String(o.routerFollowed).padEnd(8)} ${o.from} -> ${o.to}`;
  say('');
  say(
    `${'run'.padEnd(22)} ${'stateIntact'.padEnd(12)} ${'downtimeMs'.padStart(10)} ${'failed/requests'.padEnd(15)} ${'worstLatencyMs'.padStart(15)} ${'router'.padEnd(8)} move`,
  );
  say(row('chained (nomad-chain)', chained));
  say(row('baseline (cold start)', baseline));
  if (moved !== undefined) {
    say(
      `\nThe hand-over froze the task ${moved.freezeMs} ms until the target held its checkpoint, and carried ${mib(moved.memoryBytes)} of memory and process state and ${mib(moved.fileBytes)} of files (${mib(moved.wireBytes)} on the wire).` +
        `\nThe service was out of rotation ${moved.outOfRotationMs} ms: hand-over ${moved.handOverMs} ms, restore on the target ${moved.restoreMs} ms, then back in rotation.`,
    );
  }
  say(`\nThe service ${restoredState ? 'is running' : 'is NOT running'} after both runs. Log: ${logFile}`);
  let replay: ReplayReport | undefined;
  if (trace !== undefined) {
    say(`\n==> Replaying ${trace} with the forecaster and with the reactive baseline`);
    replay = await runReplay(
      {
        trace,
        ...DEMO_REPLAY,
        passes: ['forecaster', 'reactive'],
        trainFraction: 0.6,
        workDir: makeWorkDir('nc-replay-'),
        say,
      },
      log.child({ component: 'replay' }),
    );
    say('');
    say(formatReport(replay).trimEnd());
  }
  if (json)
    process.stdout.write(
      `${JSON.stringify({ ...chained, baseline, ...(moved === undefined ? {} : { moved }), ...(replay === undefined ? {} : { replay }) })}\n`,
    );
  return chained.stateIntact && chained.routerFollowed ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`Error: ${errorMessage(err)} (${errorCode(err) ?? 'NC_UNEXPECTED'})\n`);
    process.exit(1);
  },
);
