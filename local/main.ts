import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { requireInt, requireNumber, requireString } from '../common/config';
import { ConfigError } from '../common/config-error';
import { makeWorkDir } from './cluster/work-dir';
import { errorCode, errorMessage } from '../common/errors';
import { createRootLogger } from '../common/logging';
import { freePort } from '../common/free-port';
import { ControllerApi } from './controller/controller-api';
import { ReplayError } from './controller/errors';
import { EXAMPLE_JOB_FILE, startLocalMode } from './local-mode';
import { loadJobFile } from './job/job-file';
import { JobRunner, type JobStatus } from './job/job-runner';
import { ForecasterProcess } from './replay/forecaster-process';
import { formatReport, runReplay, type ReplayPass } from './replay/replay-command';
import { WEB_VIEW_PATH, WebView } from './web/web-view';

const REPO = resolve(__dirname, '..');
/** Where the operator ran npm: npm runs scripts from the package's root, and says where it was called in INIT_CWD. */
const CALLER_DIR = process.env.INIT_CWD ?? process.cwd();

const USAGE = `Usage: npm start -- [options]

Local mode: a simulated cluster on this machine (nodes as network namespaces, a real sidecar on each, real
runc/CRIU tasks, HAProxy in front) running a Nomad job file's driver = "chain" tasks: by default the example
jobs/examples/kv.nomad.hcl. Drain a node to watch them move with their memory.

Options:
  -job FILE       run this Nomad job file instead of the example (repeat for several); more can be run, listed
                  and stopped while local mode runs: npm run cluster -- job run FILE | job status | job stop NAME
  -nodes N        number of simulated nodes (default 3; 4 with -replay)
  -no-example     do not start the example key/value service
  -forecaster DIR also run the forecaster, acting through the controller: it serves the current model of the
                  registry DIR/models (make one first: npm run forecast -- retrain --trace TRACE --registry
                  DIR/models), records what it observes in DIR/data and retrains on it every hour

Trace replay (two passes over the same trace, one table at the end):
  -replay TRACE   replay a pre-emption trace (any format in ../shared/data/, or nc-trace/1 NDJSON): a pass
                  with the forecaster (its own process, trained on the first 60 % of the trace's span) and
                  a reactive pass (drain only at the interruption notice); counts are for the held-out 40 %
                  and for the whole trace
  -speed S        trace ms per real ms (default 60)
  -event-speed E  trace ms per real ms from the forecast horizon before each held-out pre-emption to a
                  minute after it, so migrations get real time where they count (default: -speed)
  -services M     chained kv services (default nodes - 1)
  -passes P       both | forecaster | reactive (default both)
  -json           print the report as JSON instead of the table
`;

interface StartOptions {
  readonly nodes: number;
  readonly example: boolean;
  readonly jobs: readonly string[];
  readonly forecaster?: string;
  readonly replay: ReplayCliOptions | undefined;
}

interface ReplayCliOptions {
  readonly trace: string;
  readonly speed: number;
  readonly eventSpeed: number | undefined;
  readonly services: number;
  readonly passes: readonly ReplayPass[];
  readonly json: boolean;
}

function parseArgs(argv: readonly string[]): StartOptions {
  let nodes: number | undefined;
  let example = true;
  const jobs: string[] = [];
  let forecaster: string | undefined;
  let trace: string | undefined;
  let speed = 60;
  let eventSpeed: number | undefined;
  let services: number | undefined;
  let passes: ReplayPass[] = ['forecaster', 'reactive'];
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]?.replace(/^--?/, '-');
    if (arg === '-nodes') nodes = requireInt('-nodes', argv[++i], 2, 16);
    else if (arg === '-no-example') example = false;
    else if (arg === '-job') jobs.push(resolve(CALLER_DIR, requireString('-job', argv[++i])));
    else if (arg === '-forecaster') forecaster = resolve(requireString('-forecaster', argv[++i]));
    else if (arg === '-replay') trace = requireString('-replay', argv[++i]);
    else if (arg === '-speed') speed = requireNumber('-speed', argv[++i], 0.001, 1_000_000);
    else if (arg === '-event-speed') eventSpeed = requireNumber('-event-speed', argv[++i], 0.001, 1_000_000);
    else if (arg === '-services') services = requireInt('-services', argv[++i], 1, 64);
    else if (arg === '-json') json = true;
    else if (arg === '-passes') {
      const value = argv[++i];
      if (value === 'both') passes = ['forecaster', 'reactive'];
      else if (value === 'forecaster' || value === 'reactive') passes = [value];
      else throw new ConfigError('-passes', 'expected both, forecaster or reactive');
    } else if (arg === '-h' || arg === '-help') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new ConfigError(argv[i] ?? '', 'unknown option (see npm start -- -help)');
  }
  if (trace === undefined) {
    return {
      nodes: nodes ?? 3,
      example: example && jobs.length === 0,
      jobs,
      replay: undefined,
      ...(forecaster === undefined ? {} : { forecaster }),
    };
  }
  if (forecaster !== undefined) throw new ConfigError('-forecaster', 'a replay runs its own forecaster');
  if (jobs.length > 0) throw new ConfigError('-job', 'a replay runs its own chained kv services');
  const replayNodes = nodes ?? 4;
  return {
    nodes: replayNodes,
    example,
    jobs,
    replay: { trace, speed, eventSpeed, services: services ?? replayNodes - 1, passes, json },
  };
}

