import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import type { Server as NetServer, Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Metadata, credentials } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { ChunkCodec, StateTransferClient } from '../../../proto/gen/chain/v1/transfer';
import { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import { CheckpointStore } from '../../../sidecar/src/store/checkpoint-store';
import { sha256 } from '../../../sidecar/src/transfer/chunker';
import { TransferClient } from '../../../sidecar/src/transfer/client';
import { sealManifest } from '../../../sidecar/src/transfer/manifest';
import { TransferServer } from '../../../sidecar/src/transfer/server';
import { ERROR_CODE_TRAILER } from '../../../common/grpc/status-codec';
import { peerFailure } from '../../../sidecar/src/transfer/peer-failure';
import { channelCredentials } from '../../../sidecar/src/transfer/tls';
import type { TransferTls } from '../../../sidecar/src/transfer/tls';
import { VERSION_HEADER } from '../../../sidecar/src/transfer/version';
import {
  makeCerts,
  makeCheckpointDir,
  mutate,
  pseudoRandom,
  removeAll,
  silentLogger,
  tempDir,
  treeDigest,
} from './fixtures';

const REPO = resolve(__dirname, '../../..');
const log = silentLogger();

interface Receiver {
  store: CheckpointStore;
  server: TransferServer;
  port: number;
  address: string;
}

describe('State Transfer Protocol over mutual TLS (real grpc-js on 127.0.0.1:0)', () => {
  let root: string;
  let certs: Record<string, TransferTls>;
  let foreign: Record<string, TransferTls>;
  const receivers: Receiver[] = [];

  async function receiver(
    options: { maxBytes?: number; dir?: string; versions?: { min: number; max: number } } = {},
  ): Promise<Receiver> {
    const store = await CheckpointStore.open({
      dir: options.dir ?? join(root, `store-${receivers.length}`),
      key: randomBytes(32),
      maxBytes: options.maxBytes ?? 1024 ** 3,
      logger: log,
    });
    const server = new TransferServer({
      store,
      tls: certs.b as TransferTls,
      logger: log,
      ...(options.versions ? { versions: options.versions } : {}),
    });
    const port = await server.start('127.0.0.1:0');
    const r = { store, server, port, address: `127.0.0.1:${port}` };
    receivers.push(r);
    return r;
  }

  const client = (
    tls: TransferTls = certs.a as TransferTls,
    extra: { versions?: { min: number; max: number } } = {},
  ): TransferClient => new TransferClient({ tls, logger: log, callTimeoutMs: 20_000, ...extra });

  function rawClient(address: string): StateTransferClient {
    return new StateTransferClient(address, channelCredentials(certs.a as TransferTls));
  }

  function versioned(): Metadata {
    const m = new Metadata();
    m.set(VERSION_HEADER, '1');
    return m;
  }

  function codeOf(err: ServiceError | null): string | undefined {
    const v = err?.metadata?.get(ERROR_CODE_TRAILER)[0];
    return typeof v === 'string' ? v : undefined;
  }

  beforeAll(async () => {
    root = await tempDir('contract');
    certs = await makeCerts(join(root, 'tls'), ['a', 'b']);
    foreign = await makeCerts(join(root, 'tls-foreign'), ['a', 'b']);
  });
  afterEach(async () => {
    for (const r of receivers.splice(0)) {
      await r.server.stop(500);
      await r.store.close();
    }
  });
  afterAll(async () => removeAll(root));

  it('round-trips a multi-file directory byte for byte, leaving the source untouched', async () => {
    const work = join(root, 'roundtrip');
    await mkdir(work);
    const src = await makeCheckpointDir(work, 3 * 1024 * 1024);
    const before = await treeDigest(src);
    const r = await receiver();
    const source = { taskId: 't1', allocId: 'alloc-1', taskName: 'web', jobId: 'j', namespace: 'default' };
    const result = await client().push(r.address, { directory: src }, { handoverKey: 'alloc-2/web', source });
    expect(result.peerNode).toBe('b');
    // The receiver names the sender by its certificate.
    expect(result.checkpoint.sourceNode).toBe('a');
    expect(result.checkpoint.source?.taskId).toBe('t1');
    expect(result.plainBytes).toBeGreaterThan(9 * 1024 * 1024);
    expect(await treeDigest(src)).toEqual(before);
    expect((await r.store.find('alloc-2/web', 0))?.manifestDigest).toBe(result.manifestDigest);
    await r.store.materialize(result.checkpointId, join(work, 'restored'));
    expect(await treeDigest(join(work, 'restored'))).toEqual(before);
    // Back-pressure: never more than the window in flight.
    expect(result.peakInFlightBytes).toBeLessThanOrEqual(8 * 1024 * 1024);
  });

  it('after 5 % of the bytes change, a second push sends <= 10 % of the first push bytes', async () => {
    const work = join(root, 'incremental');
    const src = join(work, 'images');
    await mkdir(src, { recursive: true });
    // Random pages, as most of a real image is (zero pages and repeated text deduplicate and compress,
    // which shrinks the first push and says nothing about what the change costs).
    await writeFile(join(src, 'pages-1.img'), pseudoRandom('inc-1', 8 * 1024 * 1024));
    await writeFile(join(src, 'pages-2.img'), pseudoRandom('inc-2', 4 * 1024 * 1024 + 777));
    await writeFile(join(src, 'core-1.img'), pseudoRandom('inc-3', 9000));
    const r = await receiver();
    const c = client();
    const first = await c.push(r.address, { directory: src }, { handoverKey: 'alloc-2/web' });
    let changed = 0;
    for (const name of ['pages-1.img', 'pages-2.img']) changed += await mutate(join(src, name), 0.05, 256 * 1024, name);
    expect(changed / first.plainBytes).toBeGreaterThan(0.04);
    const second = await c.push(r.address, { directory: src }, { handoverKey: 'alloc-2/web' });
    expect(second.skippedChunks).toBeGreaterThan(second.sentChunks);
    expect(second.wireBytes).toBeLessThanOrEqual(0.1 * first.wireBytes);
    await r.store.materialize(second.checkpointId, join(work, 'restored'));
    expect(await treeDigest(join(work, 'restored'))).toEqual(await treeDigest(src));
    // The newer round replaced the older one under the same handover key.
    expect(r.store.has(first.checkpointId)).toBe(false);
  });

  it('pushes a checkpoint already staged in the sender store', async () => {
    const work = join(root, 'from-store');
    await mkdir(work);
    const src = await makeCheckpointDir(work, 512 * 1024);
    const local = await CheckpointStore.open({
      dir: join(work, 'local'),
      key: randomBytes(32),
      maxBytes: 1024 ** 3,
      logger: log,
    });
    const staged = await local.stageFromDirectory(src, { handoverKey: 'x' });
    const r = await receiver();
    const pushed = await client().push(
      r.address,
      { store: local, checkpointId: staged.checkpointId },
      { handoverKey: 'y', checkpointId: staged.checkpointId },
    );
    expect(pushed.manifestDigest).toBe(staged.manifestDigest);
    await r.store.materialize(pushed.checkpointId, join(work, 'out'));
    expect(await treeDigest(join(work, 'out'))).toEqual(await treeDigest(src));
    await local.close();
  });

  it('refuses a corrupt chunk and a frame shorter than it claims, storing neither', async () => {
    const r = await receiver();
    const raw = rawClient(r.address);
    const data = pseudoRandom('chunk', 40_000);
    for (const frame of [
      {
        digest: sha256(data),
        codec: ChunkCodec.CHUNK_CODEC_NONE,
        rawSize: data.length,
        data: Buffer.concat([data.subarray(0, 100), Buffer.from([data[100]! ^ 1]), data.subarray(101)]),
      },
      {
        digest: sha256(data),
        codec: ChunkCodec.CHUNK_CODEC_NONE,
        rawSize: data.length,
        data: data.subarray(0, 30_000),
      },
    ]) {
      const err = await new Promise<ServiceError>((ok) => {
        const call = raw.uploadChunks(versioned());
        call.on('data', () => undefined);
        call.on('error', ok);
        call.write(frame);
        call.end();
      });
      expect(codeOf(err)).toBe('NC_TRANSFER_CHUNK_CORRUPT');
      expect(r.store.hasChunk(sha256(data).toString('hex'))).toBe(false);
    }
    raw.close();
  });

  it('refuses a commit after a truncated upload, and a manifest that does not match its digest', async () => {
    const r = await receiver();
    const raw = rawClient(r.address);
    const a = pseudoRandom('a', 20_000);
    const b = pseudoRandom('b', 20_000);
    // Only the first chunk arrives before the stream ends.
    await new Promise<void>((ok, fail) => {
      const call = raw.uploadChunks(versioned());
      call.on('data', () => undefined);
      call.on('error', fail);
      call.on('status', () => ok());
      call.write({ digest: sha256(a), codec: ChunkCodec.CHUNK_CODEC_NONE, rawSize: a.length, data: a });
      call.end();
    });
    const manifest = sealManifest({
      format: 1,
      totalBytes: 40_000,
      files: [
        {
          path: 'pages-1.img',
          mode: 0o600,
          sizeBytes: 40_000,
          chunkDigests: Buffer.concat([sha256(a), sha256(b)]),
          chunkSizes: [20_000, 20_000],
          directory: false,
        },
      ],
    });
    const commit = (info: CheckpointInfo, bytes: Buffer): Promise<ServiceError | null> =>
      new Promise((ok) => raw.commit({ info, manifest: bytes }, versioned(), (err) => ok(err)));
    const info = CheckpointInfo.fromPartial({ checkpointId: 'c1', handoverKey: 'k', manifestDigest: manifest.digest });
    expect(codeOf(await commit(info, manifest.bytes))).toBe('NC_TRANSFER_CHUNKS_MISSING');
    const lying = { ...info, manifestDigest: sealManifest({ format: 1, files: [], totalBytes: 0 }).digest };
    expect(codeOf(await commit(lying, manifest.bytes))).toBe('NC_TRANSFER_MANIFEST_MISMATCH');
    expect(r.store.list()).toEqual([]);
    expect(await r.store.find('k', 0)).toBeUndefined();
    raw.close();
  });

  it('refuses a peer that speaks another protocol version', async () => {
    const work = join(root, 'version');
    await mkdir(work);
    const src = await makeCheckpointDir(work, 64 * 1024);
    const before = await treeDigest(src);
    const r = await receiver({ versions: { min: 2, max: 3 } });
    await expect(client().push(r.address, { directory: src }, { handoverKey: 'k' })).rejects.toMatchObject({
      code: 'NC_TRANSFER_VERSION_MISMATCH',
    });
    await expect(
      client(certs.a, { versions: { min: 7, max: 9 } }).push(r.address, { directory: src }, { handoverKey: 'k' }),
    ).rejects.toMatchObject({
      code: 'NC_TRANSFER_VERSION_MISMATCH',
    });
    // A call that skips the handshake carries no version and is refused too.
    const raw = rawClient(r.address);
    const err = await new Promise<ServiceError | null>((ok) =>
      raw.haveChunks({ digests: [] }, new Metadata(), (e) => ok(e)),
    );
    expect(codeOf(err)).toBe('NC_TRANSFER_VERSION_MISMATCH');
    raw.close();
    expect(r.store.list()).toEqual([]);
    expect(await treeDigest(src)).toEqual(before);
  });

  it('refuses peers without a valid certificate', async () => {
    const work = join(root, 'certs');
    await mkdir(work);
    const src = await makeCheckpointDir(work, 64 * 1024);
    const r = await receiver();
    // A client that trusts the cluster CA but holds a certificate another CA signed: the receiver ends
    // the handshake. grpc-js reports only "Failed to connect" to such a client (TLS 1.3 verifies the client
    // after the client thinks the handshake is done), so the sender cannot tell this from a peer that is
    // down: it gets the recoverable NC_TRANSFER_PEER_UNAVAILABLE, and nothing is staged.
    const outsider = {
      ...(certs.a as TransferTls),
      cert: (foreign.a as TransferTls).cert,
      key: (foreign.a as TransferTls).key,
    };
    await expect(client(outsider).push(r.address, { directory: src }, { handoverKey: 'k' })).rejects.toMatchObject({
      code: 'NC_TRANSFER_PEER_UNAVAILABLE',
    });
    // No client certificate at all: the receiver's alert names the missing certificate.
    const anonymous = new StateTransferClient(r.address, credentials.createSsl((certs.a as TransferTls).ca));
    const err = await new Promise<ServiceError | null>((ok) =>
      anonymous.hello({ minVersion: 1, maxVersion: 1 }, (e) => ok(e)),
    );
    anonymous.close();
    expect(err).not.toBeNull();
    expect(peerFailure(err as ServiceError, r.address).code).toBe('NC_TRANSFER_AUTH_FAILED');
    // A receiver whose certificate another CA signed: the sender refuses it.
    const impostorStore = await CheckpointStore.open({
      dir: join(work, 'impostor'),
      key: randomBytes(32),
      maxBytes: 1024 ** 2 * 64,
      logger: log,
    });
    const impostor = new TransferServer({ store: impostorStore, tls: foreign.b as TransferTls, logger: log });
    const port = await impostor.start('127.0.0.1:0');
    try {
      await expect(client().push(`127.0.0.1:${port}`, { directory: src }, { handoverKey: 'k' })).rejects.toMatchObject({
        code: 'NC_TRANSFER_AUTH_FAILED',
      });
      expect(impostorStore.list()).toEqual([]);
    } finally {
      await impostor.stop(500);
    }
    expect(r.store.list()).toEqual([]);
  });

  it('fails with NC_STORE_FULL when the receiver store cannot take the checkpoint', async () => {
    const work = join(root, 'full');
    await mkdir(work);
    const src = await makeCheckpointDir(work, 1024 * 1024);
    const before = await treeDigest(src);
    const r = await receiver({ maxBytes: 1024 * 1024 });
    await expect(client().push(r.address, { directory: src }, { handoverKey: 'k' })).rejects.toMatchObject({
      code: 'NC_STORE_FULL',
    });
    expect(r.store.list()).toEqual([]);
    expect(await treeDigest(src)).toEqual(before);
  });

  it('fails with NC_STORE_FULL when the receiver disk is full (a 2 MiB tmpfs)', async () => {
    const work = join(root, 'tmpfs');
    await mkdir(join(work, 'mnt'), { recursive: true });
    const src = await makeCheckpointDir(work, 1024 * 1024);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'nc-a2-tmpfs', join(work, 'mnt')]);
    try {
      const r = await receiver({ dir: join(work, 'mnt', 'store') });
      await expect(client().push(r.address, { directory: src }, { handoverKey: 'k' })).rejects.toMatchObject({
        code: 'NC_STORE_FULL',
      });
      expect(r.store.list()).toEqual([]);
      await r.server.stop(500);
      await r.store.close();
      receivers.splice(receivers.indexOf(r), 1);
    } finally {
      execFileSync('umount', [join(work, 'mnt')]);
    }
  });

  it('reports a receiver that dies mid-transfer; nothing is filed from the partial upload', async () => {
    const work = join(root, 'dies');
    await mkdir(work);
    const src = await makeCheckpointDir(work, 6 * 1024 * 1024);
    const before = await treeDigest(src);
    const storeDir = join(work, 'store');
    const keyHex = randomBytes(32).toString('hex');
    const start = async (): Promise<{ child: ChildProcess; port: number; lines: AsyncIterator<string> }> => {
      const child = spawn(
        process.execPath,
        [
          '-r',
          join(REPO, 'scripts/register.js'),
          join(__dirname, 'serve-fixture.ts'),
          join(root, 'tls'),
          storeDir,
          keyHex,
        ],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
      // The server logs before the fixture prints its port line.
      for (let line = await lines.next(); !line.done; line = await lines.next()) {
        const parsed = JSON.parse(line.value) as { port?: number; msg?: string };
        if (parsed.msg === undefined && typeof parsed.port === 'number') return { child, port: parsed.port, lines };
      }
      throw new Error('serve-fixture exited without printing its port');
    };
    const victim = await start();
    const push = client().push(`127.0.0.1:${victim.port}`, { directory: src }, { handoverKey: 'k' });
    push.catch(() => undefined);
    let stored = 0;
    for (let line = await victim.lines.next(); !line.done; line = await victim.lines.next()) {
      if (line.value.includes('"chunk stored"')) stored += 1;
      if (stored >= 5) break;
    }
    victim.child.kill('SIGKILL');
    await expect(push).rejects.toMatchObject({ code: 'NC_TRANSFER_PEER_UNAVAILABLE', recoverable: true });
    expect(await treeDigest(src)).toEqual(before);
    // Restarted on the same store: nothing was filed, and a new push goes through.
    const again = await start();
    try {
      const result = await client().push(`127.0.0.1:${again.port}`, { directory: src }, { handoverKey: 'k' });
      expect(result.manifestDigest).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      again.child.kill('SIGKILL');
    }
    const records = await readdir(join(storeDir, 'checkpoints'));
    expect(records.length).toBe(1);
  });

  it('resumes after a dropped connection: only the missing chunks travel again', async () => {
    const work = join(root, 'resume');
    await mkdir(work);
    const src = await makeCheckpointDir(work, 4 * 1024 * 1024);
    const r = await receiver();
    // A TCP relay that cuts the connection once 3 MB have gone through.
    const sockets = new Set<Socket>();
    let relayed = 0;
    let cut = false;
    const relay: NetServer = createServer((inbound) => {
      const outbound = createConnection({ host: '127.0.0.1', port: r.port });
      sockets.add(inbound).add(outbound);
      inbound.on('data', (d: Buffer) => {
        relayed += d.length;
        if (relayed > 3_000_000 && !cut) {
          cut = true;
          for (const s of sockets) s.destroy();
          return;
        }
        outbound.write(d);
      });
      outbound.on('data', (d: Buffer) => inbound.write(d));
      inbound.on('error', () => undefined).on('close', () => outbound.destroy());
      outbound.on('error', () => undefined).on('close', () => inbound.destroy());
    });
    await new Promise<void>((ok) => relay.listen(0, '127.0.0.1', ok));
    const relayPort = (relay.address() as { port: number }).port;
    const c = client();
    try {
      await expect(c.push(`127.0.0.1:${relayPort}`, { directory: src }, { handoverKey: 'k' })).rejects.toMatchObject({
        code: 'NC_TRANSFER_PEER_UNAVAILABLE',
      });
    } finally {
      relay.close();
    }
    expect(cut).toBe(true);
    expect(r.store.list()).toEqual([]);
    const resumed = await c.push(r.address, { directory: src }, { handoverKey: 'k' });
    const fresh = await receiver();
    const full = await c.push(fresh.address, { directory: src }, { handoverKey: 'k' });
    expect(resumed.skippedChunks).toBeGreaterThan(full.skippedChunks);
    expect(resumed.wireBytes).toBeLessThan(full.wireBytes);
    expect(resumed.wireBytes + 1_000_000).toBeLessThan(full.wireBytes);
    await r.store.materialize(resumed.checkpointId, join(work, 'out'));
    expect(await treeDigest(join(work, 'out'))).toEqual(await treeDigest(src));
    expect((await stat(join(work, 'out'))).isDirectory()).toBe(true);
    expect((await readFile(join(work, 'out', 'inventory.img'))).toString()).toBe('inventory');
  });
});
