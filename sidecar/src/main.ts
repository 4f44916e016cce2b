import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Server } from '@grpc/grpc-js';
import { errorCode } from '../../common/errors';
import { HealthStatus, healthService } from '../../common/grpc/health-service';
import { bindServer, shutdownServer } from '../../common/grpc/server';
import { createRootLogger } from '../../common/logging';
import { HealthService } from '../../proto/gen/grpc/health/v1/health';
import { parseConfig, rawOptionsFrom } from './config';

/** Composition root: the only place real dependencies are built. */
async function main(argv: readonly string[]): Promise<void> {
  const configIndex = argv.indexOf('--config');
  const configPath = configIndex >= 0 ? argv[configIndex + 1] : undefined;
  const config = parseConfig(
    rawOptionsFrom(process.env, configPath === undefined ? undefined : readFileSync(configPath, 'utf8')),
    hostname(),
  );
  const log = createRootLogger({ level: config.logLevel }).child({ component: 'sidecar', node: config.nodeName });

  const health = new HealthStatus({ '': true, sidecar: true });
  const server = new Server();
  server.addService(HealthService, healthService(health));
  const port = await bindServer(server, `${config.listenAddress}:${config.listenPort}`);
  log.info({ address: config.listenAddress, port }, 'sidecar listening');

  const stop = (signal: string): void => {
    log.info({ signal }, 'sidecar stopping');
    health.set('', false);
    void shutdownServer(server, 2000).then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`sidecar: ${err instanceof Error ? err.message : String(err)} (${errorCode(err) ?? 'NC_UNEXPECTED'})\n`);
  process.exit(1);
});