/** `-replay`: both passes, then the table (or JSON) on stdout; logs go to a file. */
async function replay(nodes: number, options: ReplayCliOptions): Promise<void> {
  const workDir = makeWorkDir('nc-replay-');
  const log = createRootLogger({
    level: process.env.NOMAD_CHAIN_LOG_LEVEL ?? 'info',
    file: join(workDir, 'replay.log'),
  }).child({ component: 'replay' });
  const say = (line: string): void => void process.stderr.write(`${line}\n`);
  // The first Ctrl-C stops the replay and tears its cluster down; a second one kills the process outright.
  const abort = new AbortController();
  process.once('SIGINT', () => {
    say('SIGINT: stopping the replay and tearing its local cluster down (Ctrl-C again to kill outright)...');
    abort.abort(new ReplayError('NC_REPLAY_INTERRUPTED', 'the replay was interrupted (SIGINT)'));
  });
  const report = await runReplay({ ...options, nodes, trainFraction: 0.6, workDir, say, signal: abort.signal }, log);
  log.flush();
  // Exit once the report is out: the replay is a command, not a service.
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report), () =>
    process.exit(0),
  );
}

/**
 * Local mode's forecaster, its own process as in production: the registry's current model, the trace it records,
 * and the retrain timer at its local-mode default (hourly, forecaster/README.md). It takes the sidecars' telemetry on
 * the host's side of the cluster's bridge, where the nodes reach it.
 */
function startForecaster(
  dir: string,
  controllerAddress: string,
  telemetry: { readonly address: string; readonly port: number },
): Promise<ForecasterProcess> {
  mkdirSync(dir, { recursive: true });
  return ForecasterProcess.start({
    repo: REPO,
    workDir: dir,
    config: {
      controllerAddress,
      modelRegistry: join(dir, 'models'),
      dataDir: join(dir, 'data'),
      telemetryAddress: telemetry.address,
      telemetryPort: telemetry.port,
      httpAddress: '127.0.0.1',
      httpPort: 0,
    },
  });
}

/** How many jobs can be run after the start: HAProxy gets as many spare frontends. */
const SPARE_ROUTES = 4;

/** One line per service: where HAProxy serves it and where it runs. */
function serviceLines(status: JobStatus): string {
  return status.services
    .map(
      (s) =>
        `  service ${s.service.padEnd(8)} runs on ${s.node} at ${s.address} (task ${s.taskId}); HTTP via HAProxy: ${s.routerUrl}\n`,
    )
    .join('');
}

