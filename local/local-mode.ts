import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { SystemClock, type Clock } from '../common/clock';
import { ConfigError } from '../common/config-error';
import { LocalCluster, type LocalClusterOptions } from './cluster/cluster';
import { HaproxyRouter } from './router/haproxy-router';
import type { Logger } from '../common/logging';
import type { Instance, Router } from '../common/router';
import { GrpcSidecarApi } from '../common/sidecar-api/grpc-sidecar-api';
import type { MigrationMode } from '../proto/gen/chain/v1/sidecar';
import { FileMigrationJournal } from './migration/migration-journal';
import type { MigrationRecord } from './migration/migration-record';
import { LocalController } from './controller/local-controller';
import type { ServiceDefinition } from './controller/service-definition';
import { ServiceRoutes } from './job/service-routes';

const REPO = resolve(__dirname, '..');

/** The example stateful service local mode and the demo run: an in-memory key/value store and counter. */
export const EXAMPLE_SERVICE: ServiceDefinition = {
  name: 'kv',
  argv: ['/usr/bin/node', '/local/kv-store.js'],
  env: {},
  port: 8080,
  localFiles: { [join(REPO, 'jobs/examples/kv-store.js')]: 'kv-store.js' },
  memoryLimitBytes: 256 * 1024 * 1024,
};

/** The same service as a Nomad job file: what `npm start` runs (a unit test keeps the two in step). */
export const EXAMPLE_JOB_FILE = join(REPO, 'jobs/examples/kv.nomad.hcl');

/** Resolves once the instance accepts TCP connections on its node's address. */
export function waitForPort(instance: Instance, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolvePort, reject) => {
    const attempt = (): void => {
      const socket = connect(instance.port, instance.address);
      socket.once('connect', () => {
        socket.destroy();
        resolvePort();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline)
          reject(new Error(`${instance.address}:${instance.port} not serving after ${timeoutMs} ms`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

export interface LocalModeOptions {
  readonly cluster: LocalClusterOptions;
  /** Chained tasks each node may hold. @default 4 */
  readonly capacityPerNode?: number;
  readonly checkpointWaitMs?: number;
  readonly mode?: MigrationMode;
  readonly afterStep?: (record: MigrationRecord) => void | Promise<void>;
  /** The time controller events carry (a replay's scaled clock). @default the system clock */
  readonly eventClock?: Clock;
  /** Announce every node as joined at start (a replay's trace says when nodes join). @default true */
  readonly announceNodes?: boolean;
  /** How many of a draining node's tasks move at once. @default 1 */
  readonly drainConcurrency?: number;
  /** Spare HAProxy frontends, for services of jobs run after the start (`npm run cluster -- job run`). @default 0 */
  readonly spareRoutes?: number;
}

export interface LocalMode {
  readonly cluster: LocalCluster;
  readonly controller: LocalController;
  /** The controller's router: a service HAProxy has no frontend of its own for takes a spare one. */
  readonly routes: ServiceRoutes;
  /** Stops talking to the sidecars and takes the cluster down. */
  stop(removeRunDir?: boolean): Promise<void>;
}

/** Builds a local cluster and the controller over it (real sidecars, HAProxy router, file journal). */
export async function startLocalMode(options: LocalModeOptions, log: Logger): Promise<LocalMode> {
  const known = options.cluster.services ?? ['app'];
  const spares = Array.from({ length: options.spareRoutes ?? 0 }, (_, i) => `spare${i + 1}`);
  const cluster = await LocalCluster.up({ ...options.cluster, services: [...known, ...spares] });
  const routes = new ServiceRoutes(new HaproxyRouter(cluster.haproxy), known, spares, (frontend) =>
    cluster.haproxy.release(frontend),
  );
  const sidecars = new Map(
    cluster.nodes.map((n) => [n.name, new GrpcSidecarApi({ socketPath: n.localSocket, timeoutMs: 30_000 })]),
  );
  try {
    const controller = await connectController(cluster, sidecars, { ...options, router: routes }, log);
    return {
      cluster,
      controller,
      routes,
      async stop(removeRunDir = false) {
        for (const s of sidecars.values()) s.close();
        await cluster.down(removeRunDir);
      },
    };
  } catch (err) {
    for (const s of sidecars.values()) s.close();
    await cluster.down();
    throw err;
  }
}

/** A controller over an existing cluster: also how a restarted controller picks up where a crashed one stopped. */
export function connectController(
  cluster: LocalCluster,
  sidecars: ReadonlyMap<string, GrpcSidecarApi>,
  options: Omit<LocalModeOptions, 'cluster'> & { readonly router?: Router },
  log: Logger,
): Promise<LocalController> {
  return LocalController.create({
    nodes: cluster.nodes.map((n) => ({
      name: n.name,
      address: n.address,
      netnsPath: n.netnsPath,
      dataDir: n.dataDir,
      capacity: options.capacityPerNode ?? 4,
    })),
    sidecars: {
      sidecar: (node) => {
        const api = sidecars.get(node);
        if (api === undefined) throw new ConfigError('node', `no node ${node}`);
        return api;
      },
    },
    router: options.router ?? new HaproxyRouter(cluster.haproxy),
    journal: new FileMigrationJournal(join(cluster.runDir, 'migrations')),
    clock: new SystemClock(),
    log: log.child({ component: 'controller' }),
    stateFile: join(cluster.runDir, 'controller.json'),
    checkpointWaitMs: options.checkpointWaitMs ?? 30_000,
    machines: { kill: (node) => cluster.killNode(node), restart: (node) => cluster.restartNode(node) },
    waitServing: (instance) => waitForPort(instance),
    ...(options.mode !== undefined ? { mode: options.mode } : {}),
    ...(options.afterStep !== undefined ? { afterStep: options.afterStep } : {}),
    ...(options.eventClock !== undefined ? { eventClock: options.eventClock } : {}),
    ...(options.announceNodes !== undefined ? { announceNodes: options.announceNodes } : {}),
    ...(options.drainConcurrency !== undefined ? { drainConcurrency: options.drainConcurrency } : {}),
  });
}
