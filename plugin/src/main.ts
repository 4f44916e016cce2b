import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Server } from '@grpc/grpc-js';
import { SystemClock } from '../../common/clock';
import { ConsulAgent } from '../../common/consul';
import { errorCode, errorMessage } from '../../common/errors';
import { bindServer, shutdownServer } from '../../common/grpc/server';
import { createRootLogger } from '../../common/logging';
import { HttpNomadApi } from '../../common/nomad-api';
import { BasePlugin, PLUGIN_VERSION } from './base-plugin';
import type { RuntimeFactory } from './base-plugin';
import { Chaining } from './chaining';
import { ConsulHandover } from './consul-handover';
import { APP_PROTOCOL_VERSION, parseLaunchEnv } from './config';
import type { LaunchConfig } from './config';
import { ChainDriver } from './driver';
import { Fingerprinter } from './fingerprint';
import { addPluginServices } from './grpc-services';
import { NomadAllocationLookup } from './nomad-allocation-lookup';
import { GrpcSidecarApi } from '../../common/sidecar-api/grpc-sidecar-api';
import { TaskEventBus } from './task-events';
import { TaskStore } from './task-store';
import { HclConfigError } from './errors';

/** Read at SetConfig, so a missing or unreadable CA fails the agent's start naming the attribute. */
function readNomadCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new HclConfigError('NC_PLUGIN_CONFIG_INVALID', 'nomad_ca_file', `cannot be read: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

/** go-plugin's host waits 2 s after its Shutdown call before it kills the process. */
const SHUTDOWN_GRACE_MS = 500;

/**
 * Composition root of the `chain` driver plugin. stdout carries the go-plugin handshake line and nothing
 * else; logs are JSON lines on stderr in hclog's shape, which the Nomad agent re-logs at their level.
 */
async function main(launch: LaunchConfig): Promise<void> {
  const log = createRootLogger({ fd: 2, hclog: true, level: launch.logLevel });
  const clock = new SystemClock();
  const lifetime = new AbortController();

  const makeRuntime: RuntimeFactory = (config) => ({
    config,
    sidecar: new GrpcSidecarApi({ socketPath: config.sidecarSocket, timeoutMs: config.sidecarTimeoutMs }),
    lookup:
      config.nomadAddress === ''
        ? undefined
        : new NomadAllocationLookup(
            new HttpNomadApi({
              address: config.nomadAddress,
              token: config.nomadToken === '' ? undefined : config.nomadToken,
              tls: config.nomadCaFile === '' ? undefined : { ca: readNomadCa(config.nomadCaFile) },
            }),
          ),
  });
  const base = new BasePlugin(PLUGIN_VERSION, makeRuntime, log.child({ component: 'base' }));
  const events = new TaskEventBus(() => clock.now());
  const driverLog = log.child({ component: 'driver' });
  const driver = new ChainDriver({
    base,
    store: new TaskStore(),
    chaining: new Chaining(events, driverLog, (config) =>
      config.consulAddress === ''
        ? undefined
        : new ConsulHandover(
            new ConsulAgent({ address: config.consulAddress, token: config.consulToken }),
            clock,
            log.child({ component: 'consul-handover' }),
          ),
    ),
    fingerprinter: new Fingerprinter(base, PLUGIN_VERSION, clock, driverLog),
    events,
    clock,
    log: driverLog,
  });

  const socketDir = mkdtempSync(join(launch.socketParentDir, 'nomad-chain-plugin-'));
  const socketPath = join(socketDir, 'plugin.sock');
  const server = new Server();
  let stopping = false;
  const stop = (reason: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, 'plugin stopping; tasks keep running in the sidecar');
    lifetime.abort();
    base.close();
    void shutdownServer(server, SHUTDOWN_GRACE_MS).finally(() => {
      rmSync(socketDir, { recursive: true, force: true });
      process.exit(0);
    });
  };
  // Installed before the handshake: the host may stop the plugin as soon as it has read it.
  process.on('SIGTERM', () => stop('SIGTERM'));
  // Like go-plugin's servers: a Ctrl-C at the agent's terminal reaches the whole process group, and the agent
  // decides when its plugins stop (Kill → GRPCController.Shutdown).
  process.on('SIGINT', () => log.debug('SIGINT ignored; the host stops the plugin'));
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'plugin crashed');
    process.exit(1);
  });
  addPluginServices(
    server,
    base,
    driver,
    lifetime.signal,
    () => stop('controller shutdown'),
    log.child({ component: 'grpc' }),
  );
  await bindServer(server, `unix:${socketPath}`);

  process.stdout.write(`1|${APP_PROTOCOL_VERSION}|unix|${socketPath}|grpc|\n`);
  log.info({ socketPath, pid: process.pid, version: PLUGIN_VERSION }, 'plugin serving');
}

let launch: LaunchConfig;
try {
  launch = parseLaunchEnv(process.env);
} catch (err) {
  process.stderr.write(`${errorMessage(err)} (${errorCode(err) ?? 'NC_PLUGIN_COOKIE_MISMATCH'})\n`);
  process.exit(1);
}
main(launch).catch((err: unknown) => {
  process.stderr.write(
    `chain plugin: ${errorMessage(err)}${errorCode(err) === undefined ? '' : ` (${errorCode(err)})`}\n`,
  );
  process.exit(1);
});