/** Composition root of local mode. */
async function main(argv: readonly string[]): Promise<void> {
  const options = parseArgs(argv);
  if (options.replay !== undefined) return replay(options.nodes, options.replay);
  const runDir = makeWorkDir('nomad-chain-local-');
  const logFile = join(runDir, 'logs', 'local-mode.log');
  const log = createRootLogger({ level: process.env.NOMAD_CHAIN_LOG_LEVEL ?? 'info', file: logFile }).child({
    component: 'local-mode',
  });
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const jobFiles = options.example ? [EXAMPLE_JOB_FILE] : options.jobs;
  // Read every job before the cluster comes up: a file local mode cannot run fails at once, not after a minute.
  const loaded = await Promise.all(
    jobFiles.map((file) =>
      loadJobFile(file, { baseDir: file === EXAMPLE_JOB_FILE ? REPO : CALLER_DIR, filesDir: join(runDir, 'jobs') }),
    ),
  ).catch((err: unknown) => {
    rmSync(runDir, { recursive: true, force: true });
    throw err;
  });
  say(`Starting a local cluster of ${options.nodes} nodes...`);
  // The sidecars learn the forecaster's telemetry port as they start; they reconnect until it listens.
  const forecasterPort = options.forecaster === undefined ? undefined : await freePort();
  const local = await startLocalMode(
    {
      cluster: {
        nodes: options.nodes,
        runDir,
        services: loaded.flatMap((job) => job.services.map((s) => s.definition.name)),
        ...(forecasterPort === undefined ? {} : { forecasterPort }),
      },
      spareRoutes: SPARE_ROUTES,
      afterStep: (record) => {
        if (record.step === 'done')
          say(
            `==> ${record.taskKey} moved ${record.source.node} -> ${record.target.node} with its memory (frozen ${record.freezeMs ?? '?'} ms)`,
          );
        else if (record.step === 'rolled-back')
          say(`==> ${record.taskKey} stayed on ${record.source.node}: ${record.error?.message ?? 'move rolled back'}`);
      },
    },
    log,
  );
  const { cluster, controller } = local;
  const jobs = new JobRunner({
    controller,
    routes: local.routes,
    addressOf: (node) => cluster.node(node).address,
    portOf: (frontend) => cluster.haproxy.portOf(frontend),
    filesDir: join(runDir, 'jobs'),
    log: log.child({ component: 'jobs' }),
  });
  let forecaster: ForecasterProcess | undefined;
  const web = new WebView({
    forecasterUrl: () => (forecaster === undefined ? undefined : `http://127.0.0.1:${forecaster.httpPort}`),
  });
  const api = new ControllerApi(controller, log.child({ component: 'controller-api' }), undefined, jobs, web);
  const port = await api.listen();
  cluster.setControllerUrl(`http://127.0.0.1:${port}`);
  controller.events.subscribe(({ event }) => {
    if (event.type === 'drain-started') say(`==> ${event.node} draining: its chained tasks move to other nodes`);
    if (event.type === 'drain-complete') say(`==> ${event.node} drained`);
  });
  if (options.forecaster !== undefined) {
    try {
      forecaster = await startForecaster(options.forecaster, `http://127.0.0.1:${port}`, {
        address: cluster.hostAddress,
        port: forecasterPort ?? 0,
      });
    } catch (err) {
      await api.close();
      await local.stop();
      throw err;
    }
  }

  const stop = async (signal: string): Promise<void> => {
    say(`\n${signal}: stopping the local cluster...`);
    await forecaster?.stop();
    await api.close();
    await local.stop();
    say(`Stopped. Logs kept in ${cluster.logDir}`);
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));

  let running = '';
  for (const job of loaded) {
    say(`Running job "${job.name}" (${job.file})...`);
    for (const note of job.ignored) say(`    ignored in local mode: ${note}`);
    running += serviceLines(await jobs.run(job));
  }
  const kv = options.example ? `http://127.0.0.1:${cluster.haproxy.portOf('kv')}` : undefined;
  process.stdout.write(
    `\nLocal mode is up (cluster ${cluster.id}).\n` +
      cluster.nodes.map((n) => `  ${n.name.padEnd(8)} ${n.address}\n`).join('') +
      running +
      `  live view      http://127.0.0.1:${port}${WEB_VIEW_PATH}  (nodes, tasks, migrations, forecaster decisions)\n` +
      `  controller     http://127.0.0.1:${port}/v1/nodes\n` +
      (forecaster === undefined
        ? ''
        : `  forecaster     http://127.0.0.1:${forecaster.httpPort}/v1/risk  (log ${forecaster.logFile})\n`) +
      `  logs           ${cluster.logDir}  (JSON, local-mode.log)\n\nTry:\n` +
      (kv === undefined ? '' : `      curl -s -X PUT --data hello ${kv}/kv/greeting\n      curl -s ${kv}/counter\n`) +
      `      npm run cluster -- drain <node>          (moves the services with their memory to other nodes)\n` +
      `      npm run cluster -- job run FILE.nomad.hcl  (run your own job: driver = "chain" tasks with a static port)\n` +
      `      npm run cluster -- job status | job stop NAME\n` +
      `Press Ctrl-C to stop.\n`,
  );
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`Error: ${errorMessage(err)} (${errorCode(err) ?? 'NC_UNEXPECTED'})\n`);
  process.exit(1);
});
