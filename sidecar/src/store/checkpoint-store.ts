import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdir, open, readFile, readdir, rename, rm, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../../../common/clock';
import { SystemClock } from '../../../common/clock';
import { errorCode } from '../../../common/errors';
import type { Logger } from '../../../common/logging';
import { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import type { TaskIdentity, TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { ChunkCodec, CommitRequest } from '../../../proto/gen/chain/v1/transfer';
import { ContentDefinedChunker } from '../transfer/chunker';
import { decompress } from '../transfer/codec';
import { TransferError } from '../transfer/errors';
import { ManifestBuilder, distinctChunks, fileChunks, openManifest } from '../transfer/manifest';
import type { SealedManifest } from '../transfer/manifest';
import type { StageTimes } from '../transfer/stage-times';
import { timed, timedAsync } from '../transfer/stage-times';
import { ChunkCipher } from './chunk-cipher';
import { StoreError } from './errors';

export interface CheckpointStoreOptions {
  /** Directory the store owns (created if missing). */
  readonly dir: string;
  /** The node's 32-byte at-rest key (see loadOrCreateStoreKey). */
  readonly key: Buffer;
  /** Upper bound on the bytes the store keeps on disk; least recently used checkpoints go first. */
  readonly maxBytes: number;
  readonly logger: Logger;
  /** @default SystemClock */
  readonly clock?: Clock;
  /** How long a received chunk that no checkpoint uses yet is kept for the push to finish or resume. @default 10 min */
  readonly pendingTtlMs?: number;
  /** Where the store's time goes, summed (for the bench). @default none */
  readonly stages?: StageTimes;
}

/** What the sender (or the local checkpointer) says about a checkpoint; the store adds sizes and digests. */
export interface CheckpointMeta {
  /** @default a random UUID */
  readonly checkpointId?: string;
  /** The key a restorer finds it by (`find`); empty = not filed. */
  readonly handoverKey: string;
  readonly source?: TaskIdentity;
  readonly spec?: TaskSpec;
  readonly sourceNode?: string;
  /** @default now */
  readonly createdAtUnixMs?: number;
}

/** A stored chunk as it travelled: the codec it is compressed with and its plain size. */
export interface StoredChunk {
  readonly codec: ChunkCodec;
  readonly rawSize: number;
  readonly payload: Buffer;
}

interface ChunkEntry {
  readonly storedBytes: number;
  /** Committed checkpoints that use it. */
  refs: number;
  /** When a push last wrote or claimed it; keeps an unreferenced chunk alive for pendingTtlMs. */
  claimedAt: number;
}

interface CheckpointEntry {
  readonly info: CheckpointInfo;
  readonly chunks: readonly string[];
  readonly recordFile: string;
  readonly sizeBytes: number;
}

const CHUNK_HEADER_BYTES = 5;
const MATERIALIZE_READ_AHEAD = 8;

/**
 * Staged checkpoints on disk. Chunks are content-addressed (shared by every checkpoint that has them, so
 * incremental rounds store only what changed), sealed with AES-256-GCM under the node key, and bounded by
 * an LRU over checkpoints by bytes. `materialize` verifies every chunk and the manifest digest before a
 * directory appears; nothing is written into place from bad data.
 */
export class CheckpointStore {
  private readonly cipher: ChunkCipher;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly pendingTtlMs: number;
  private readonly chunks = new Map<string, ChunkEntry>();
  private readonly checkpoints: LRUCache<string, CheckpointEntry>;
  private readonly byHandoverKey = new Map<string, string>();
  private readonly waiters = new Map<string, Set<(info: CheckpointInfo) => void>>();
  private readonly deleting = new Map<string, Promise<void>>();
  private readonly writing = new Map<string, Promise<void>>();
  private readonly closing = new AbortController();
  private pendingBytes = 0;
  private stages: StageTimes | undefined;

  private constructor(
    private readonly dir: string,
    readonly maxBytes: number,
    key: Buffer,
    logger: Logger,
    clock: Clock,
    pendingTtlMs: number,
  ) {
    this.cipher = new ChunkCipher(key);
    this.clock = clock;
    this.log = logger.child({ component: 'checkpoint-store' });
    this.pendingTtlMs = pendingTtlMs;
    this.checkpoints = new LRUCache<string, CheckpointEntry>({
      maxSize: maxBytes,
      sizeCalculation: (entry) => Math.max(1, entry.sizeBytes),
      dispose: (entry, id, reason) => {
        if (reason === 'set') return;
        this.release(entry, reason);
        if (this.byHandoverKey.get(entry.info.handoverKey) === id) this.byHandoverKey.delete(entry.info.handoverKey);
      },
    });
  }

  /** Opens (or creates) the store in `dir`, reloading its checkpoints and dropping chunks none of them use. */
  static async open(options: CheckpointStoreOptions): Promise<CheckpointStore> {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes <= 0)
      throw new RangeError('maxBytes must be a positive integer');
    const store = new CheckpointStore(
      options.dir,
      options.maxBytes,
      options.key,
      options.logger,
      options.clock ?? new SystemClock(),
      options.pendingTtlMs ?? 10 * 60_000,
    );
    store.stages = options.stages;
    await store.load();
    return store;
  }

  // ---- what the transfer server uses -------------------------------------------------------------

  /** For each digest: whether the store holds it. Held chunks are claimed, so eviction keeps them for the push. */
  claimChunks(digests: readonly Buffer[]): boolean[] {
    const now = this.clock.now();
    return digests.map((digest) => {
      const entry = this.chunks.get(digest.toString('hex'));
      if (entry === undefined) return false;
      entry.claimedAt = now;
      return true;
    });
  }

  hasChunk(digestHex: string): boolean {
    return this.chunks.has(digestHex);
  }

  /**
   * Stores a chunk the caller has verified against its digest. Makes room by evicting least recently
   * used checkpoints; fails with NC_STORE_FULL when even that is not enough or the disk is full.
   */
  async putChunk(digest: Buffer, chunk: StoredChunk): Promise<number> {
    const hex = digest.toString('hex');
    // Two pushes may bring the same chunk at once: the second waits for the first's file.
    for (let writing = this.writing.get(hex); writing !== undefined; writing = this.writing.get(hex)) {
      await writing.catch(() => undefined);
    }
    const existing = this.chunks.get(hex);
    if (existing !== undefined) {
      existing.claimedAt = this.clock.now();
      return 0;
    }
    const done = this.writeChunk(hex, digest, chunk);
    this.writing.set(hex, done);
    try {
      await done;
    } finally {
      this.writing.delete(hex);
    }
    return this.chunks.get(hex)?.storedBytes ?? 0;
  }

  private async writeChunk(hex: string, digest: Buffer, chunk: StoredChunk): Promise<void> {
    const header = Buffer.alloc(CHUNK_HEADER_BYTES);
    header.writeUInt8(chunk.codec, 0);
    header.writeUInt32BE(chunk.rawSize, 1);
    const sealed = timed(this.stages, 'store-encrypt', chunk.payload.length, () =>
      this.cipher.seal([header, chunk.payload], digest),
    );
    this.reserve(sealed.length, hex);
    // Counted before the write, so concurrent writes cannot together pass the bound.
    this.pendingBytes += sealed.length;
    const path = this.chunkPath(hex);
    await this.deleting.get(path);
    // Written in place, not via a rename: a torn file fails GCM authentication when read, and the
    // in-memory index lists a chunk only once its file is complete.
    try {
      await timedAsync(this.stages, 'store-write', sealed.length, () => writeFile(path, sealed));
    } catch (cause) {
      this.pendingBytes -= sealed.length;
      await rm(path, { force: true });
      throw ioError(cause, 'cannot write chunk', { digest: hex });
    }
    this.chunks.set(hex, { storedBytes: sealed.length, refs: 0, claimedAt: this.clock.now() });
  }

  /**
   * Files a checkpoint whose chunks are all here. The manifest must hash to `info.manifestDigest`; a
   * newer checkpoint under the same handover key replaces the older one.
   */
  async commit(info: CheckpointInfo, manifestBytes: Buffer): Promise<CheckpointInfo> {
    const sealed = openManifest(manifestBytes, info.manifestDigest);
    const id = info.checkpointId;
    if (id === '' || id.length > 200) {
      throw new TransferError('NC_TRANSFER_MANIFEST_INVALID', 'checkpoint id must be 1 to 200 characters', {
        context: { checkpointId: id },
      });
    }
    const existing = this.checkpoints.get(id);
    if (existing !== undefined) {
      if (existing.info.manifestDigest === sealed.digest) return existing.info;
      throw new StoreError('NC_STORE_CONFLICT', 'a different checkpoint with this id is already staged', {
        context: { checkpointId: id },
      });
    }
    const needed = [...distinctChunks(sealed.manifest).keys()];
    const missing = needed.filter((hex) => !this.chunks.has(hex));
    if (missing.length > 0) {
      throw new TransferError('NC_TRANSFER_CHUNKS_MISSING', 'commit names chunks this node does not hold', {
        context: { checkpointId: id, missingChunks: missing.length, firstMissing: missing[0] },
      });
    }
    const full: CheckpointInfo = {
      ...info,
      sizeBytes: sealed.manifest.totalBytes,
      createdAtUnixMs: info.createdAtUnixMs > 0 ? info.createdAtUnixMs : this.clock.now(),
    };
    const recordFile = this.recordPath(id);
    const record = this.cipher.seal(
      [CommitRequest.encode({ info: full, manifest: manifestBytes }).finish()],
      recordAad(recordFile),
    );
    const sizeBytes = record.length + needed.reduce((sum, hex) => sum + (this.chunks.get(hex)?.storedBytes ?? 0), 0);
    if (sizeBytes > this.maxBytes) {
      throw new StoreError('NC_STORE_FULL', 'checkpoint is larger than the store', {
        context: { checkpointId: id, sizeBytes, maxBytes: this.maxBytes },
      });
    }
    try {
      await mkdir(dirname(recordFile), { recursive: true });
      await writeFile(`${recordFile}.tmp`, record);
      await rename(`${recordFile}.tmp`, recordFile);
    } catch (cause) {
      await rm(`${recordFile}.tmp`, { force: true });
      throw ioError(cause, 'cannot write checkpoint record', { checkpointId: id });
    }
    const missingNow = needed.filter((hex) => !this.chunks.has(hex));
    if (missingNow.length > 0) {
      // Chunks aged out while the record was written: nothing may be filed that cannot be restored.
      await rm(recordFile, { force: true });
      throw new TransferError('NC_TRANSFER_CHUNKS_MISSING', 'chunks expired before the commit', {
        context: { checkpointId: id, missingChunks: missingNow.length },
      });
    }
    this.file({ info: full, chunks: needed, recordFile, sizeBytes });
    this.log.info(
      { checkpointId: id, handoverKey: full.handoverKey, sizeBytes: full.sizeBytes, storedBytes: sizeBytes },
      'checkpoint staged',
    );
    return full;
  }

  // ---- what the sidecar uses -------------------------------------------------------------------

  /** Chunks a local checkpoint directory into the store (used before a push from the store, or for local restore). */
  async stageFromDirectory(dir: string, meta: CheckpointMeta): Promise<CheckpointInfo> {
    const chunker = new ContentDefinedChunker();
    const builder = new ManifestBuilder();
    for await (const event of chunker.chunkDirectory(dir)) {
      builder.add(event);
      if (event.kind === 'chunk') {
        if (this.claimChunks([event.digest])[0] !== true) {
          await this.putChunk(event.digest, {
            codec: ChunkCodec.CHUNK_CODEC_NONE,
            rawSize: event.data.length,
            payload: event.data,
          });
        }
      }
    }
    const sealed = builder.seal();
    return this.commit(infoFromMeta(meta, sealed.digest), sealed.bytes);
  }

  has(checkpointId: string): boolean {
    return this.checkpoints.has(checkpointId);
  }

  /** The checkpoint's info, marking it recently used. */
  get(checkpointId: string): CheckpointInfo | undefined {
    return this.checkpoints.get(checkpointId)?.info;
  }

  list(): CheckpointInfo[] {
    return [...this.checkpoints.values()].map((entry) => entry.info);
  }

  /** The newest checkpoint filed under `handoverKey`, waiting up to `waitMs` for one to arrive. */
  async find(handoverKey: string, waitMs: number): Promise<CheckpointInfo | undefined> {
    const id = this.byHandoverKey.get(handoverKey);
    const found = id === undefined ? undefined : this.get(id);
    if (found !== undefined || waitMs <= 0 || this.closing.signal.aborted) return found;
    const timeout = new AbortController();
    const onClose = (): void => timeout.abort();
    this.closing.signal.addEventListener('abort', onClose, { once: true });
    let arrived: CheckpointInfo | undefined;
    const resolveArrival = (info: CheckpointInfo): void => {
      arrived = info;
      timeout.abort();
    };
    const set = this.waiters.get(handoverKey) ?? new Set();
    set.add(resolveArrival);
    this.waiters.set(handoverKey, set);
    try {
      await this.clock.sleep(waitMs, timeout.signal).catch(() => undefined);
    } finally {
      set.delete(resolveArrival);
      if (set.size === 0) this.waiters.delete(handoverKey);
      this.closing.signal.removeEventListener('abort', onClose);
    }
    return arrived;
  }

  /**
   * Writes the checkpoint's files to `targetDir` (which must not exist, or be empty). Everything is
   * written beside it and renamed into place only after every chunk and the manifest digest verified.
   */
  async materialize(checkpointId: string, targetDir: string): Promise<void> {
    const entry = this.checkpoints.get(checkpointId);
    if (entry === undefined)
      throw new StoreError('NC_STORE_NOT_FOUND', 'no such staged checkpoint', { context: { checkpointId } });
    const { manifest } = await this.readManifest(checkpointId);
    await ensureVacant(targetDir);
    const partial = `${targetDir}.partial-${randomBytes(6).toString('hex')}`;
    try {
      await mkdir(partial, { recursive: true, mode: 0o700 });
      for (const file of manifest.files) {
        const path = join(partial, ...file.path.split('/'));
        if (file.directory) {
          await mkdir(path, { recursive: true });
          await chmod(path, file.mode);
          continue;
        }
        await mkdir(dirname(path), { recursive: true });
        const handle = await open(path, 'wx', 0o600);
        try {
          const pieces = [...fileChunks(file)];
          const reads: Promise<Buffer>[] = [];
          for (let i = 0; i < pieces.length; i += 1) {
            while (reads.length < MATERIALIZE_READ_AHEAD && i + reads.length < pieces.length) {
              const piece = pieces[i + reads.length];
              if (piece === undefined) break;
              const read = this.readPlainChunk(piece.digest.toString('hex'), piece.size);
              // Reads ahead of a failing one are abandoned; they must not surface as unhandled.
              read.catch(() => undefined);
              reads.push(read);
            }
            const data = await (reads.shift() as Promise<Buffer>);
            await timedAsync(this.stages, 'materialize-write', data.length, () => handle.write(data));
          }
        } finally {
          await handle.close();
        }
        await chmod(path, file.mode);
      }
      await rename(partial, targetDir);
    } catch (err) {
      await rm(partial, { recursive: true, force: true });
      if (errorCode(err)?.startsWith('NC_') === true) throw err;
      throw ioError(err, 'cannot materialize checkpoint', { checkpointId, targetDir });
    }
    this.log.info({ checkpointId, targetDir }, 'checkpoint materialized');
  }

  /** Removes a checkpoint (after a successful restore: a checkpoint is restored at most once). */
  delete(checkpointId: string): boolean {
    return this.checkpoints.delete(checkpointId);
  }

  /** The manifest of a staged checkpoint, checked against its digest. */
  async readManifest(checkpointId: string): Promise<SealedManifest> {
    const entry = this.checkpoints.peek(checkpointId);
    if (entry === undefined)
      throw new StoreError('NC_STORE_NOT_FOUND', 'no such staged checkpoint', { context: { checkpointId } });
    const record = await this.readRecord(entry.recordFile, checkpointId);
    try {
      return openManifest(record.manifest, entry.info.manifestDigest);
    } catch (cause) {
      throw new StoreError('NC_STORE_MANIFEST_CORRUPT', 'staged manifest does not match its digest', {
        cause,
        context: { checkpointId },
      });
    }
  }

  /**
   * A chunk's plain bytes, authenticated and decompressed. The bytes are not hashed again: a chunk is
   * sealed only after its plain bytes hashed to its digest (on receipt, or when staged from a directory),
   * and AES-GCM authenticates the sealed blob with that digest as associated data, so a blob that opens
   * is the one sealed for this digest (a flipped bit, a truncated or swapped file fails to open).
   */
  async readPlainChunk(digestHex: string, expectedSize?: number): Promise<Buffer> {
    const stored = await this.readStoredChunk(digestHex);
    let plain: Buffer;
    try {
      plain = await timedAsync(this.stages, 'materialize-decompress', stored.payload.length, () =>
        decompress(stored.codec, stored.payload, stored.rawSize),
      );
    } catch (cause) {
      throw corruptChunk(digestHex, cause);
    }
    if (plain.length !== stored.rawSize || (expectedSize !== undefined && plain.length !== expectedSize))
      throw corruptChunk(digestHex);
    return plain;
  }

  /** A chunk as stored (still compressed), authenticated. */
  async readStoredChunk(digestHex: string): Promise<StoredChunk> {
    if (!this.chunks.has(digestHex))
      throw new StoreError('NC_STORE_NOT_FOUND', 'no such chunk', { context: { digest: digestHex } });
    let sealed: Buffer;
    try {
      sealed = await timedAsync(this.stages, 'materialize-read', 0, () => readFile(this.chunkPath(digestHex)));
    } catch (cause) {
      throw corruptChunk(digestHex, cause);
    }
    const plain = timed(this.stages, 'materialize-decrypt', sealed.length, () =>
      this.cipher.open(sealed, Buffer.from(digestHex, 'hex')),
    );
    if (plain === undefined || plain.length < CHUNK_HEADER_BYTES) throw corruptChunk(digestHex);
    return { codec: plain.readUInt8(0), rawSize: plain.readUInt32BE(1), payload: plain.subarray(CHUNK_HEADER_BYTES) };
  }

  /** Bytes the store holds on disk, at most maxBytes. */
  usage(): { usedBytes: number; pendingBytes: number; checkpoints: number; chunks: number } {
    return {
      usedBytes: this.checkpoints.calculatedSize + this.pendingBytes,
      pendingBytes: this.pendingBytes,
      checkpoints: this.checkpoints.size,
      chunks: this.chunks.size,
    };
  }

  /** Releases waiters (they get undefined) and lets in-flight deletions finish. */
  async close(): Promise<void> {
    this.closing.abort();
    await Promise.all(this.deleting.values());
  }

  // ---- internals ---------------------------------------------------------------------------------

  private file(entry: CheckpointEntry): void {
    for (const hex of entry.chunks) {
      const chunk = this.chunks.get(hex);
      if (chunk === undefined) continue;
      if (chunk.refs === 0) this.pendingBytes -= chunk.storedBytes;
      chunk.refs += 1;
      // The commit consumes the push's claim; a later push claims the chunk again through HaveChunks.
      chunk.claimedAt = 0;
    }
    const id = entry.info.checkpointId;
    this.checkpoints.set(id, entry);
    this.enforceBound();
    const key = entry.info.handoverKey;
    if (key === '') return;
    const previous = this.byHandoverKey.get(key);
    this.byHandoverKey.set(key, id);
    if (previous !== undefined && previous !== id) this.checkpoints.delete(previous);
    for (const resolve of this.waiters.get(key) ?? []) resolve(entry.info);
  }

  private release(entry: CheckpointEntry, reason: string): void {
    const now = this.clock.now();
    for (const hex of entry.chunks) {
      const chunk = this.chunks.get(hex);
      if (chunk === undefined) continue;
      chunk.refs -= 1;
      if (chunk.refs > 0) continue;
      // An explicit delete (the checkpoint was restored) frees its chunks at once; an eviction keeps the
      // ones a push has just claimed, so that push can still commit.
      if (reason !== 'delete' && now - chunk.claimedAt < this.pendingTtlMs) this.pendingBytes += chunk.storedBytes;
      else this.dropChunk(hex, chunk, false);
    }
    this.unlinkLater(entry.recordFile);
    this.log.info({ checkpointId: entry.info.checkpointId, reason }, 'checkpoint removed');
  }

  private dropChunk(hex: string, chunk: ChunkEntry, pending: boolean): void {
    this.chunks.delete(hex);
    if (pending) this.pendingBytes -= chunk.storedBytes;
    this.unlinkLater(this.chunkPath(hex));
  }

  /** Drops unreferenced chunks whose claim expired. */
  private sweep(): void {
    const now = this.clock.now();
    for (const [hex, chunk] of this.chunks) {
      if (chunk.refs === 0 && now - chunk.claimedAt >= this.pendingTtlMs) this.dropChunk(hex, chunk, true);
    }
  }

  private reserve(bytes: number, digestHex: string): void {
    if (this.checkpoints.calculatedSize + this.pendingBytes + bytes <= this.maxBytes) return;
    this.sweep();
    while (this.checkpoints.calculatedSize + this.pendingBytes + bytes > this.maxBytes) {
      if (this.checkpoints.size === 0 || this.checkpoints.pop() === undefined) {
        throw new StoreError('NC_STORE_FULL', 'checkpoint store is full', {
          recoverable: true,
          context: { reason: 'quota', maxBytes: this.maxBytes, pendingBytes: this.pendingBytes, digest: digestHex },
        });
      }
    }
  }

  private enforceBound(): void {
    while (this.checkpoints.calculatedSize + this.pendingBytes > this.maxBytes && this.checkpoints.size > 1)
      this.checkpoints.pop();
  }

  private unlinkLater(path: string): void {
    const previous = this.deleting.get(path) ?? Promise.resolve();
    const done = previous
      .then(() => unlink(path))
      .catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err, path }, 'cannot delete store file');
      })
      .finally(() => {
        if (this.deleting.get(path) === done) this.deleting.delete(path);
      });
    this.deleting.set(path, done);
  }

  private chunkPath(hex: string): string {
    const name = this.cipher.nameFor('chunk', hex);
    return join(this.dir, 'chunks', name.slice(0, 2), name);
  }

  private recordPath(checkpointId: string): string {
    return join(this.dir, 'checkpoints', `${this.cipher.nameFor('checkpoint', checkpointId)}.rec`);
  }

  private async readRecord(path: string, checkpointId: string): Promise<CommitRequest> {
    let sealed: Buffer;
    try {
      sealed = await readFile(path);
    } catch (cause) {
      throw new StoreError('NC_STORE_MANIFEST_CORRUPT', 'staged checkpoint record unreadable', {
        cause,
        context: { checkpointId },
      });
    }
    const plain = this.cipher.open(sealed, recordAad(path));
    if (plain === undefined)
      throw new StoreError('NC_STORE_MANIFEST_CORRUPT', 'staged checkpoint record fails authentication', {
        context: { checkpointId },
      });
    return CommitRequest.decode(plain);
  }

  private async load(): Promise<void> {
    await mkdir(join(this.dir, 'checkpoints'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.dir, 'chunks'), { recursive: true, mode: 0o700 });
    await Promise.all(
      Array.from({ length: 256 }, (_, i) =>
        mkdir(join(this.dir, 'chunks', i.toString(16).padStart(2, '0')), { recursive: true }),
      ),
    );
    const records: { entry: CheckpointEntry; createdAt: number }[] = [];
    for (const name of await readdir(join(this.dir, 'checkpoints'))) {
      const path = join(this.dir, 'checkpoints', name);
      if (!name.endsWith('.rec')) {
        await rm(path, { force: true });
        continue;
      }
      const loaded = await this.loadRecord(path);
      if (loaded !== undefined) records.push(loaded);
    }
    const wanted = new Map<string, string>();
    for (const { entry } of records) for (const hex of entry.chunks) wanted.set(this.cipher.nameFor('chunk', hex), hex);
    for (const sub of await readdir(join(this.dir, 'chunks'))) {
      for (const name of await readdir(join(this.dir, 'chunks', sub))) {
        const path = join(this.dir, 'chunks', sub, name);
        const hex = wanted.get(name);
        if (hex === undefined) {
          await rm(path, { force: true });
          continue;
        }
        this.chunks.set(hex, { storedBytes: (await stat(path)).size, refs: 0, claimedAt: 0 });
      }
    }
    records.sort((a, b) => a.createdAt - b.createdAt);
    for (const { entry } of records) {
      const complete = entry.chunks.every((hex) => this.chunks.has(hex));
      if (!complete) {
        this.log.warn({ checkpointId: entry.info.checkpointId }, 'staged checkpoint lost chunks; dropped');
        await rm(entry.recordFile, { force: true });
        continue;
      }
      const recordBytes = (await stat(entry.recordFile)).size;
      const sizeBytes =
        recordBytes + entry.chunks.reduce((sum, hex) => sum + (this.chunks.get(hex)?.storedBytes ?? 0), 0);
      this.file({ ...entry, sizeBytes });
    }
    for (const [hex, chunk] of this.chunks) if (chunk.refs === 0) this.dropChunk(hex, chunk, false);
    this.log.info(
      { checkpoints: this.checkpoints.size, usedBytes: this.checkpoints.calculatedSize },
      'checkpoint store opened',
    );
  }

  private async loadRecord(path: string): Promise<{ entry: CheckpointEntry; createdAt: number } | undefined> {
    const plain = this.cipher.open(await readFile(path), recordAad(path));
    const record = plain === undefined ? undefined : CommitRequest.decode(plain);
    const info = record?.info;
    // The name is a keyed hash of the id: a record renamed to stand for another checkpoint is refused.
    if (record !== undefined && info !== undefined && this.recordPath(info.checkpointId) === path) {
      try {
        const { manifest } = openManifest(record.manifest, info.manifestDigest);
        const entry = { info, chunks: [...distinctChunks(manifest).keys()], recordFile: path, sizeBytes: 0 };
        return { entry, createdAt: info.createdAtUnixMs };
      } catch (err) {
        this.log.warn({ err, path }, 'staged checkpoint record invalid; dropped');
      }
    }
    this.log.warn({ path }, 'staged checkpoint record unreadable; dropped');
    await rm(path, { force: true });
    return undefined;
  }
}

