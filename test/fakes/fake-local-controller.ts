import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ControllerApi } from '../../local/controller/controller-api';
import { LocalController, type LocalControllerDeps } from '../../local/controller/local-controller';
import type { ServiceDefinition } from '../../local/controller/service-definition';
import type { ControllerNode } from '../../local/controller/task-placement';
import { MemoryMigrationJournal } from '../../local/migration/migration-journal';
import { FakeClock } from './fake-clock';
import { FakeRouter } from './fake-router';
import { FakeSidecarCluster } from './fake-sidecar-api';

/** A chained service the fake sidecars "run": the program is never started, only its name and port matter. */
export const FAKE_SERVICE: ServiceDefinition = {
  name: 'web',
  argv: ['/bin/true'],
  env: {},
  port: 8080,
  localFiles: {},
  memoryLimitBytes: 0,
};

export interface FakeLocalControllerOptions extends Partial<
  Omit<LocalControllerDeps, 'nodes' | 'sidecars' | 'router' | 'stateFile' | 'machines'>
> {
  /** How many nodes, named n1..nK, or the names themselves; node i (from 1) has address 10.0.0.i. */
  readonly nodes: number | readonly string[];
  /** Chained tasks each node may hold. */
  readonly capacity: number;
  /** Prefix of the temporary directory holding the node data dirs and the state file. */
  readonly tmpPrefix?: string;
  /** A pre-emption kills the node's fake sidecar (its tasks are gone) and a restart revives it. */
  readonly preemptible?: boolean;
}

export interface FakeLocalController {
  readonly controller: LocalController;
  readonly cluster: FakeSidecarCluster;
  readonly router: FakeRouter;
  /** Temporary directory the caller removes when it is done. */
  readonly dir: string;
  readonly nodes: readonly ControllerNode[];
  /** Nodes a pre-emption killed, in order (only with `preemptible`). */
  readonly killed: readonly string[];
}

/** The real LocalController over fake sidecars, router and journal, with a fake clock unless one is given. */
export async function fakeLocalController(options: FakeLocalControllerOptions): Promise<FakeLocalController> {
  const { nodes: count, capacity, tmpPrefix = 'nc-controller-', preemptible = false, ...overrides } = options;
  const dir = mkdtempSync(join(tmpdir(), tmpPrefix));
  const names = typeof count === 'number' ? Array.from({ length: count }, (_, i) => `n${i + 1}`) : count;
  const cluster = new FakeSidecarCluster();
  const nodes: ControllerNode[] = names.map((name, i) => {
    cluster.add(name, `10.0.0.${i + 1}:7450`);
    return {
      name,
      address: `10.0.0.${i + 1}`,
      netnsPath: `/run/netns/${name}`,
      dataDir: join(dir, name),
      capacity,
    };
  });
  const router = new FakeRouter();
  const killed: string[] = [];
  const machines = {
    kill: async (node: string) => {
      killed.push(node);
      cluster.sidecar(node).tasks.clear();
      cluster.sidecar(node).dead = true;
    },
    restart: async (node: string) => {
      cluster.sidecar(node).dead = false;
    },
  };
  const controller = await LocalController.create({
    nodes,
    sidecars: cluster,
    router,
    journal: new MemoryMigrationJournal(),
    clock: new FakeClock(),
    log: pino({ level: 'silent' }),
    stateFile: join(dir, 'state.json'),
    checkpointWaitMs: 100,
    ...(preemptible ? { machines } : {}),
    ...overrides,
  });
  return { controller, cluster, router, dir, nodes, killed };
}

export interface ServedFakeLocalController extends FakeLocalController {
  readonly api: ControllerApi;
  /** http://127.0.0.1:port of the controller's API. */
  readonly address: string;
  /** Closes the API and removes the temporary directory. */
  close(): Promise<void>;
}

/** `fakeLocalController` behind its real HTTP API on 127.0.0.1:0, with a 200 ms stream heartbeat. */
export async function servedFakeLocalController(
  options: FakeLocalControllerOptions,
): Promise<ServedFakeLocalController> {
  const fake = await fakeLocalController(options);
  const api = new ControllerApi(fake.controller, pino({ level: 'silent' }), 200);
  const address = `http://127.0.0.1:${await api.listen(0)}`;
  return {
    ...fake,
    api,
    address,
    close: async () => {
      await api.close();
      rmSync(fake.dir, { recursive: true, force: true });
    },
  };
}
