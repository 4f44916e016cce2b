import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../../../common/clock';
import { SystemClock } from '../../../common/clock';
import type { Logger } from '../../../common/logging';
import { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import type { TaskIdentity, TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { ChunkCodec } from '../../../proto/gen/chain/v1/transfer';
import { ContentDefinedChunker } from '../transfer/chunker';
import { decompress } from '../transfer/codec';
import { TransferError } from '../transfer/errors';
import { ManifestBuilder, distinctChunks, openManifest } from '../transfer/manifest';
import type { SealedManifest } from '../transfer/manifest';
import type { StageTimes } from '../transfer/stage-times';
import { timed, timedAsync } from '../transfer/stage-times';
import { CheckpointRecords } from './checkpoint-records';
import type { CheckpointRecord } from './checkpoint-records';
import { ChunkCipher } from './chunk-cipher';
import { StoreError, storeIoError } from './errors';
import { materializeTree } from './materializer';
import { SegmentFiles } from './segment-files';
import type { ChunkLocation, SegmentWriter } from './segment-files';

export type { SegmentWriter } from './segment-files';

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
  readonly location: ChunkLocation;
  /** Committed checkpoints that use it. */
  refs: number;
  /**
   * Pushes that wrote it or were told "have" for it and have not committed yet. Counted, not flagged: one
   * push's commit consumes its own claim only, so a concurrent push told "have" still finds the chunk.
   */
  claims: number;
  /** When it was last claimed: claims lapse pendingTtlMs after, so an abandoned push frees its chunks. */
  claimedAt: number;
}

interface CheckpointEntry {
  readonly info: CheckpointInfo;
  readonly chunks: readonly string[];
  readonly recordFile: string;
  readonly sizeBytes: number;
}

const CHUNK_HEADER_BYTES = 5;

/**
 * Staged checkpoints on disk, behind one facade over three mechanisms: segment files (sealed chunks
 * appended per transfer, `segment-files.ts`), checkpoint records (`checkpoint-records.ts`) and the
 * materializer (`materializer.ts`). Here: the chunk index (content-addressed, shared by every checkpoint
 * that has them, so incremental rounds store only what changed), claims of chunks a push is about to
 * commit, the LRU bound over checkpoints by bytes, and lookup by handover key. Each chunk is sealed with
 * AES-256-GCM under the node key, bound to its digest; nothing is written into place from bad data.
 */
export class CheckpointStore {
  private readonly cipher: ChunkCipher;
  private readonly records: CheckpointRecords;
  private readonly log: Logger;
  private readonly chunks = new Map<string, ChunkEntry>();
  private readonly checkpoints: LRUCache<string, CheckpointEntry>;
  private readonly byHandoverKey = new Map<string, string>();
  private readonly waiters = new Map<string, Set<(info: CheckpointInfo) => void>>();
  private readonly writing = new Map<string, Promise<void>>();
  /** Record deletions under way, by path: a checkpoint filed again under the same id waits for them. */
  private readonly deletingRecords = new Map<string, Promise<void>>();
  private readonly closing = new AbortController();
  private segments!: SegmentFiles;
  private pendingBytes = 0;

  private constructor(
    private readonly dir: string,
    readonly maxBytes: number,
    key: Buffer,
    logger: Logger,
    private readonly clock: Clock,
    private readonly pendingTtlMs: number,
    private readonly stages: StageTimes | undefined,
  ) {
    this.cipher = new ChunkCipher(key);
    this.records = new CheckpointRecords(join(dir, 'checkpoints'), this.cipher);
    this.log = logger.child({ component: 'checkpoint-store' });
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
      options.stages,
    );
    await store.load();
    return store;
  }

  // ---- what the transfer server uses -------------------------------------------------------------

  /** For each digest: whether the store holds it. Held chunks are claimed, so eviction keeps them for the push. */
  claimChunks(digests: readonly Buffer[]): boolean[] {
    return digests.map((digest) => {
      const entry = this.chunks.get(digest.toString('hex'));
      if (entry === undefined) return false;
      this.claim(entry);
      return true;
    });
  }

  hasChunk(digestHex: string): boolean {
    return this.chunks.has(digestHex);
  }

  /** Where one transfer's chunks go (a segment file of their own); `close` it when the transfer ends. */
  openWriter(): SegmentWriter {
    return this.segments.writer();
  }

  /**
   * Stores a chunk the caller has verified against its digest, appended through `writer`. Makes room by
   * evicting least recently used checkpoints; fails with NC_STORE_FULL when even that is not enough or
   * the disk is full.
   */
  async putChunk(digest: Buffer, chunk: StoredChunk, writer: SegmentWriter): Promise<number> {
    const hex = digest.toString('hex');
    // Two pushes may bring the same chunk at once: the second waits for the first's append.
    for (let writing = this.writing.get(hex); writing !== undefined; writing = this.writing.get(hex)) {
      await writing.catch(() => undefined);
    }
    const existing = this.chunks.get(hex);
    if (existing !== undefined) {
      this.claim(existing);
      return 0;
    }
    const done = this.writeChunk(hex, digest, chunk, writer);
    this.writing.set(hex, done);
    try {
      await done;
    } finally {
      this.writing.delete(hex);
    }
    return this.chunks.get(hex)?.location.length ?? 0;
  }

  private async writeChunk(hex: string, digest: Buffer, chunk: StoredChunk, writer: SegmentWriter): Promise<void> {
    const header = Buffer.alloc(CHUNK_HEADER_BYTES);
    header.writeUInt8(chunk.codec, 0);
    header.writeUInt32BE(chunk.rawSize, 1);
    const sealed = timed(this.stages, 'store-encrypt', chunk.payload.length, () =>
      this.cipher.seal([header, chunk.payload], digest),
    );
    this.reserve(sealed.length, hex);
    // Counted before the write, so concurrent writes cannot together pass the bound.
    this.pendingBytes += sealed.length;
    let location: ChunkLocation;
    // A torn append fails GCM authentication when read (the blob is bound to its digest), and the index
    // lists a chunk only once its append is complete; records name chunks only after that.
    try {
      location = await timedAsync(this.stages, 'store-write', sealed.length, () => writer.append(sealed));
    } catch (cause) {
      this.pendingBytes -= sealed.length;
      throw storeIoError(cause, 'cannot write chunk', { digest: hex });
    }
    this.chunks.set(hex, { location, refs: 0, claims: 1, claimedAt: this.clock.now() });
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
      if (existing.info.manifestDigest === sealed.digest) {
        // A commit retried after its answer was lost: the retry's claims are spent as the first one's were.
        this.consumeClaims(existing.chunks);
        return existing.info;
      }
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
    const locations = needed.map((hex) => (this.chunks.get(hex) as ChunkEntry).location);
    const recordFile = this.records.pathFor(id);
    const record = this.records.seal(recordFile, { info: full, manifest: manifestBytes, locations });
    const sizeBytes = record.length + locations.reduce((sum, l) => sum + l.length, 0);
    if (sizeBytes > this.maxBytes) {
      throw new StoreError('NC_STORE_FULL', 'checkpoint is larger than the store', {
        context: { checkpointId: id, sizeBytes, maxBytes: this.maxBytes },
      });
    }
    await this.deletingRecords.get(recordFile);
    try {
      await this.records.write(recordFile, record);
    } catch (cause) {
      throw storeIoError(cause, 'cannot write checkpoint record', { checkpointId: id });
    }
    const changed = needed.filter((hex, i) => this.chunks.get(hex)?.location !== locations[i]);
    if (changed.length > 0) {
      // Chunks aged out while the record was written: nothing may be filed that cannot be restored.
      await rm(recordFile, { force: true });
      throw new TransferError('NC_TRANSFER_CHUNKS_MISSING', 'chunks expired before the commit', {
        context: { checkpointId: id, missingChunks: changed.length },
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
    const writer = this.openWriter();
    // Each distinct chunk is claimed once, as a push does, so the commit spends every claim this staging made.
    const seen = new Set<string>();
    try {
      for await (const event of chunker.chunkDirectory(dir)) {
        builder.add(event);
        if (event.kind !== 'chunk' || seen.has(event.digest.toString('hex'))) continue;
        seen.add(event.digest.toString('hex'));
        if (this.claimChunks([event.digest])[0] !== true) {
          const chunk = { codec: ChunkCodec.CHUNK_CODEC_NONE, rawSize: event.data.length, payload: event.data };
          await this.putChunk(event.digest, chunk, writer);
        }
      }
    } finally {
      writer.close();
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

  /**
   * The newest checkpoint filed under `handoverKey`, waiting up to `waitMs` for one to arrive; no longer once
   * `signal` aborts (the caller has gone).
   */
  async find(handoverKey: string, waitMs: number, signal?: AbortSignal): Promise<CheckpointInfo | undefined> {
    const id = this.byHandoverKey.get(handoverKey);
    const found = id === undefined ? undefined : this.get(id);
    if (found !== undefined || waitMs <= 0 || this.closing.signal.aborted || signal?.aborted === true) return found;
    const timeout = new AbortController();
    const onClose = (): void => timeout.abort();
    this.closing.signal.addEventListener('abort', onClose, { once: true });
    signal?.addEventListener('abort', onClose, { once: true });
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
      signal?.removeEventListener('abort', onClose);
    }
    return arrived;
  }

  /**
   * Writes the checkpoint's files to `targetDir` (which must not exist, or be empty). Everything is
   * written beside it and renamed into place only after every chunk authenticated.
   */
  async materialize(checkpointId: string, targetDir: string): Promise<void> {
    if (!this.checkpoints.has(checkpointId))
      throw new StoreError('NC_STORE_NOT_FOUND', 'no such staged checkpoint', { context: { checkpointId } });
    const { manifest } = await this.readManifest(checkpointId);
    await materializeTree(manifest, targetDir, (hex, size) => this.readPlainChunk(hex, size), this.stages);
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
    let record: CheckpointRecord | undefined;
    try {
      record = await this.records.read(entry.recordFile);
    } catch (cause) {
      throw new StoreError('NC_STORE_MANIFEST_CORRUPT', 'staged checkpoint record unreadable', {
        cause,
        context: { checkpointId },
      });
    }
    if (record === undefined)
      throw new StoreError('NC_STORE_MANIFEST_CORRUPT', 'staged checkpoint record fails authentication', {
        context: { checkpointId },
      });
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
   * is the one sealed for this digest (a flipped bit, a truncated or swapped blob fails to open).
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
    const entry = this.chunks.get(digestHex);
    if (entry === undefined)
      throw new StoreError('NC_STORE_NOT_FOUND', 'no such chunk', { context: { digest: digestHex } });
    let sealed: Buffer;
    try {
      sealed = await timedAsync(this.stages, 'materialize-read', entry.location.length, () =>
        this.segments.read(entry.location),
      );
    } catch (cause) {
      throw corruptChunk(digestHex, cause);
    }
    const plain = timed(this.stages, 'materialize-decrypt', sealed.length, () =>
      this.cipher.open(sealed, Buffer.from(digestHex, 'hex')),
    );
    if (plain === undefined || plain.length < CHUNK_HEADER_BYTES) throw corruptChunk(digestHex);
    return { codec: plain.readUInt8(0), rawSize: plain.readUInt32BE(1), payload: plain.subarray(CHUNK_HEADER_BYTES) };
  }

  /** Bytes the store holds on disk, at most maxBytes (dead bytes: dropped chunks in segments still in use). */
  usage(): { usedBytes: number; pendingBytes: number; deadBytes: number; checkpoints: number; chunks: number } {
    const { deadBytes } = this.segments.usage();
    return {
      usedBytes: this.checkpoints.calculatedSize + this.pendingBytes + deadBytes,
      pendingBytes: this.pendingBytes,
      deadBytes,
      checkpoints: this.checkpoints.size,
      chunks: this.chunks.size,
    };
  }

  /** Releases waiters (they get undefined) and lets in-flight deletions finish. */
  async close(): Promise<void> {
    this.closing.abort();
    await Promise.all(this.deletingRecords.values());
    await this.segments.close();
  }

  // ---- internals ---------------------------------------------------------------------------------

  private file(entry: CheckpointEntry): void {
    for (const hex of entry.chunks) {
      const chunk = this.chunks.get(hex);
      if (chunk === undefined) continue;
      if (chunk.refs === 0) this.pendingBytes -= chunk.location.length;
      chunk.refs += 1;
    }
    this.consumeClaims(entry.chunks);
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
    for (const hex of entry.chunks) {
      const chunk = this.chunks.get(hex);
      if (chunk === undefined) continue;
      chunk.refs -= 1;
      if (chunk.refs > 0) continue;
      // Deleted (restored) or evicted, its chunks go at once, except those a push under way was told it
      // holds or has just written: that push commits them (or its claim lapses and the sweep drops them).
      if (this.claimed(chunk)) this.pendingBytes += chunk.location.length;
      else this.dropChunk(hex, chunk, false);
    }
    const path = entry.recordFile;
    const done = (this.deletingRecords.get(path) ?? Promise.resolve())
      .then(() => rm(path, { force: true }))
      .catch((err: unknown) => this.log.warn({ err, path }, 'cannot delete checkpoint record'))
      .finally(() => {
        if (this.deletingRecords.get(path) === done) this.deletingRecords.delete(path);
      });
    this.deletingRecords.set(path, done);
    this.log.info({ checkpointId: entry.info.checkpointId, reason }, 'checkpoint removed');
  }

  private dropChunk(hex: string, chunk: ChunkEntry, pending: boolean): void {
    this.chunks.delete(hex);
    if (pending) this.pendingBytes -= chunk.location.length;
    this.segments.release(chunk.location);
  }

  /** Drops unreferenced chunks whose claims lapsed. */
  private sweep(): void {
    for (const [hex, chunk] of this.chunks) {
      if (chunk.refs === 0 && !this.claimed(chunk)) this.dropChunk(hex, chunk, true);
    }
  }

  private claimed(chunk: ChunkEntry): boolean {
    return chunk.claims > 0 && this.clock.now() - chunk.claimedAt < this.pendingTtlMs;
  }

  private claim(chunk: ChunkEntry): void {
    // Lapsed claims are not counted on: their pushes were abandoned.
    chunk.claims = this.claimed(chunk) ? chunk.claims + 1 : 1;
    chunk.claimedAt = this.clock.now();
  }

  /** A filed checkpoint spends one claim on each of its chunks: the one its push (or staging) made. */
  private consumeClaims(chunks: readonly string[]): void {
    for (const hex of chunks) {
      const chunk = this.chunks.get(hex);
      if (chunk !== undefined && chunk.claims > 0) chunk.claims -= 1;
    }
  }

  private usedBytes(): number {
    return this.checkpoints.calculatedSize + this.pendingBytes + this.segments.usage().deadBytes;
  }

  private reserve(bytes: number, digestHex: string): void {
    if (this.usedBytes() + bytes <= this.maxBytes) return;
    this.sweep();
    while (this.usedBytes() + bytes > this.maxBytes) {
      if (this.checkpoints.size === 0 || this.checkpoints.pop() === undefined) {
        throw new StoreError('NC_STORE_FULL', 'checkpoint store is full', {
          recoverable: true,
          context: { reason: 'quota', maxBytes: this.maxBytes, pendingBytes: this.pendingBytes, digest: digestHex },
        });
      }
    }
  }

  private enforceBound(): void {
    while (this.usedBytes() > this.maxBytes && this.checkpoints.size > 1) this.checkpoints.pop();
  }

  private async load(): Promise<void> {
    const chunksDir = join(this.dir, 'chunks');
    await mkdir(chunksDir, { recursive: true, mode: 0o700 });
    // Anything else there is the layout before segment files (a file per chunk): its records are dropped too.
    for (const name of await readdir(chunksDir))
      if (name !== 'segments') await rm(join(chunksDir, name), { recursive: true, force: true });
    this.segments = await SegmentFiles.open(join(chunksDir, 'segments'), this.log);
    const loaded: { entry: CheckpointEntry; locations: readonly ChunkLocation[] }[] = [];
    for (const path of await this.records.list()) {
      const entry = await this.loadRecord(path);
      if (entry !== undefined) loaded.push(entry);
    }
    // Indexed newest first: where two records name one chunk at different places (the older record outlived a
    // crash while it was being deleted), the chunk is read where the newest says; filed oldest first, for the LRU.
    loaded.sort((a, b) => b.entry.info.createdAtUnixMs - a.entry.info.createdAtUnixMs);
    const kept: CheckpointEntry[] = [];
    for (const { entry, locations } of loaded) {
      const complete = locations.every((l, i) => this.chunks.has(entry.chunks[i] as string) || this.segments.holds(l));
      if (!complete) {
        this.log.warn({ checkpointId: entry.info.checkpointId }, 'staged checkpoint lost chunks; dropped');
        await rm(entry.recordFile, { force: true });
        continue;
      }
      entry.chunks.forEach((hex, i) => {
        const location = locations[i] as ChunkLocation;
        if (this.chunks.has(hex)) return;
        this.segments.adopt(location);
        this.chunks.set(hex, { location, refs: 0, claims: 0, claimedAt: 0 });
        // Unreferenced until filed just below, like a chunk a push has just written.
        this.pendingBytes += location.length;
      });
      kept.push(entry);
    }
    for (const entry of kept.reverse()) {
      const recordBytes = (await stat(entry.recordFile)).size;
      const sizeBytes =
        recordBytes + entry.chunks.reduce((sum, hex) => sum + (this.chunks.get(hex)?.location.length ?? 0), 0);
      this.file({ ...entry, sizeBytes });
    }
    await this.segments.removeUnused();
    this.log.info({ checkpoints: this.checkpoints.size, usedBytes: this.usedBytes() }, 'checkpoint store opened');
  }

  private async loadRecord(
    path: string,
  ): Promise<{ entry: CheckpointEntry; locations: readonly ChunkLocation[] } | undefined> {
    const record = await this.records.read(path).catch(() => undefined);
    const info = record?.info;
    // The name is a keyed hash of the id: a record renamed to stand for another checkpoint is refused.
    if (record !== undefined && info !== undefined && this.records.pathFor(info.checkpointId) === path) {
      try {
        const { manifest } = openManifest(record.manifest, info.manifestDigest);
        const chunks = [...distinctChunks(manifest).keys()];
        if (chunks.length === record.locations.length)
          return { entry: { info, chunks, recordFile: path, sizeBytes: 0 }, locations: record.locations };
      } catch (err) {
        this.log.warn({ err, path }, 'staged checkpoint record invalid; dropped');
      }
    }
    this.log.warn({ path }, 'staged checkpoint record unreadable; dropped');
    await rm(path, { force: true });
    return undefined;
  }
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
