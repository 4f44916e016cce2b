import { createHash, randomBytes } from 'node:crypto';
import { lstat, readdir, realpath, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, makeGenericClientConstructor, status } from '@grpc/grpc-js';
import type { Client, ServiceError } from '@grpc/grpc-js';
import type { Logger } from '../../../common/logging';
import { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import {
  ChunkCodec,
  ChunkFrame,
  CommitRequest,
  HaveChunksRequest,
  HelloRequest,
  Manifest,
} from '../../../proto/gen/chain/v1/transfer';
import type { ManifestFile } from '../../../proto/gen/chain/v1/transfer';
import { CheckpointStore } from '../../../sidecar/src/store/checkpoint-store';
import { TransferClient } from '../../../sidecar/src/transfer/client';
import { MANIFEST_FORMAT, manifestDigest } from '../../../sidecar/src/transfer/manifest';
import { TransferServer } from '../../../sidecar/src/transfer/server';
import { ERROR_CODE_TRAILER } from '../../../common/grpc/status-codec';
import { channelCredentials } from '../../../sidecar/src/transfer/tls';
import type { TransferTls } from '../../../sidecar/src/transfer/tls';
import { VERSION_HEADER } from '../../../sidecar/src/transfer/version';
import { BOUNDARY_INTS, OutcomeTally, Rng, mutateBytes } from './mutator';

/**
 * Fuzzes a real State Transfer Protocol server (mutual TLS on 127.0.0.1:0, a real checkpoint store) with
 * random and mutated valid messages on every RPC: byte-mutated encodings, hostile field values (digest
 * lengths, sizes, codecs, versions), and manifests rewritten with `../` paths, absolute paths, NULs, modes
 * outside the permission bits, sizes that do not add up — resealed, so they reach validation rather than stop
 * at the digest. Every answer must be success or a refusal carrying a nomad-chain code (or grpc-js's own
 * refusal of bytes that do not decode); afterwards every checkpoint the store filed must materialise inside its
 * directory, and an honest push must still succeed.
 */

const identity = (b: Buffer): Buffer => b;
const RAW_SERVICE = {
  hello: { path: '/chain.v1.StateTransfer/Hello', requestStream: false, responseStream: false },
  haveChunks: { path: '/chain.v1.StateTransfer/HaveChunks', requestStream: false, responseStream: false },
  uploadChunks: { path: '/chain.v1.StateTransfer/UploadChunks', requestStream: true, responseStream: true },
  commit: { path: '/chain.v1.StateTransfer/Commit', requestStream: false, responseStream: false },
};
type Rpc = keyof typeof RAW_SERVICE;
const definition = Object.fromEntries(
  Object.entries(RAW_SERVICE).map(([name, d]) => [
    name,
    {
      ...d,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  ]),
);
const RawClient = makeGenericClientConstructor(definition, 'StateTransfer');

const HOSTILE_PATHS = [
  '../escape',
  '/etc/passwd',
  'a/../../b',
  '',
  '.',
  'a//b',
  'a/./b',
  'nul\u0000x',
  'x/',
  `${'d/'.repeat(300)}f`,
];
const CALL_TIMEOUT_MS = 10_000;

export interface TransferFuzzOptions {
  readonly iterations: number;
  readonly seed: number;
  readonly workDir: string;
  /** The receiver's and the sender's node certificates, of one cluster. */
  readonly receiverTls: TransferTls;
  readonly senderTls: TransferTls;
  readonly log: Logger;
  /** A small checkpoint-like directory the honest pushes send. */
  readonly honestDir: string;
}

export interface TransferFuzzResult {
  readonly tally: OutcomeTally;
  /** Checkpoints the store filed from fuzzed commits (each materialised and checked). */
  readonly filedFromFuzz: number;
}

interface Outcome {
  readonly ok: boolean;
  readonly label: string;
  readonly defect?: string;
}

function classify(rpc: Rpc, err: ServiceError | null | undefined): Outcome {
  if (!err) return { ok: true, label: `accepted ${rpc}` };
  const code = err.metadata?.get(ERROR_CODE_TRAILER)[0];
  if (typeof code === 'string' && /^NC_[A-Z0-9_]+$/.test(code) && code !== 'NC_TRANSFER_REMOTE')
    return { ok: false, label: `refused ${code}` };
  // grpc-js refuses a request whose bytes its deserializer cannot read before any handler runs.
  if (err.code === status.INTERNAL && err.details === 'Error deserializing request')
    return { ok: false, label: `undecodable ${rpc}` };
  return { ok: false, label: 'DEFECT', defect: `${rpc}: grpc ${err.code} without a code: ${err.details}` };
}

function unary(client: Client, rpc: Rpc, body: Buffer, metadata: Metadata): Promise<Outcome> {
  return new Promise((resolve) => {
    const method = (client as unknown as Record<string, (...args: unknown[]) => void>)[rpc] as (
      ...args: unknown[]
    ) => void;
    method.call(client, body, metadata, { deadline: Date.now() + CALL_TIMEOUT_MS }, (err: ServiceError | null) =>
      resolve(classify(rpc, err)),
    );
  });
}

function upload(client: Client, frames: readonly Buffer[], metadata: Metadata): Promise<Outcome> {
  return new Promise((resolve) => {
    const method = (client as unknown as Record<string, (...args: unknown[]) => NodeJS.ReadWriteStream>)
      .uploadChunks as (
      ...args: unknown[]
    ) => NodeJS.ReadWriteStream & { on(event: string, fn: (arg: unknown) => void): void };
    const stream = method.call(client, metadata, { deadline: Date.now() + CALL_TIMEOUT_MS });
    let settled = false;
    const done = (outcome: Outcome): void => {
      if (!settled) resolve(outcome);
      settled = true;
    };
    stream.on('data', () => undefined);
    stream.on('error', (err) => done(classify('uploadChunks', err as ServiceError)));
    stream.on('end', () => done(classify('uploadChunks', null)));
    for (const frame of frames) stream.write(frame);
    stream.end();
  });
}

function versioned(rng: Rng): Metadata {
  const metadata = new Metadata();
  const roll = rng.int(20);
  if (roll === 0) return metadata;
  metadata.set(VERSION_HEADER, roll === 1 ? rng.pick(['0', '2', '-1', 'x', '1.5', '99999999999']) : '1');
  return metadata;
}

function chunkFrame(rng: Rng, pool: readonly Buffer[]): Buffer {
  const plain = rng.next() < 0.5 ? rng.pick(pool) : rng.bytes(1 + rng.int(4096));
  const frame = {
    digest: createHash('sha256').update(plain).digest() as Buffer,
    codec: ChunkCodec.CHUNK_CODEC_NONE,
    rawSize: plain.length,
    data: plain,
  };
  switch (rng.int(7)) {
    case 0:
      frame.digest = rng.bytes(rng.pick([0, 31, 33, 64]));
      break;
    case 1:
      frame.rawSize = rng.pick(BOUNDARY_INTS) >>> 0;
      break;
    case 2:
      frame.codec = rng.pick([1, 2, 3, 77, -1]) as ChunkCodec;
      break;
    case 3:
      frame.data = mutateBytes(rng, plain);
      break;
    case 4:
      return mutateBytes(rng, Buffer.from(ChunkFrame.encode(frame).finish()));
    default:
  }
  return Buffer.from(ChunkFrame.encode(frame).finish());
}

/** A manifest over chunks the receiver holds, then bent by one hostile edit and resealed. */
function hostileManifest(rng: Rng, pool: readonly Buffer[]): Manifest {
  const files: ManifestFile[] = Array.from({ length: 1 + rng.int(3) }, (_, i) => {
    const chunk = rng.pick(pool);
    return {
      path: `f${i}.img`,
      mode: 0o600,
      sizeBytes: chunk.length,
      chunkDigests: createHash('sha256').update(chunk).digest(),
      chunkSizes: [chunk.length],
      directory: false,
    };
  });
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    files,
    totalBytes: files.reduce((s, f) => s + f.sizeBytes, 0),
  };
  const victim = rng.pick(files);
  switch (rng.int(9)) {
    case 0:
      victim.path = rng.pick(HOSTILE_PATHS);
      break;
    case 1:
      victim.mode = rng.pick([0o4755, 0o2755, 0o20644, 0o60600, 0o10000, 0xffffffff]);
      break;
    case 2:
      victim.sizeBytes += 1 + rng.int(100);
      break;
    case 3:
      victim.chunkSizes = [0];
      break;
    case 4:
      victim.chunkDigests = rng.bytes(32);
      break;
    case 5:
      manifest.files.push({ ...victim });
      break;
    case 6:
      victim.directory = true;
      break;
    case 7:
      manifest.format = rng.pick([0, 2, 0xffffffff]);
      break;
    default:
      manifest.files.push({ ...victim, path: `${victim.path}/under-a-file` });
  }
  return manifest;
}

function commitBody(rng: Rng, pool: readonly Buffer[]): Buffer {
  const manifest = Buffer.from(Manifest.encode(hostileManifest(rng, pool)).finish());
  const info = CheckpointInfo.fromPartial({
    checkpointId: rng.next() < 0.2 ? rng.pick(['../x', '', 'a/b', 'x'.repeat(5000), '\u0000']) : `fuzz-${rng.int(1e9)}`,
    handoverKey: rng.next() < 0.2 ? rng.pick(HOSTILE_PATHS) : 'fuzz/handover',
    manifestDigest: rng.next() < 0.1 ? manifestDigest(rng.bytes(8)) : manifestDigest(manifest),
    createdAtUnixMs: rng.next() < 0.1 ? Number.MAX_SAFE_INTEGER : Date.now(),
  });
  const body = Buffer.from(CommitRequest.encode({ info, manifest }).finish());
  return rng.next() < 0.25 ? mutateBytes(rng, body) : body;
}

function requestBody(rng: Rng, rpc: Exclude<Rpc, 'uploadChunks'>, pool: readonly Buffer[]): Buffer {
  if (rpc === 'commit') return commitBody(rng, pool);
  const valid =
    rpc === 'hello'
      ? HelloRequest.encode({ minVersion: rng.pick([1, 0, 2, 0xffffffff]), maxVersion: rng.pick([1, 0, 2]) }).finish()
      : HaveChunksRequest.encode({
          digests: Array.from({ length: rng.pick([0, 1, 3, 4097]) }, () =>
            rng.next() < 0.9 ? createHash('sha256').update(rng.pick(pool)).digest() : rng.bytes(rng.int(40)),
          ),
        }).finish();
  return rng.next() < 0.5 ? mutateBytes(rng, valid) : Buffer.from(valid);
}

/** Every filed checkpoint must materialise, verified, with nothing outside its directory and no special bits. */
async function checkFiled(store: CheckpointStore, workDir: string, tally: OutcomeTally): Promise<number> {
  let checked = 0;
  for (const info of store.list()) {
    const target = join(workDir, `materialised-${checked}`);
    try {
      await store.materialize(info.checkpointId, target);
      const root = await realpath(target);
      const walk = async (dir: string): Promise<void> => {
        for (const name of await readdir(dir)) {
          const path = join(dir, name);
          const st = await lstat(path);
          if (!(await realpath(path)).startsWith(`${root}/`)) tally.defect(`materialised ${path} outside ${root}`);
          if (!st.isFile() && !st.isDirectory()) tally.defect(`materialised a special file ${path}`);
          if ((st.mode & 0o6000) !== 0) tally.defect(`materialised ${path} with setuid/setgid bits`);
          if (st.isDirectory()) await walk(path);
        }
      };
      await walk(root);
    } catch (err) {
      tally.defect(`filed checkpoint ${info.checkpointId} does not materialise: ${String(err)}`);
    } finally {
      await rm(target, { recursive: true, force: true });
    }
    checked += 1;
  }
  return checked;
}

export async function fuzzTransfer(options: TransferFuzzOptions): Promise<TransferFuzzResult> {
  const tally = new OutcomeTally();
  const store = await CheckpointStore.open({
    dir: join(options.workDir, 'store'),
    key: randomBytes(32),
    maxBytes: 256 * 1024 * 1024,
    logger: options.log,
  });
  const server = new TransferServer({ store, tls: options.receiverTls, logger: options.log });
  const port = await server.start('127.0.0.1:0');
  const address = `127.0.0.1:${port}`;
  const raw = new RawClient(address, channelCredentials(options.senderTls));
  const honest = new TransferClient({ tls: options.senderTls, logger: options.log, callTimeoutMs: 30_000 });
  try {
    // Chunks the receiver holds, so resealed hostile manifests get past "chunks missing" to validation.
    const pool = Array.from({ length: 16 }, (_, i) => createHash('sha512').update(`pool${i}`).digest());
    const seedFrames = pool.map((plain) =>
      Buffer.from(
        ChunkFrame.encode({
          digest: createHash('sha256').update(plain).digest(),
          codec: ChunkCodec.CHUNK_CODEC_NONE,
          rawSize: plain.length,
          data: plain,
        }).finish(),
      ),
    );
    const seeded = await upload(raw, seedFrames, versioned(new Rng(1)));
    if (!seeded.ok) throw new Error(`seeding the receiver's chunks failed: ${seeded.label}`);
    const rpcs: Rpc[] = ['hello', 'haveChunks', 'uploadChunks', 'commit', 'commit'];
    for (let i = 0; i < options.iterations; i += 1) {
      const rng = new Rng(options.seed * 1_000_003 + i);
      const rpc = rng.pick(rpcs);
      const metadata = versioned(rng);
      const outcome =
        rpc === 'uploadChunks'
          ? await upload(
              raw,
              Array.from({ length: 1 + rng.int(3) }, () => chunkFrame(rng, pool)),
              metadata,
            )
          : await unary(raw, rpc, requestBody(rng, rpc, pool), metadata);
      if (outcome.defect !== undefined) tally.defect(`seed=${options.seed} iteration=${i}: ${outcome.defect}`);
      else tally.add(outcome.label);
    }
    const filedFromFuzz = await checkFiled(store, options.workDir, tally);
    const meta = {
      checkpointId: `honest-${options.seed}`,
      handoverKey: 'honest/after-fuzz',
    };
    const pushed = await honest.push(address, { directory: options.honestDir }, meta);
    if (store.get(meta.checkpointId) === undefined) tally.defect('the honest push after fuzzing was not filed');
    tally.add(`honest push after fuzzing (${pushed.wireBytes} wire bytes)`);
    return { tally, filedFromFuzz };
  } finally {
    raw.close();
    await server.stop(500);
  }
}
