// A receiver in its own process, so a test can kill it mid-transfer: `node -r scripts/register.js
// serve-fixture.ts TLS_DIR STORE_DIR KEY_HEX`. Prints {"port":N} first, then the server's pino lines.
import { join } from 'node:path';
import pino from 'pino';
import { CheckpointStore } from '../../../sidecar/src/store/checkpoint-store';
import { TransferServer } from '../../../sidecar/src/transfer/server';
import { loadTransferTls } from '../../../sidecar/src/transfer/tls';

async function main(tlsDir: string, storeDir: string, keyHex: string): Promise<void> {
  const logger = pino({ level: 'debug' }, pino.destination({ fd: 1, sync: true }));
  const tls = await loadTransferTls({
    caFile: join(tlsDir, 'ca.crt'),
    certFile: join(tlsDir, 'b.crt'),
    keyFile: join(tlsDir, 'b.key'),
  });
  const store = await CheckpointStore.open({
    dir: storeDir,
    key: Buffer.from(keyHex, 'hex'),
    maxBytes: 1024 ** 3,
    logger,
  });
  const server = new TransferServer({ store, tls, logger, maxInFlightBytes: 512 * 1024 });
  const port = await server.start('127.0.0.1:0');
  process.stdout.write(`${JSON.stringify({ port, checkpoints: store.list().length })}\n`);
}

main(process.argv[2] ?? '', process.argv[3] ?? '', process.argv[4] ?? '').catch((err: unknown) => {
  process.stderr.write(`serve-fixture: ${String(err)}\n`);
  process.exit(1);
});
