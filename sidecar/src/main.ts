import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Server } from '@grpc/grpc-js';
import { SystemClock } from '../../common/clock';
import { ConfigError } from '../../common/config-error';
import { NomadChainError, errorCode } from '../../common/errors';
import { HealthStatus, healthService } from '../../common/grpc/health-service';
import { bindServer, shutdownServer } from '../../common/grpc/server';
import { createRootLogger } from '../../common/logging';
import { PeerPrestageService } from '../../proto/gen/chain/v1/prestage';
import { BackgroundCheckpointsService } from '../../proto/gen/chain/v1/transfer';
import { HealthService } from '../../proto/gen/grpc/health/v1/health';
import { BackgroundCheckpointer } from './background/background-checkpointer';
import { GrpcBuddy } from './background/buddy-client';
import { backgroundForgetService } from './background/forget-service';
import { SentLedger } from './background/sent-ledger';
import type { PeerMigrator } from './checkpoint/migrate-to-peer';
import { peerPrestageService } from './checkpoint/peer-prestage-service';
import type { CheckpointShipper, StagedCheckpoints } from './checkpoint/staging';
import { StoreStagedCheckpoints, TransferShipper } from './checkpoint/transfer-adapters';
import { DirectoryStagedCheckpoints } from './checkpoint/staging';
import { parseConfig, rawOptionsFrom } from './config';
import { LocalApi } from './local-api/local-api';
import { buildNodeCore } from './node-core';
import { serveLocalApi } from './local-api/server';
import { chooseIdMapping } from './runtime/id-mapping-choice';
import { unsearchableAncestor } from './runtime/searchable-path';
import { probeUserNamespaceSupport } from './runtime/user-namespace';
import { createTelemetryAgent } from './telemetry/create-telemetry-agent';
import { CheckpointStore } from './store/checkpoint-store';
import { loadOrCreateStoreKey } from './store/store-key';
import { TransferClient } from './transfer/client';
import { TransferServer } from './transfer/server';
import { loadTransferTls } from './transfer/tls';
import type { TransferTls } from './transfer/tls';

/** A buddy that has not answered a forget within this is asked again next round. */
const BUDDY_CALL_TIMEOUT_MS = 10_000;

