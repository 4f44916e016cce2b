import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BackgroundCheckpointsService } from '../../../../proto/gen/chain/v1/transfer';
import { backgroundKey } from '../../../../sidecar/src/background/background-checkpointer';
import { GrpcBuddy } from '../../../../sidecar/src/background/buddy-client';
import { backgroundForgetService } from '../../../../sidecar/src/background/forget-service';
import { CheckpointStore } from '../../../../sidecar/src/store/checkpoint-store';
import { TransferClient } from '../../../../sidecar/src/transfer/client';
import { TransferServer } from '../../../../sidecar/src/transfer/server';
import type { TransferTls } from '../../../../sidecar/src/transfer/tls';
import { makeCerts, makeCheckpointDir, removeAll, silentLogger, tempDir } from '../../../contract/transfer/fixtures';

const log = silentLogger();

// Real grpc-js over mutual TLS on 127.0.0.1:0: node a keeps background checkpoints on its buddy b.
describe('BackgroundCheckpoints.Forget on the buddy', () => {
  let root: string;
  let certs: Record<string, TransferTls>;
  let store: CheckpointStore;
  let server: TransferServer;
  let address: string;
  const buddyAs = (node: string): GrpcBuddy => new GrpcBuddy(address, certs[node] as TransferTls, 10_000);

  async function shipBackground(taskId: string, from = 'a'): Promise<string> {
    const work = join(root, `${taskId}-${from}-${Date.now()}`);
    await mkdir(work);
    const dir = await makeCheckpointDir(work, 512 * 1024);
    const client = new TransferClient({ tls: certs[from] as TransferTls, logger: log, callTimeoutMs: 20_000 });
    const source = { taskId, allocId: taskId, taskName: 'kv', jobId: 'kv', namespace: 'local' };
    const pushed = await client.push(address, { directory: dir }, { handoverKey: backgroundKey(taskId), source });
    return pushed.checkpointId;
  }

  beforeAll(async () => {
    root = await tempDir('forget');
    certs = await makeCerts(join(root, 'tls'), ['a', 'b', 'c']);
  });
  beforeEach(async () => {
    store = await CheckpointStore.open({
      dir: join(root, `store-${Date.now()}`),
      key: randomBytes(32),
      maxBytes: 1024 ** 3,
      logger: log,
    });
    server = new TransferServer({
      store,
      tls: certs.b as TransferTls,
      logger: log,
      services: [{ definition: BackgroundCheckpointsService, implementation: backgroundForgetService({ store, log }) }],
    });
    address = `127.0.0.1:${await server.start('127.0.0.1:0')}`;
  });
  afterEach(async () => {
    await server.stop(500);
    await store.close();
  });
  afterAll(async () => removeAll(root));

  it('drops the sender its own background checkpoint of a task, freeing the store, and keeps the others', async () => {
    const gone = await shipBackground('kv-1');
    const stays = await shipBackground('kv-2');
    expect(store.has(gone)).toBe(true);
    await expect(buddyAs('a').forget('kv-1')).resolves.toBe(true);
    expect(store.has(gone)).toBe(false);
    expect(await store.find(backgroundKey('kv-1'), 0)).toBeUndefined();
    expect(store.list().map((c) => c.checkpointId)).toEqual([stays]);
    // Already gone counts as done.
    await expect(buddyAs('a').forget('kv-1')).resolves.toBe(false);
  });

  it('refuses another node the sender’s checkpoint: a node that vanishes stays restorable', async () => {
    const kept = await shipBackground('kv-1', 'a');
    await expect(buddyAs('c').forget('kv-1')).resolves.toBe(false);
    expect((await store.find(backgroundKey('kv-1'), 0))?.checkpointId).toBe(kept);
  });

  it('fails with a typed, recoverable error when the buddy cannot be reached', async () => {
    const unreachable = new GrpcBuddy('127.0.0.1:1', certs.a as TransferTls, 2_000);
    await expect(unreachable.forget('kv-1')).rejects.toMatchObject({
      code: 'NC_TRANSFER_PEER_UNAVAILABLE',
      recoverable: true,
    });
  });
});
