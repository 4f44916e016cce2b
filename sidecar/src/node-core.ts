import { join } from 'node:path';
import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/logging';
import { TaskLockTable } from './background/background-checkpointer';
import { CriuCli, type CriuTls } from './checkpoint/criu';
import { Dumper } from './checkpoint/dump';
import { probeFeatures, type Features } from './checkpoint/features';
import { TaskFiles, type FilesOverLimit } from './checkpoint/file-tree/task-files';
import { LazyDumper } from './checkpoint/lazy-dump';
import { PeerMigrator } from './checkpoint/migrate-to-peer';
import { TaskPrestager } from './checkpoint/prestager';
import { Restorer } from './checkpoint/restore';
import { RetainedCheckpoints } from './checkpoint/retained';
import type { CheckpointShipper } from './checkpoint/staging';
import { RuncCli } from './runtime/runc';
import { SearchGrant } from './runtime/search-grant';
import { TaskRuntime } from './runtime/task-runtime';
import type { IdMapping } from './runtime/user-namespace';

/**
 * What a node's task machinery needs to know. Everything lives under `dataDir` (`runc/`, `tasks/`, `dumps/`,
 * `retained/`), the same layout for the sidecar, the test harness and the benchmarks.
 */
export interface NodeCoreSettings {
  readonly nodeName: string;
  readonly dataDir: string;
  readonly runcBin: string;
  readonly criuBin: string;
  readonly commandTimeoutMs: number;
  readonly taskNetworkNamespace: string;
  readonly cgroupParent: string;
  /** Tasks run in their own user namespace with this mapping; none = the node's own ids. */
  readonly idMapping?: IdMapping;
  /** CRIU's page server and lazy-pages daemon speak TLS with these. */
  readonly criuTls?: CriuTls;
  readonly startTimeoutMs: number;
  readonly exitPollMs: number;
  readonly filesMaxBytes: number;
  readonly filesOverLimit: FilesOverLimit;
  readonly dumpTimeoutMs: number;
  readonly handoverRetentionMs: number;
  readonly lazyPagesNetns: string;
  readonly pageServerHost: string;
  readonly lazyConnectTimeoutMs: number;
  readonly lazyTransferTimeoutMs: number;
}

export interface NodeCoreDeps {
  readonly shipper: CheckpointShipper;
  readonly clock: Clock;
  readonly log: Logger;
}

/** One node's tasks and their checkpoints: run, dump, ship, restore, hand over, pre-stage. */
export interface NodeCore {
  readonly runc: RuncCli;
  readonly criu: CriuCli;
  readonly features: Features;
  readonly runtime: TaskRuntime;
  readonly files: TaskFiles;
  readonly dumper: Dumper;
  readonly lazyDumper: LazyDumper;
  readonly restorer: Restorer;
  readonly retained: RetainedCheckpoints;
  readonly migrator: PeerMigrator;
  readonly prestager: TaskPrestager;
  /** A migration, a pre-stage and a background checkpoint of the same task never dump it at the same time. */
  readonly locks: TaskLockTable;
}

/** Builds a node's task machinery from real parts: the one wiring the sidecar, the test harness and the benchmarks share. */
export async function buildNodeCore(settings: NodeCoreSettings, deps: NodeCoreDeps): Promise<NodeCore> {
  const { clock, log, shipper } = deps;
  const runc = new RuncCli({
    runcBin: settings.runcBin,
    criuBin: settings.criuBin,
    root: join(settings.dataDir, 'runc'),
    commandTimeoutMs: settings.commandTimeoutMs,
  });
  const criu = new CriuCli(settings.criuBin, settings.commandTimeoutMs, settings.criuTls);
  const features = await probeFeatures(criu, runc, { userNamespace: settings.idMapping !== undefined });
  const runtime = await TaskRuntime.create(
    {
      nodeName: settings.nodeName,
      tasksDir: join(settings.dataDir, 'tasks'),
      taskNetworkNamespace: settings.taskNetworkNamespace,
      cgroupParent: settings.cgroupParent,
      ...(settings.idMapping !== undefined ? { idMapping: settings.idMapping } : {}),
      ...(settings.criuTls !== undefined ? { criuTls: settings.criuTls } : {}),
      startTimeoutMs: settings.startTimeoutMs,
      exitPollMs: settings.exitPollMs,
    },
    { runc, clock, log: log.child({ component: 'runtime' }) },
  );
  const checkpointLog = log.child({ component: 'checkpoint' });
  const files = new TaskFiles({ maxBytes: settings.filesMaxBytes, overLimit: settings.filesOverLimit }, checkpointLog);
  const dumpsDir = join(settings.dataDir, 'dumps');
  const dumper = new Dumper(
    { checkpointsDir: dumpsDir, nodeName: settings.nodeName, dumpTimeoutMs: settings.dumpTimeoutMs },
    { runtime, runc, files, clock, log: checkpointLog },
  );
  await dumper.recoverInterrupted();
  const retained = new RetainedCheckpoints(
    { dir: join(settings.dataDir, 'retained'), retentionMs: settings.handoverRetentionMs },
    clock,
    checkpointLog,
  );
  const restorer = new Restorer({
    runtime,
    log: checkpointLog,
    ...(settings.idMapping !== undefined
      ? {
          searchGrant: new SearchGrant({
            hostRootUid: settings.idMapping.hostId,
            commandTimeoutMs: settings.commandTimeoutMs,
          }),
        }
      : {}),
    criu,
    lazyPagesNetns: settings.lazyPagesNetns,
    daemonStartTimeoutMs: settings.commandTimeoutMs,
  });
  const lazyDumper = new LazyDumper(
    {
      checkpointsDir: dumpsDir,
      nodeName: settings.nodeName,
      pageServerHost: settings.pageServerHost,
      dumpTimeoutMs: settings.dumpTimeoutMs,
      connectTimeoutMs: settings.lazyConnectTimeoutMs,
      transferTimeoutMs: settings.lazyTransferTimeoutMs,
    },
    { runtime, runc, dumper, files, clock, log: checkpointLog },
  );
  const migrator = new PeerMigrator({
    runtime,
    dumper,
    restorer,
    shipper,
    retained,
    lazyDumper,
    features: () => features,
    clock,
    log: checkpointLog,
  });
  const locks = new TaskLockTable();
  const prestager = new TaskPrestager({ dumper, shipper, locks, clock, log: checkpointLog });
  return { runc, criu, features, runtime, files, dumper, lazyDumper, restorer, retained, migrator, prestager, locks };
}