/** Composition root: the only place real dependencies are built. */
async function main(argv: readonly string[]): Promise<void> {
  const configIndex = argv.indexOf('--config');
  const configPath = configIndex >= 0 ? argv[configIndex + 1] : undefined;
  const config = parseConfig(
    rawOptionsFrom(process.env, configPath === undefined ? undefined : readFileSync(configPath, 'utf8')),
    hostname(),
  );
  const log = createRootLogger({ level: config.logLevel }).child({ component: 'sidecar', node: config.nodeName });
  const clock = new SystemClock();

  const { idMapping, withoutReason } = chooseIdMapping(
    config.userNamespace,
    config.idMapping,
    config.userNamespace === 'off' ? undefined : await probeUserNamespaceSupport(config.commandTimeoutMs),
  );
  if (withoutReason !== undefined) log.warn({ reason: withoutReason }, 'tasks run without their own user namespace');

  const tasksDir = join(config.dataDir, 'tasks');
  await mkdir(tasksDir, { recursive: true });
  if (idMapping !== undefined) {
    const blocked = await unsearchableAncestor(tasksDir);
    if (blocked !== undefined) {
      throw new ConfigError(
        'dataDir',
        `${blocked.dir} (mode ${blocked.mode.toString(8)}) is not searchable by the tasks' user namespace: give it o+x (0711) or set userNamespace to "off"`,
      );
    }
  }
  const transferLog = log.child({ component: 'transfer' });
  let staged: StagedCheckpoints;
  let shipper: CheckpointShipper;
  let transferServer: TransferServer | undefined;
  let transferTls: TransferTls | undefined;
  let store: CheckpointStore | undefined;
  if (config.tls) {
    const tls = await loadTransferTls(config.tls);
    store = await CheckpointStore.open({
      dir: config.storeDir,
      key: await loadOrCreateStoreKey(join(config.dataDir, 'store.key')),
      maxBytes: config.storeMaxBytes,
      logger: transferLog,
      clock,
    });
    transferTls = tls;
    staged = new StoreStagedCheckpoints(store);
    shipper = new TransferShipper(new TransferClient({ tls, logger: transferLog }));
  } else {
    // No TLS material: this node can checkpoint and restore locally, but neither sends nor receives.
    log.warn({}, 'transfer TLS not configured; State Transfer Protocol off');
    staged = new DirectoryStagedCheckpoints(join(config.dataDir, 'staged'));
    shipper = {
      ship: () =>
        Promise.reject(
          new NomadChainError('NC_FEATURE_UNAVAILABLE', 'this sidecar has no transfer TLS configured (tlsCaFile…)'),
        ),
    };
  }
  const { features, runtime, dumper, restorer, retained, migrator, prestager, locks } = await buildNodeCore(
    {
      nodeName: config.nodeName,
      dataDir: config.dataDir,
      runcBin: config.runcBin,
      criuBin: config.criuBin,
      commandTimeoutMs: config.commandTimeoutMs,
      taskNetworkNamespace: config.taskNetworkNamespace,
      cgroupParent: config.cgroupParent,
      ...(idMapping !== undefined ? { idMapping } : {}),
      ...(config.tls !== undefined ? { criuTls: config.tls } : {}),
      startTimeoutMs: config.startTimeoutMs,
      exitPollMs: 250,
      filesMaxBytes: config.filesMaxBytes,
      filesOverLimit: config.filesOverLimit,
      dumpTimeoutMs: config.dumpTimeoutMs,
      handoverRetentionMs: config.handoverRetentionMs,
      lazyPagesNetns: config.lazyPagesNetns,
      pageServerHost: config.pageServerHost,
      lazyConnectTimeoutMs: config.lazyConnectTimeoutMs,
      lazyTransferTimeoutMs: config.lazyTransferTimeoutMs,
    },
    { shipper, clock, log },
  );
  log.info({ ...features, idMapping: idMapping ?? null }, 'features probed');
  const checkpointLog = log.child({ component: 'checkpoint' });
  const lockedMigrator: Pick<PeerMigrator, 'migrate'> = {
    migrate: (request) => locks.withTask(request.taskId, () => migrator.migrate(request)),
  };
  if (transferTls !== undefined && store !== undefined) {
    // The transfer port also takes pre-stage requests from off the node (the forecaster in Nomad mode), behind
    // the same mutual TLS: there is no other port that accepts them.
    transferServer = new TransferServer({
      store,
      tls: transferTls,
      logger: transferLog,
      idleTimeoutMs: config.transferIdleTimeoutMs,
      services: [
        {
          definition: PeerPrestageService,
          implementation: peerPrestageService({ tasks: runtime, prestager, log: checkpointLog }),
        },
        // Peers drop here the background checkpoints of tasks that left them.
        {
          definition: BackgroundCheckpointsService,
          implementation: backgroundForgetService({ store, log: transferLog }),
        },
      ],
    });
    await transferServer.start(`${config.listenAddress}:${config.transferPort}`);
  }
  // The config refuses background checkpoints without transfer TLS.
  const background =
    config.backgroundCheckpointIntervalMs > 0 && transferTls !== undefined
      ? new BackgroundCheckpointer({
          tasks: runtime,
          dumper,
          shipper,
          buddy: new GrpcBuddy(config.backgroundBuddy, transferTls, BUDDY_CALL_TIMEOUT_MS),
          sent: await SentLedger.load(join(config.dataDir, 'background-sent.json'), config.backgroundBuddy, log),
          locks,
          clock,
          log: log.child({ component: 'background-checkpoints' }),
          intervalMs: config.backgroundCheckpointIntervalMs,
          buddyAddress: config.backgroundBuddy,
        })
      : undefined;
  background?.start();
  const telemetry = config.telemetry.enabled
    ? await createTelemetryAgent(config.telemetry, config.nodeName, clock, log.child({ component: 'telemetry' }))
    : undefined;
  telemetry?.agent.start();
  const api = new LocalApi(
    {
      nodeName: config.nodeName,
      transferAddress: config.advertiseAddress,
      restoreDir: join(config.dataDir, 'restore'),
      defaultStopTimeoutMs: config.stopTimeoutMs,
    },
    {
      runtime,
      dumper,
      restorer,
      migrator: lockedMigrator,
      prestager,
      staged,
      retained,
      features: () => features,
      clock,
      log: log.child({ component: 'local-api' }),
    },
  );
  const localServer = await serveLocalApi(api, config.localSocket);
  log.info({ socket: config.localSocket }, 'local API listening');

  const health = new HealthStatus({ '': true, sidecar: true });
  const server = new Server();
  server.addService(HealthService, healthService(health));
  const port = await bindServer(server, `${config.listenAddress}:${config.listenPort}`);
  log.info({ address: config.listenAddress, port }, 'sidecar listening');

  const stop = (signal: string): void => {
    log.info({ signal }, 'sidecar stopping');
    health.set('', false);
    // Tasks keep running: a new sidecar adopts them.
    runtime.close();
    void Promise.all([
      shutdownServer(server, 2000),
      shutdownServer(localServer, 2000),
      transferServer?.stop(2000),
      background?.stop(),
      telemetry?.stop(),
    ])
      .then(() => store?.close())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(
    `sidecar: ${err instanceof Error ? err.message : String(err)} (${errorCode(err) ?? 'NC_UNEXPECTED'})\n`,
  );
  process.exit(1);
});
