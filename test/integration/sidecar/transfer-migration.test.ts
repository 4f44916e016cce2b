import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { MigrationMode, TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { StoreStagedCheckpoints, TransferShipper } from '../../../sidecar/src/checkpoint/transfer-adapters';
import { CheckpointStore } from '../../../sidecar/src/store/checkpoint-store';
import { TransferClient } from '../../../sidecar/src/transfer/client';
import { TransferServer } from '../../../sidecar/src/transfer/server';
import type { TransferTls } from '../../../sidecar/src/transfer/tls';
import { loadTransferTls } from '../../../sidecar/src/transfer/tls';
import type { HarnessNode } from './node-harness';
import { eventually, identity, inNetns, log, makeNode, teardownNode } from './node-harness';
import { TestNetwork } from '../../harness/test-network';

const run = promisify(execFile);
const GEN_CERTS = resolve(__dirname, '../../../scripts/gen-certs.sh');

const SERVER = `
import socket, threading, time
data = bytearray(8 * 1024 * 1024)
for i in range(0, len(data), 4096):
    data[i] = (i // 4096) % 251
count = 0
def tick():
    global count
    while True:
        count += 1
        time.sleep(0.05)
threading.Thread(target=tick, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(8)
while True:
    c, _ = s.accept()
    ok = all(data[i] == (i // 4096) % 251 for i in range(0, len(data), 4096))
    c.sendall(f"{count} {ok}".encode()); c.close()
`;

// Real runc + CRIU + State Transfer Protocol: generous, never a performance assertion.
jest.setTimeout(300_000);

describe('migration between namespaces through the State Transfer Protocol (mutual TLS, encrypted store)', () => {
  let net: TestNetwork;
  let certDir: string;
  let a: HarnessNode;
  let b: HarnessNode;
  let storeA: CheckpointStore;
  let storeB: CheckpointStore;
  let serverB: TransferServer;
  let peerB: string;
  const storeDirs: string[] = [];

  async function tls(name: string): Promise<TransferTls> {
    return loadTransferTls({
      caFile: join(certDir, 'ca.crt'),
      certFile: join(certDir, `${name}.crt`),
      keyFile: join(certDir, `${name}.key`),
    });
  }

  beforeAll(async () => {
    net = TestNetwork.create(2);
    certDir = await mkdtemp(join(tmpdir(), 'a1-certs-'));
    await run('bash', [GEN_CERTS, certDir, 'a1-node-a', 'a1-node-b']);
    const [tlsA, tlsB] = [await tls('a1-node-a'), await tls('a1-node-b')];
    const open = async (name: string) => {
      const dir = await mkdtemp(join(tmpdir(), `a1-store-${name}-`));
      storeDirs.push(dir);
      return CheckpointStore.open({ dir, key: randomBytes(32), maxBytes: 4 * 1024 ** 3, logger: log });
    };
    storeA = await open('a');
    storeB = await open('b');
    serverB = new TransferServer({ store: storeB, tls: tlsB, logger: log });
    peerB = `127.0.0.1:${await serverB.start('127.0.0.1:0')}`;
    const shipper = new TransferShipper(new TransferClient({ tls: tlsA, logger: log }));
    a = await makeNode('tra', net.node(0), new Map(), shipper);
    b = await makeNode('trb', net.node(1), new Map());
  });

  afterAll(async () => {
    await teardownNode(a);
    await teardownNode(b);
    await serverB?.stop(1000);
    await storeA?.close();
    await storeB?.close();
    net?.destroy();
    await rm(certDir, { recursive: true, force: true });
    for (const dir of storeDirs) await rm(dir, { recursive: true, force: true });
  });

  const ask = async (node: HarnessNode) => {
    const out = await inNetns(node.net?.netnsPath ?? '', [
      '/usr/bin/python3',
      '-c',
      `import socket;s=socket.create_connection(('${node.net?.address ?? ''}',8080),timeout=5);print(s.recv(64).decode())`,
    ]);
    const [count, ok] = out.trim().split(' ');
    return { count: Number(count), intact: ok === 'True' };
  };

  it('ships the checkpoint over mTLS into the peer store, which restores it on the other namespace', async () => {
    const alloc = await a.allocDir('moving');
    await writeFile(join(alloc, 'server.py'), SERVER);
    await a.runtime.start(
      identity('moving'),
      TaskSpec.fromPartial({ argv: ['/usr/bin/python3', '/alloc/server.py'], allocDir: alloc }),
    );
    const before = await eventually(() => ask(a));

    const result = await a.migrator.migrate({
      taskId: 'moving',
      peerAddress: peerB,
      mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
      handoverKey: 'next-alloc/moving',
    });
    expect(result.wireBytes).toBeGreaterThan(0);
    expect((await a.runtime.inspect('moving')).record.phase).toBe('migrated');

    const stagedB = new StoreStagedCheckpoints(storeB);
    const found = await stagedB.find('next-alloc/moving', 10_000);
    expect(found?.checkpointId).toBe(result.meta.checkpointId);
    const dir = join(b.root, 'restore-moving');
    await stagedB.materialize(result.meta.checkpointId, dir);
    await b.restorer.restore({ identity: identity('moving-b'), checkpointDir: dir, spec: TaskSpec.fromPartial({}) });
    await stagedB.delete(result.meta.checkpointId);
    expect(await stagedB.get(result.meta.checkpointId)).toBeUndefined();

    const after = await eventually(() => ask(b));
    expect(after.intact).toBe(true);
    expect(after.count).toBeGreaterThanOrEqual(before.count);
    await b.runtime.stop('moving-b', 'SIGKILL', 5000);
  });

  it('keeps the task running at home when the peer refuses the transfer (no valid certificate)', async () => {
    const alloc = await a.allocDir('stay');
    await writeFile(join(alloc, 'server.py'), SERVER);
    await a.runtime.start(
      identity('stay'),
      TaskSpec.fromPartial({ argv: ['/usr/bin/python3', '/alloc/server.py'], allocDir: alloc }),
    );
    const before = await eventually(() => ask(a));
    // A peer whose CA is another one: the handshake fails and nothing is staged there.
    const otherCerts = await mkdtemp(join(tmpdir(), 'a1-othercerts-'));
    await run('bash', [GEN_CERTS, otherCerts, 'a1-stranger']);
    const stranger = new TransferServer({
      store: storeA,
      tls: await loadTransferTls({
        caFile: join(otherCerts, 'ca.crt'),
        certFile: join(otherCerts, 'a1-stranger.crt'),
        keyFile: join(otherCerts, 'a1-stranger.key'),
      }),
      logger: log,
    });
    const port = await stranger.start('127.0.0.1:0');
    try {
      const failure = await a.migrator
        .migrate({
          taskId: 'stay',
          peerAddress: `127.0.0.1:${port}`,
          mode: MigrationMode.MIGRATION_MODE_AUTO,
          handoverKey: 'x',
        })
        .catch((err: unknown) => err);
      expect((failure as { code?: string }).code).toMatch(/^NC_TRANSFER_/);
    } finally {
      await stranger.stop(1000);
      await rm(otherCerts, { recursive: true, force: true });
    }
    expect((await a.runtime.inspect('stay')).record.phase).toBe('running');
    const after = await eventually(() => ask(a));
    expect(after.intact).toBe(true);
    expect(after.count).toBeGreaterThanOrEqual(before.count);
    await a.runtime.stop('stay', 'SIGKILL', 5000);
  });
});
