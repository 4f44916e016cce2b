import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireInt, requireNumber, requireString } from '../../../common/config';
import { ConfigError } from '../../../common/config-error';
import { errorCode, errorMessage } from '../../../common/errors';
import { createRootLogger } from '../../../common/logging';
import { ControllerApi } from './controller-api';
import { EXAMPLE_SERVICE, startLocalMode, waitForPort } from './local-mode';
import { formatReport, runReplay, type ReplayPass } from './replay/replay-command';

const USAGE = `Usage: npm start -- [options]

Local mode: a simulated cluster on this machine (nodes as network namespaces, a real sidecar on each, real
runc/CRIU tasks, HAProxy in front) with an example stateful service. Drain a node to watch it move.

Options:
  -nodes N        number of simulated nodes (default 3; 4 with -replay)
  -no-example     do not start the example key/value service

Trace replay (two passes over the same trace, one table at the end):
  -replay TRACE   replay a pre-emption trace (any format in ../shared/data/, or nc-trace/1 NDJSON): a pass
                  with the forecaster (its own process, trained on the first 60 % of the trace's span) and
                  a reactive pass (drain only at the interruption notice); counts are for the held-out 40 %
                  and for the whole trace
  -speed S        trace ms per real ms (default 60)
  -services M     chained kv services (default nodes - 1)
  -passes P       both | forecaster | reactive (default both)
  -json           print the report as JSON instead of the table
`;

interface StartOptions {
  readonly nodes: number;
  readonly example: boolean;
  readonly replay: ReplayCliOptions | undefined;
}

interface ReplayCliOptions {
  readonly trace: string;
  readonly speed: number;
  readonly services: number;
  readonly passes: readonly ReplayPass[];
  readonly json: boolean;
}

function parseArgs(argv: readonly string[]): StartOptions {
  let nodes: number | undefined;
  let example = true;
  let trace: string | undefined;
  let speed = 60;
  let services: number | undefined;
  let passes: ReplayPass[] = ['forecaster', 'reactive'];
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]?.replace(/^--?/, '-');
    if (arg === '-nodes') nodes = requireInt('-nodes', argv[++i], 2, 16);
    else if (arg === '-no-example') example = false;
    else if (arg === '-replay') trace = requireString('-replay', argv[++i]);
    else if (arg === '-speed') speed = requireNumber('-speed', argv[++i], 0.001, 1_000_000);
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
  if (trace === undefined) return { nodes: nodes ?? 3, example, replay: undefined };
  const replayNodes = nodes ?? 4;
  return {
    nodes: replayNodes,
    example,
    replay: { trace, speed, services: services ?? replayNodes - 1, passes, json },
  };
}

/** `-replay`: both passes, then the table (or JSON) on stdout; logs go to a file. */
async function replay(nodes: number, options: ReplayCliOptions): Promise<void> {
  const workDir = mkdtempSync(join(tmpdir(), 'nc-replay-'));
  const log = createRootLogger({
    level: process.env.NOMAD_CHAIN_LOG_LEVEL ?? 'info',
    file: join(workDir, 'replay.log'),
  }).child({ component: 'replay' });
  const say = (line: string): void => void process.stderr.write(`${line}\n`);
  const report = await runReplay({ ...options, nodes, trainFraction: 0.6, workDir, say }, log);
  log.flush();
  // Exit once the report is out: the replay is a command, not a service.
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report), () =>
    process.exit(0),
  );
}

/** Composition root of local mode. */
async function main(argv: readonly string[]): Promise<void> {
  const options = parseArgs(argv);
  if (options.replay !== undefined) return replay(options.nodes, options.replay);
  const log = createRootLogger({ level: process.env.NOMAD_CHAIN_LOG_LEVEL ?? 'info' }).child({
    component: 'local-mode',
  });
  process.stdout.write(`Starting a local cluster of ${options.nodes} nodes...\n`);
  const local = await startLocalMode({ cluster: { nodes: options.nodes, services: [EXAMPLE_SERVICE.name] } }, log);
  const { cluster, controller } = local;
  const api = new ControllerApi(controller, log.child({ component: 'controller-api' }));
  const port = await api.listen();
  cluster.setControllerUrl(`http://127.0.0.1:${port}`);

  const stop = async (signal: string): Promise<void> => {
    process.stdout.write(`\n${signal}: stopping the local cluster...\n`);
    await api.close();
    await local.stop();
    process.stdout.write(`Stopped. Logs kept in ${cluster.logDir}\n`);
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));

  let serviceLine = '';
  if (options.example) {
    const placed = await controller.runService(EXAMPLE_SERVICE, (i) => waitForPort(i));
    serviceLine = `  service kv     http://127.0.0.1:${cluster.haproxy.portOf('kv')}/counter  (running on ${placed.node})\n`;
  }
  process.stdout.write(
    `\nLocal mode is up (cluster ${cluster.id}).\n` +
      cluster.nodes.map((n) => `  ${n.name.padEnd(8)} ${n.address}\n`).join('') +
      serviceLine +
      `  controller     http://127.0.0.1:${port}/v1/nodes\n` +
      `  logs           ${cluster.logDir}\n\n` +
      `Try:  curl -s -X PUT --data hello http://127.0.0.1:${cluster.haproxy.portOf('kv')}/kv/greeting\n` +
      `      npm run cluster -- drain <node>     (moves the service with its memory to another node)\n` +
      `Press Ctrl-C to stop.\n`,
  );
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`Error: ${errorMessage(err)} (${errorCode(err) ?? 'NC_UNEXPECTED'})\n`);
  process.exit(1);
});
