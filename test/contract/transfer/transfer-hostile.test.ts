import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { Metadata, status } from '@grpc/grpc-js';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { ERROR_CODE_TRAILER } from '../../../common/grpc/status-codec';
import { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import type { ChunkAck, ChunkFrame } from '../../../proto/gen/chain/v1/transfer';
import { StateTransferClient } from '../../../proto/gen/chain/v1/transfer';
import { CheckpointStore } from '../../../sidecar/src/store/checkpoint-store';
import { TransferClient } from '../../../sidecar/src/transfer/client';
import { TransferServer } from '../../../sidecar/src/transfer/server';
import { channelCredentials } from '../../../sidecar/src/transfer/tls';
import type { TransferTls } from '../../../sidecar/src/transfer/tls';
import { VERSION_HEADER } from '../../../sidecar/src/transfer/version';
import { makeCerts, makeCheckpointDir, removeAll, silentLogger, tempDir } from './fixtures';

// Hostile peers on the State Transfer Protocol (issue #13): a certificate of another cluster, a replayed
// push, a message over the receive limit, a client that opens an upload and then neither sends nor reads.
// Each against the real mTLS server on 127.0.0.1:0 and a real store; after each, an honest push still lands.
const log = silentLogger();
const IDLE_TIMEOUT_MS = 1500;

describe('State Transfer Protocol server against hostile peers (real grpc-js on 127.0.0.1:0)', () => {
  let root: string;
  let certs: Record<string, TransferTls>;
  let foreign: Record<string, TransferTls>;
  let store: CheckpointStore;
  let server: TransferServer;
  let address: string;
  let port: number;
  let src: string;

  const client = (tls: TransferTls = certs.a as TransferTls): TransferClient =>
    new TransferClient({ tls, logger: log, callTimeoutMs: 30_000 });

  const versioned = (): Metadata => {
    const m = new Metadata();
    m.set(VERSION_HEADER, '1');
    return m;
  };

  const codeOf = (err: ServiceError | null | undefined): string | undefined => {
    const v = err?.metadata?.get(ERROR_CODE_TRAILER)[0];
    return typeof v === 'string' ? v : undefined;
  };

  /** The first bytes the receiver sends a raw TLS client that opens HTTP/2 with `tls` (0: it hung up first). */
  const serverBytes = (tls: TransferTls): Promise<number> =>
    new Promise((resolve) => {
      let bytes = 0;
      const socket = connect({
        host: '127.0.0.1',
        port,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        checkServerIdentity: () => undefined,
        ALPNProtocols: ['h2'],
      });
      socket.on('data', (d: Buffer) => {
        bytes += d.length;
        socket.destroy();
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(bytes));
      socket.on('secureConnect', () => socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
    });

  async function honestPush(checkpointId: string): Promise<void> {
    const pushed = await client().push(
      address,
      { directory: src },
      { checkpointId, handoverKey: `honest/${checkpointId}` },
    );
    expect(pushed.checkpointId).toBe(checkpointId);
    expect(store.get(checkpointId)).toBeDefined();
  }

  beforeAll(async () => {
    root = await tempDir('hostile');
    certs = await makeCerts(join(root, 'tls'), ['a', 'b']);
    foreign = await makeCerts(join(root, 'tls-foreign'), ['a', 'b']);
    store = await CheckpointStore.open({
      dir: join(root, 'store'),
      key: randomBytes(32),
      maxBytes: 1024 ** 3,
      logger: log,
    });
    server = new TransferServer({ store, tls: certs.b as TransferTls, logger: log, idleTimeoutMs: IDLE_TIMEOUT_MS });
    port = await server.start('127.0.0.1:0');
    address = `127.0.0.1:${port}`;
    await mkdir(join(root, 'src'));
    src = await makeCheckpointDir(join(root, 'src'), 64 * 1024);
  });

  afterAll(async () => {
    await server?.stop(500);
    await store?.close();
    await removeAll(root);
  });

  it('ends the TLS handshake of a peer whose valid certificate another cluster signed; nothing is staged', async () => {
    // The outsider trusts this cluster's CA (it can verify the receiver) but proves itself with its own.
    const outsider = {
      ...(certs.a as TransferTls),
      cert: (foreign.a as TransferTls).cert,
      key: (foreign.a as TransferTls).key,
    };
    // At the TLS layer: the receiver ends the connection before a single HTTP/2 byte (its SETTINGS frame);
    // the same probe with this cluster's own certificate gets them.
    expect(await serverBytes(outsider)).toBe(0);
    expect(await serverBytes(certs.a as TransferTls)).toBeGreaterThan(0);
    // Through the real client: refused with a code, the receiver's store untouched.
    const refused = await client(outsider)
      .push(address, { directory: src }, { checkpointId: 'outsider', handoverKey: 'k' })
      .then(
        () => undefined,
        (err: unknown) => (err as { code?: string }).code,
      );
    expect(refused).toMatch(/^NC_TRANSFER_(PEER_UNAVAILABLE|AUTH_FAILED)$/);
    expect(store.get('outsider')).toBeUndefined();
    await honestPush('after-outsider');
  });

  it('files a replayed push once: the same checkpoint again changes nothing, another under its id is refused', async () => {
    await honestPush('replayed');
    const first = store.get('replayed');
    const count = store.list().length;
    await client().push(address, { directory: src }, { checkpointId: 'replayed', handoverKey: 'honest/replayed' });
    expect(store.get('replayed')).toEqual(first);
    expect(store.list()).toHaveLength(count);
    // A different checkpoint replayed under the same id.
    const other = await makeCheckpointDir(join(root, 'other'), 32 * 1024);
    await expect(
      client().push(address, { directory: other }, { checkpointId: 'replayed', handoverKey: 'k' }),
    ).rejects.toMatchObject({
      code: 'NC_STORE_CONFLICT',
    });
    expect(store.get('replayed')).toEqual(first);
  });

  it('refuses a message over the receive limit with RESOURCE_EXHAUSTED and keeps serving', async () => {
    const raw = new StateTransferClient(address, channelCredentials(certs.a as TransferTls), {
      'grpc.max_send_message_length': -1,
    });
    const info = CheckpointInfo.fromPartial({ checkpointId: 'huge', handoverKey: 'huge', manifestDigest: 'x' });
    const err = await new Promise<ServiceError | null>((resolve) =>
      raw.commit({ info, manifest: Buffer.alloc(65 * 1024 * 1024, 1) }, versioned(), (e) => resolve(e)),
    );
    raw.close();
    expect(err?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(store.get('huge')).toBeUndefined();
    await honestPush('after-huge');
  });

  it('cuts an upload that neither sends nor reads after the idle timeout, without holding up other pushes', async () => {
    const raw = new StateTransferClient(address, channelCredentials(certs.a as TransferTls));
    const stream: ClientDuplexStream<ChunkFrame, ChunkAck> = raw.uploadChunks(versioned());
    const ended = new Promise<ServiceError>((resolve) => stream.on('error', (e: ServiceError) => resolve(e)));
    // Never written to, never read: an honest push meanwhile is not held up by it.
    await honestPush('beside-idle');
    const err = await ended;
    expect(codeOf(err)).toBe('NC_TRANSFER_TIMEOUT');
    raw.close();
    await honestPush('after-idle');
  });
});
