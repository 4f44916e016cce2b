import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import pino from 'pino';
import { ERROR_CODE_TRAILER } from '../../../common/grpc/status-codec';
import type { ChunkAck, ChunkFrame } from '../../../proto/gen/chain/v1/transfer';
import { ChunkCodec, StateTransferClient } from '../../../proto/gen/chain/v1/transfer';
import { CheckpointStore } from '../../../sidecar/src/store/checkpoint-store';
import { TransferClient } from '../../../sidecar/src/transfer/client';
import { TransferServer } from '../../../sidecar/src/transfer/server';
import { FLOW_CONTROL_WINDOW_OPTION } from '../../../sidecar/src/transfer/http2-window';
import { channelCredentials } from '../../../sidecar/src/transfer/tls';
import type { TransferTls } from '../../../sidecar/src/transfer/tls';
import { VERSION_HEADER } from '../../../sidecar/src/transfer/version';
import { eventually } from '../../harness/eventually';
import { makeCerts, makeCheckpointDir, removeAll, silentLogger, tempDir } from './fixtures';

// A sender that keeps sending frames but stopped reading the acknowledgements (issue #13, a slow client that
// never reads). Before: every frame kept the upload alive, so the receiver read all it was sent and queued an
// acknowledgement for each, held by the stream for as long as the sender liked. Now the receiver stops reading
// once its acknowledgements back up, cuts the stream after the idle timeout with NC_TRANSFER_TIMEOUT logged
// once, and an honest push still lands. A refused sender that reads its acknowledgements late still gets the
// refusal's code (npm run fuzz -- -target transfer found it reset instead, 97 of 100,000 inputs, when the
// reset did not wait for the idle timeout). Real mTLS grpc-js server on 127.0.0.1:0 and a real store.
const IDLE_TIMEOUT_MS = 1500;
const FRAME_BYTES = 1024;
/**
 * Far more than the receiver takes from a sender that does not read: about 64 KiB of acknowledgements fill
 * the sender's HTTP/2 window (~1,400 of them), the receiver's 4 MiB window then holds ~4,000 frames.
 */
const FRAMES = 20_000;

interface LogLine {
  readonly msg?: string;
  readonly err?: { readonly code?: string };
}

describe('State Transfer Protocol server against a sender that does not read (real grpc-js on 127.0.0.1:0)', () => {
  let root: string;
  let certs: Record<string, TransferTls>;
  let store: CheckpointStore;
  let server: TransferServer;
  let address: string;
  const lines: LogLine[] = [];

  beforeAll(async () => {
    root = await tempDir('unread-acks');
    certs = await makeCerts(join(root, 'tls'), ['a', 'b']);
    store = await CheckpointStore.open({
      dir: join(root, 'store'),
      key: randomBytes(32),
      maxBytes: 1024 ** 3,
      logger: silentLogger(),
    });
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) });
    server = new TransferServer({ store, tls: certs.b as TransferTls, logger, idleTimeoutMs: IDLE_TIMEOUT_MS });
    address = `127.0.0.1:${await server.start('127.0.0.1:0')}`;
  });

  afterAll(async () => {
    await server?.stop(500);
    await store?.close();
    await removeAll(root);
  });

  it('answers a refused sender that reads its acknowledgements late with the coded refusal, not a reset', async () => {
    const data = randomBytes(FRAME_BYTES);
    const valid: ChunkFrame = {
      digest: createHash('sha256').update(data).digest(),
      codec: ChunkCodec.CHUNK_CODEC_NONE,
      rawSize: data.length,
      data,
    };
    // A receive window of one acknowledgement: the rest wait for the sender to read, as they do for a slow one.
    const raw = new StateTransferClient(address, channelCredentials(certs.a as TransferTls), {
      [FLOW_CONTROL_WINDOW_OPTION]: 64,
    });
    const metadata = new Metadata();
    metadata.set(VERSION_HEADER, '1');
    const stream: ClientDuplexStream<ChunkFrame, ChunkAck> = raw.uploadChunks(metadata);
    const ended = new Promise<ServiceError>((resolve) => stream.on('error', resolve));
    for (let i = 0; i < 5; i += 1) stream.write(valid);
    stream.write({ ...valid, digest: Buffer.alloc(3) });
    await eventually(async () => {
      if (!lines.some((l) => l.err?.code === 'NC_TRANSFER_FRAME_INVALID')) throw new Error('not refused yet');
    });
    // Only now does the sender read: its acknowledgements, then the refusal with its code.
    stream.on('data', () => undefined);
    const code = (await ended).metadata?.get(ERROR_CODE_TRAILER)[0];
    raw.close();
    expect(code).toBe('NC_TRANSFER_FRAME_INVALID');
  });

  it('stops reading, cuts the stream with NC_TRANSFER_TIMEOUT logged once, and serves the next push', async () => {
    const data = randomBytes(FRAME_BYTES);
    const frame: ChunkFrame = {
      digest: createHash('sha256').update(data).digest(),
      codec: ChunkCodec.CHUNK_CODEC_NONE,
      rawSize: data.length,
      data,
    };
    const metadata = new Metadata();
    metadata.set(VERSION_HEADER, '1');
    const raw = new StateTransferClient(address, channelCredentials(certs.a as TransferTls));
    const stream: ClientDuplexStream<ChunkFrame, ChunkAck> = raw.uploadChunks(metadata);
    const ended = new Promise<ServiceError>((resolve) => stream.on('error', resolve));
    // The first acknowledgement is read (the chunk is stored), then none.
    const firstAck = new Promise<void>((resolve) =>
      stream.once('data', () => {
        stream.pause();
        resolve();
      }),
    );
    stream.write(frame);
    await firstAck;

    let taken = 0;
    const sending = new Promise<'all taken' | 'blocked'>((resolve) => {
      const pump = (): void => {
        while (taken < FRAMES) {
          taken += 1;
          if (!stream.write(frame)) {
            stream.once('drain', pump);
            ended.then(
              () => resolve('blocked'),
              () => undefined,
            );
            return;
          }
        }
        resolve('all taken');
      };
      pump();
    });
    expect(await sending).toBe('blocked');
    await ended;
    raw.close();
    expect(taken).toBeLessThan(FRAMES);
    const refusals = lines.filter(
      (l) => l.msg === 'chunk upload refused' && l.err?.code !== 'NC_TRANSFER_FRAME_INVALID',
    );
    expect(refusals.map((l) => l.err?.code)).toEqual(['NC_TRANSFER_TIMEOUT']);

    const src = await makeCheckpointDir(join(root, 'src'), 64 * 1024);
    const client = new TransferClient({ tls: certs.a as TransferTls, logger: silentLogger(), callTimeoutMs: 30_000 });
    const pushed = await client.push(address, { directory: src }, { checkpointId: 'after-unread', handoverKey: 'k' });
    expect(pushed.checkpointId).toBe('after-unread');
    expect(store.get('after-unread')).toBeDefined();
  });
});
