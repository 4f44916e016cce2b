import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SystemClock, type Clock } from '../../common/clock';
import { makeWorkDir } from '../cluster/work-dir';
import type { Logger } from '../../common/logging';
import { ScaledClock, type ClockSpan } from '../../common/scaled-clock';
import { ControllerApi } from '../controller/controller-api';
import { ReplayError } from '../controller/errors';
import { EXAMPLE_SERVICE, startLocalMode, waitForPort } from '../local-mode';
import type { ServiceDefinition } from '../controller/service-definition';
import { ForecasterProcess } from './forecaster-process';
import { NoticeClient } from './notice-client';
import { ReplayRunner, type ReplayObservations } from './replay-runner';
import { tally, type ReplayCounts } from './replay-tally';
import { parseTrace, slowSpans, splitTime, traceBefore, type TraceSchedule } from './trace-schedule';

const REPO = resolve(__dirname, '..', '..');
// Traces timed from epoch 0 are moved here, so the forecaster's clock reads like Unix time (its ingest
// refuses sample times <= 0); differences, which all features use, are unchanged.
const EPOCH_SHIFT_MS = 1_600_000_000_000;
// A slow stretch starts a tick before the horizon (the decision that tick takes counts as early) and ends a
// minute after the pre-emption, while the cold starts of what it caught run.
const SLOW_LEAD_EXTRA_MS = 60_000;
const SLOW_TAIL_MS = 60_000;

export type ReplayPass = 'forecaster' | 'reactive';

export interface ReplayOptions {
  readonly trace: string;
  /** Trace ms per real ms. */
  readonly speed: number;
  /**
   * Trace ms per real ms from a horizon before each held-out pre-emption to a minute after it (slowSpans);
   * undefined = the whole trace at `speed`.
   */
  readonly eventSpeed?: number;
  readonly nodes: number;
  readonly services: number;
  readonly passes: readonly ReplayPass[];
  /** Share of the trace's time span the model trains on; the rest is held out and counted. @default 0.6 */
  readonly trainFraction: number;
  /** Where the converted trace, the model, the forecaster's config and all logs go. */
  readonly workDir?: string;
  /** Progress lines (stdout in the CLI). */
  readonly say?: (line: string) => void;
  /** Stops the replay early (Ctrl-C): the pass in progress tears its cluster and forecaster down and throws. */
  readonly signal?: AbortSignal;
}

export interface PassResult {
  readonly pass: ReplayPass;
  readonly heldOut: ReplayCounts;
  readonly wholeTrace: ReplayCounts;
  readonly maxLagMs: number;
  readonly mappedJoins: number;
  readonly virtualJoins: number;
  readonly noticesSent: number;
  readonly returnFailures: number;
  readonly preemptionErrors: number;
  readonly wallS: number;
}

export interface ReplayReport {
  readonly trace: string;
  readonly speed: number;
  readonly eventSpeed: number | undefined;
  /** Trace time played at eventSpeed, ms. */
  readonly slowMs: number;
  readonly nodes: number;
  readonly services: number;
  readonly spanMs: readonly [number, number];
  readonly splitMs: number;
  readonly horizonS: number;
  readonly model:
    | {
        readonly dir: string;
        readonly trainedOn: string;
        readonly algorithm: string;
        /**
         * The card's two-level policy: the forecaster takes both levels from the card (the replay sets no
         * thresholds in its config).
         */
        readonly policy: { readonly prewarnThreshold: number; readonly drainThreshold: number } | undefined;
        /**
         * A card without a policy (an older trainer's): its threshold, used as the policy's enterThreshold (exit at
         * 70 % of it, for hysteresis; the drain level is then the same).
         */
        readonly threshold: number | undefined;
      }
    | undefined;
  readonly workDir: string;
  readonly passes: PassResult[];
}

