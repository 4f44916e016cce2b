import { requireInt } from '../../../common/config';
import { ConfigError } from '../../../common/config-error';
import { errorCode, errorMessage } from '../../../common/errors';
import { createRootLogger } from '../../../common/logging';
import { ControllerApi } from './controller-api';
import { EXAMPLE_SERVICE, startLocalMode, waitForPort } from './local-mode';

const USAGE = `Usage: npm start -- [options]

Local mode: a simulated cluster on this machine (nodes as network namespaces, a real sidecar on each, real
runc/CRIU tasks, HAProxy in front) with an example stateful service. Drain a node to watch it move.

Options:
  -nodes N        number of simulated nodes (default 3)
  -no-example     do not start the example key/value service
`;

interface StartOptions {
  readonly nodes: number;
  readonly example: boolean;
}

function parseArgs(argv: readonly string[]): StartOptions {
  let nodes = 3;
  let example = true;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]?.replace(/^--?/, '-');
    if (arg === '-nodes') nodes = requireInt('-nodes', argv[++i], 2, 16);
    else if (arg === '-no-example') example = false;
    else if (arg === '-h' || arg === '-help') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new ConfigError(argv[i] ?? '', 'unknown option (see npm start -- -help)');
  }
  return { nodes, example };
}

/** Composition root of local mode. */
async function main(argv: readonly string[]): Promise<void> {
  const options = parseArgs(argv);
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
