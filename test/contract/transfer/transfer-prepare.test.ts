import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { join } from 'node:path';
import { CheckpointStore } from '../../../sidecar/src/store/checkpoint-store';
import { TransferClient } from '../../../sidecar/src/transfer/client';
import { TransferServer } from '../../../sidecar/src/transfer/server';
import type { TransferTls } from '../../../sidecar/src/transfer/tls';
import { makeCerts, makeCheckpointDir, removeAll, silentLogger, tempDir, treeDigest } from './fixtures';

const log = silentLogger();

/** A TCP relay in front of the receiver that counts the connections made through it. */
async function countingRelay(target: number): Promise<{ port: number; connections: () => number; close(): void }> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const relay: NetServer = createServer((inbound) => {
    connections += 1;
    const outbound = createConnection({ host: '127.0.0.1', port: target });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    port: (relay.address() as AddressInfo).port,
    connections: () => connections,
    close() {
      for (const s of sockets) s.destroy();
      relay.close();
    },
  };
}

describe('TransferClient.prepare: the connection a hand-over opens before its freeze', () => {
  let root: string;
  let certs: Record<string, TransferTls>;
  let store: CheckpointStore;
  let server: TransferServer;
  let port: number;

  beforeAll(async () => {
    root = await tempDir('prepare');
    certs = await makeCerts(join(root, 'tls'), ['a', 'b']);
    store = await CheckpointStore.open({
      dir: join(root, 'store'),
      key: randomBytes(32),
      maxBytes: 1024 ** 3,
      logger: log,
    });
    server = new TransferServer({ store, tls: certs.b as TransferTls, logger: log });
    port = await server.start('127.0.0.1:0');
  });
  afterAll(async () => {
    await server.stop(500);
    await store.close();
    await removeAll(root);
  });

  it('the push after a prepare travels on the prepared connection', async () => {
    const work = join(root, 'reuse');
    await mkdir(work);
    const src = await makeCheckpointDir(work, 1024 * 1024);
    const relay = await countingRelay(port);
    try {
      const client = new TransferClient({ tls: certs.a as TransferTls, logger: log, callTimeoutMs: 20_000 });
      const address = `127.0.0.1:${relay.port}`;
      await client.prepare(address);
      expect(relay.connections()).toBe(1);
      const result = await client.push(address, { directory: src }, { handoverKey: 'prepared/web' });
      expect(relay.connections()).toBe(1);
      await store.materialize(result.checkpointId, join(work, 'restored'));
      expect(await treeDigest(join(work, 'restored'))).toEqual(await treeDigest(src));
      // Used once: the next push connects again.
      await client.push(address, { directory: src }, { handoverKey: 'prepared/web-2' });
      expect(relay.connections()).toBe(2);
    } finally {
      relay.close();
    }
  });

  it('a prepare that cannot connect does not fail; the push then connects itself', async () => {
    const work = join(root, 'fallback');
    await mkdir(work);
    const src = await makeCheckpointDir(work, 512 * 1024);
    const relay = await countingRelay(port);
    const address = `127.0.0.1:${relay.port}`;
    const client = new TransferClient({ tls: certs.a as TransferTls, logger: log, callTimeoutMs: 20_000 });
    // The relay refuses until it listens again: close it, prepare, then serve on the same port.
    relay.close();
    await expect(client.prepare(address)).resolves.toBeUndefined();
    const again = createServer((inbound) => {
      const outbound = createConnection({ host: '127.0.0.1', port });
      inbound.on('error', () => undefined);
      outbound.on('error', () => undefined);
      inbound.pipe(outbound).pipe(inbound);
    });
    await new Promise<void>((resolve) => again.listen(relay.port, '127.0.0.1', resolve));
    try {
      const result = await client.push(address, { directory: src }, { handoverKey: 'fallback/web' });
      expect(store.has(result.checkpointId)).toBe(true);
    } finally {
      again.close();
    }
  });
});