function run(argv: readonly string[], what: string): string {
  const result = spawnSync(argv[0] ?? '', argv.slice(1), { cwd: REPO, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (result.error !== undefined || result.status !== 0) {
    throw new ReplayError(
      'NC_REPLAY_TOOL_FAILED',
      `${what} failed (${argv.join(' ')}): ${result.error?.message ?? `exit ${result.status ?? 'signal'}`} ${(result.stderr ?? '').slice(-600)}`,
      { context: { what } },
    );
  }
  return result.stdout;
}

/** The trainer's converter writes any supported trace as nc-trace/1 (adding notices where the trace has none). */
function convert(trace: string, out: string): void {
  run([join(REPO, '.venv/bin/python'), '-m', 'nc_forecast.cli', 'convert', '--trace', trace, '--out', out], 'convert');
}

function chainedServices(count: number): ServiceDefinition[] {
  return Array.from({ length: count }, (_, i) => ({
    ...EXAMPLE_SERVICE,
    name: `kv${i + 1}`,
    port: 8081 + i,
    env: { ...EXAMPLE_SERVICE.env, PORT: String(8081 + i) },
  }));
}

/**
 * `npm start -- -replay TRACE`: the same trace played twice through a fresh local cluster, once with the
 * forecaster (own process, trained on the first part of the trace) acting through the controller API and once
 * with the reactive baseline (drain at the notice), counted the same way.
 */
export async function runReplay(options: ReplayOptions, log: Logger): Promise<ReplayReport> {
  const say = options.say ?? (() => undefined);
  const workDir = options.workDir ?? makeWorkDir('nc-replay-');
  mkdirSync(workDir, { recursive: true });
  const converted = join(workDir, 'trace.ndjson');
  convert(resolve(options.trace), converted);
  const text = readFileSync(converted, 'utf8');
  const schedule = parseTrace(text, converted);
  const splitMs = splitTime(schedule, options.trainFraction);
  let model: ReplayReport['model'];
  let horizonS = 600;
  if (options.passes.includes('forecaster')) {
    const trainTrace = join(workDir, 'train.ndjson');
    writeFileSync(trainTrace, traceBefore(text, splitMs));
    const dir = join(workDir, 'model');
    say(`Training the model on the first ${Math.round(options.trainFraction * 100)} % of the trace's time span...`);
    run(
      ['npm', 'run', '--silent', 'forecast', '--', 'train', '--trace', trainTrace, '--out', dir],
      'npm run forecast -- train',
    );
    const card = JSON.parse(readFileSync(join(dir, 'model-card.json'), 'utf8')) as {
      horizonS?: number;
      algorithm?: string;
      threshold?: number;
      policy?: { prewarnThreshold?: unknown; drainThreshold?: unknown };
    };
    const { prewarnThreshold, drainThreshold } = card.policy ?? {};
    horizonS = card.horizonS ?? horizonS;
    model = {
      dir,
      trainedOn: `first ${Math.round(options.trainFraction * 100)} % of the time span (t < ${splitMs - schedule.startMs} ms)`,
      algorithm: card.algorithm ?? 'unknown',
      // The forecaster validates the card's policy when it loads the model; here it is only reported.
      policy:
        typeof prewarnThreshold === 'number' && typeof drainThreshold === 'number'
          ? { prewarnThreshold, drainThreshold }
          : undefined,
      threshold:
        typeof card.threshold === 'number' && card.threshold > 0 && card.threshold < 1 ? card.threshold : undefined,
    };
  }
  const spans =
    options.eventSpeed === undefined
      ? []
      : slowSpans(schedule, {
          fromMs: splitMs,
          leadMs: horizonS * 1000 + SLOW_LEAD_EXTRA_MS,
          tailMs: SLOW_TAIL_MS,
          scale: options.eventSpeed,
        });
  const slowMs = spans.reduce((sum, s) => sum + s.toMs - s.fromMs, 0);
  const wallS = Math.round(
    (schedule.endMs - schedule.startMs - slowMs) / options.speed / 1000 + slowMs / (options.eventSpeed ?? 1) / 1000,
  );
  const passes: PassResult[] = [];
  for (const pass of options.passes) {
    options.signal?.throwIfAborted();
    say(
      `Replaying ${schedule.events.length} events at ${options.speed}x` +
        (spans.length === 0
          ? ''
          : `, ${spans.length} stretches around held-out pre-emptions at ${options.eventSpeed}x`) +
        `: ${pass} pass, about ${Math.ceil(wallS / 60)} min...`,
    );
    const passDir = join(workDir, pass);
    mkdirSync(passDir, { recursive: true });
    const started = Date.now();
    const obs = await runPass(pass, schedule, spans, options, passDir, model, log.child({ pass }));
    const counts = (fromMs: number, scope: string): ReplayCounts =>
      tally(obs, { fromMs, endMs: schedule.endMs, horizonMs: horizonS * 1000, scope });
    passes.push({
      pass,
      heldOut: counts(splitMs, `held-out ${Math.round((1 - options.trainFraction) * 100)} %`),
      wholeTrace: counts(-Infinity, 'whole trace'),
      maxLagMs: obs.maxLagMs,
      mappedJoins: obs.mappedJoins,
      virtualJoins: obs.virtualJoins,
      noticesSent: obs.noticesSent,
      returnFailures: obs.returnFailures,
      preemptionErrors: obs.preemptionErrors,
      wallS: Math.round((Date.now() - started) / 1000),
    });
  }
  return {
    trace: options.trace,
    speed: options.speed,
    eventSpeed: options.eventSpeed,
    slowMs,
    nodes: options.nodes,
    services: options.services,
    spanMs: [schedule.startMs, schedule.endMs],
    splitMs,
    horizonS,
    model,
    workDir,
    passes,
  };
}

/** Reads the trace clock once the replay's real start is known; nothing asks for it earlier. */
class DeferredClock implements Clock {
  clock: Clock | undefined;
  now(): number {
    if (this.clock === undefined) throw new Error('the replay clock was read before the replay started');
    return this.clock.now();
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.clock === undefined) throw new Error('the replay clock was used before the replay started');
    return this.clock.sleep(ms, signal);
  }
}

async function runPass(
  pass: ReplayPass,
  schedule: TraceSchedule,
  slow: readonly ClockSpan[],
  options: ReplayOptions,
  passDir: string,
  model: ReplayReport['model'],
  log: Logger,
): Promise<ReplayObservations & { noticesSent: number }> {
  const shift = schedule.startMs < 1e12 ? EPOCH_SHIFT_MS : 0;
  const spans = slow.map((s) => ({ ...s, fromMs: s.fromMs + shift, toMs: s.toMs + shift }));
  const services = chainedServices(options.services);
  const traceClock = new DeferredClock();
  const real = new SystemClock();
  const local = await startLocalMode(
    {
      cluster: { nodes: options.nodes, services: services.map((s) => s.name), runDir: join(passDir, 'cluster') },
      eventClock: traceClock,
      announceNodes: false,
    },
    log,
  );
  const api = new ControllerApi(local.controller, log.child({ component: 'controller-api' }));
  let forecaster: ForecasterProcess | undefined;
  let notices: NoticeClient | undefined;
  try {
    const port = await api.listen();
    local.cluster.setControllerUrl(`http://127.0.0.1:${port}`);
    for (const service of services) await local.controller.runService(service, (i) => waitForPort(i));
    // The forecaster needs its clock's origin before it starts; leave it time to boot before the trace begins.
    let realStartMs = real.now() + 2000;
    if (pass === 'forecaster') {
      if (model === undefined) throw new Error('the forecaster pass needs a model');
      realStartMs = real.now() + 30_000;
      forecaster = await ForecasterProcess.start({
        repo: REPO,
        workDir: passDir,
        config: {
          modelDir: model.dir,
          // The policy acts at the levels the trainer chose for this model and wrote into its card; an older card
          // without them has one threshold, set here.
          ...(model.policy !== undefined || model.threshold === undefined
            ? {}
            : { policy: { enterThreshold: model.threshold, exitThreshold: model.threshold * 0.7 } }),
          controllerAddress: `http://127.0.0.1:${port}`,
          telemetryAddress: '127.0.0.1',
          telemetryPort: 0,
          httpAddress: '127.0.0.1',
          httpPort: 0,
          tick: '60s',
          modelPoll: 0,
          staleAfter: '1000h',
          timeScale: options.speed,
          timeOrigin: schedule.startMs + shift,
          timeOriginReal: realStartMs,
          timeSpans: spans,
        },
      });
      notices = new NoticeClient(`127.0.0.1:${forecaster.telemetryPort}`, log.child({ component: 'notices' }));
    }
    const timeline = new ScaledClock(
      { scale: options.speed, originMs: schedule.startMs + shift, realOriginMs: realStartMs, spans },
      real,
    );
    traceClock.clock = timeline;
    const sink = notices;
    const runner = new ReplayRunner(
      local.controller,
      {
        schedule,
        slots: local.cluster.nodes.map((n) => n.name),
        timeline,
        reactive: pass === 'reactive',
        traceOffsetMs: shift,
        ...(sink === undefined
          ? {}
          : { notices: (node, t, deadline) => sink.notice(node, t + shift, deadline + shift) }),
      },
      real,
      log.child({ component: 'replay' }),
    );
    const obs = await runner.run(options.signal);
    // The forecaster's decisions, every trace node's, in trace time; holds change nothing.
    const decided = (forecaster?.decisions ?? []).flatMap((d) =>
      d.action === 'hold'
        ? []
        : [{ node: d.node, t: d.atMs - shift, action: d.action, ...(d.level === undefined ? {} : { level: d.level }) }],
    );
    return { ...obs, policy: [...obs.policy, ...decided], noticesSent: notices?.sent ?? 0 };
  } finally {
    notices?.close();
    await forecaster?.stop();
    await api.close();
    await local.stop();
  }
}

function pad(value: string | number, width: number): string {
  return String(value).padStart(width);
}

function modelThresholds(model: NonNullable<ReplayReport['model']>): string {
  if (model.policy !== undefined)
    return `policy levels from the model card: pre-warn ${model.policy.prewarnThreshold.toFixed(3)}, drain ${model.policy.drainThreshold.toFixed(3)}`;
  return `no policy in the model card: one level at ${model.threshold === undefined ? 'the default' : `its threshold ${model.threshold.toFixed(3)}`}`;
}

/** The table `npm start -- -replay` prints. */
export function formatReport(report: ReplayReport): string {
  const lines = [
    `Trace replay of ${report.trace} at ${report.speed}x on ${report.nodes} local nodes, ${report.services} chained kv services` +
      (report.eventSpeed === undefined
        ? ''
        : `; ${Math.round(report.slowMs / 60_000)} min of trace time around held-out pre-emptions at ${report.eventSpeed}x`),
    report.model === undefined
      ? 'No forecaster pass.'
      : `Forecaster model: ${report.model.algorithm}, trained with npm run forecast -- train on the ${report.model.trainedOn}; ` +
        modelThresholds(report.model),
    `Counts below: held-out part (trace time >= ${report.splitMs - report.spanMs[0]} ms of ${report.spanMs[1] - report.spanMs[0]} ms) and whole trace; a drain is false when its node is not pre-empted within ${report.horizonS} s.`,
    '',
    'pass        scope          pre-emptions  with-chained  moved-before  caught(cold/lost)  drains  false-drains  undecided',
  ];
  for (const p of report.passes) {
    for (const c of [p.heldOut, p.wholeTrace]) {
      lines.push(
        `${p.pass.padEnd(11)} ${c.scope.padEnd(14)} ${pad(c.preemptions, 12)}  ${pad(c.preemptionsWithChainedTasks, 12)}  ${pad(c.movedBeforePreemption, 12)}  ${pad(`${c.caught} (${c.caughtColdStarted}/${c.caughtLost})`, 17)}  ${pad(c.drains, 6)}  ${pad(c.falseDrains, 12)}  ${pad(c.drainsUndecided, 9)}`,
      );
    }
  }
  lines.push(
    '',
    "The two-level policy, the same counts: moved-ahead = tasks whose move started before their node's notice, at-notice = after it (caught by the notice),",
    'lost = on their node when it went; pre-warns = fences (reserve, pre-stage), undone = released when risk fell; drain-level = drains before any notice;',
    'node-time fenced = fenced or draining until undone or gone, every trace node (local or virtual), as a share of all node-time.',
    '',
    'pass        scope          moved-ahead  at-notice  lost  false-drains  pre-warns  undone  drain-level  node-time fenced',
  );
  for (const p of report.passes) {
    for (const c of [p.heldOut, p.wholeTrace]) {
      const share = c.nodeMs > 0 ? (100 * c.fencedNodeMs) / c.nodeMs : 0;
      lines.push(
        `${p.pass.padEnd(11)} ${c.scope.padEnd(14)} ${pad(c.movedBeforeNotice, 11)}  ${pad(c.movedAfterNotice, 9)}  ${pad(c.lost, 4)}  ${pad(c.falseDrains, 12)}  ${pad(c.prewarns, 9)}  ${pad(c.prewarnsUndone, 6)}  ${pad(c.predictiveDrains, 11)}  ${pad(`${(c.fencedNodeMs / 3_600_000).toFixed(2)} h (${share.toFixed(2)} %)`, 16)}`,
      );
    }
  }
  lines.push('');
  for (const p of report.passes) {
    lines.push(
      `${p.pass}: ${p.mappedJoins} trace nodes ran on local nodes, ${p.virtualJoins} were virtual (${p.wholeTrace.virtualPreemptions} virtual pre-emptions); ` +
        `notices sent to the forecaster ${p.noticesSent}; local nodes that failed to come back ${p.returnFailures}; ` +
        `pre-emptions whose cold starts failed ${p.preemptionErrors}; worst lag behind the trace ${(p.maxLagMs / 1000).toFixed(1)} s; wall ${p.wallS} s`,
    );
  }
  lines.push(`Logs and the model: ${report.workDir}`);
  return `${lines.join('\n')}\n`;
}