function recordAad(recordFile: string): Buffer {
  return Buffer.from(`checkpoint\0${basename(recordFile)}`);
}

export function infoFromMeta(meta: CheckpointMeta, manifestDigest: string): CheckpointInfo {
  return CheckpointInfo.fromPartial({
    checkpointId: meta.checkpointId ?? randomUUID(),
    handoverKey: meta.handoverKey,
    source: meta.source,
    spec: meta.spec,
    sourceNode: meta.sourceNode ?? '',
    createdAtUnixMs: meta.createdAtUnixMs ?? 0,
    manifestDigest,
  });
}

function corruptChunk(digestHex: string, cause?: unknown): StoreError {
  return new StoreError('NC_STORE_CHUNK_CORRUPT', 'staged chunk fails verification', {
    cause,
    context: { digest: digestHex },
  });
}

function ioError(cause: unknown, message: string, context: Record<string, string>): StoreError {
  const code = (cause as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StoreError('NC_STORE_FULL', 'disk under the checkpoint store is full', {
      cause,
      recoverable: true,
      context: { ...context, reason: 'disk' },
    });
  }
  return new StoreError('NC_STORE_IO', message, { cause, context });
}

async function ensureVacant(targetDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(targetDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new StoreError('NC_STORE_TARGET_EXISTS', 'materialize target is not a usable directory', {
      cause: err,
      context: { targetDir },
    });
  }
  if (entries.length > 0)
    throw new StoreError('NC_STORE_TARGET_EXISTS', 'materialize target is not empty', { context: { targetDir } });
  await rmdir(targetDir);
}
