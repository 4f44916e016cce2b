import { Metadata } from '@grpc/grpc-js';
import type { CallOptions, ClientDuplexStream, ClientUnaryCall, ServiceError } from '@grpc/grpc-js';
import type { Logger } from '../../../common/logging';
import type { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import { ChunkCodec } from '../../../proto/gen/chain/v1/transfer';
import type { StateTransferClient } from '../../../proto/gen/chain/v1/transfer';
import type {
  ChunkAck,
  ChunkFrame,
  CommitResponse,
  HaveChunksResponse,
  HelloResponse,
} from '../../../proto/gen/chain/v1/transfer';
import { infoFromMeta } from '../store/checkpoint-store';
import type { CheckpointMeta, CheckpointStore } from '../store/checkpoint-store';
import { ContentDefinedChunker } from './chunker';
import { CodecSelector, NONE, compress } from './codec';
import type { CodecSelectorOptions } from './codec';
import { TransferError } from './errors';
import { FlowWindow } from './flow-window';
import { FastStateTransferClient } from './frame-encoding';
import { ManifestBuilder, fileChunks } from './manifest';
import type { SealedManifest } from './manifest';
import { FLOW_CONTROL_WINDOW_OPTION } from './http2-window';
import { isServiceError } from '../../../common/grpc/status-codec';
import { peerFailure } from './peer-failure';
import type { StageTimes } from './stage-times';
import { timed, timedAsync } from './stage-times';
import type { TransferTls } from './tls';
import { channelCredentials } from './tls';
import { PROTOCOL_VERSIONS, VERSION_HEADER } from './version';
import type { VersionRange } from './version';

export interface TransferClientOptions {
  readonly tls: TransferTls;
  readonly logger: Logger;
  /** Protocol versions offered. @default PROTOCOL_VERSIONS */
  readonly versions?: VersionRange;
  /** Upper bound on unacknowledged upload bytes; the receiver may ask for less. @default 8 MiB */
  readonly maxInFlightBytes?: number;
  /** Chunks asked about per HaveChunks call. @default 128 */
  readonly queryBatchChunks?: number;
  /** Deadline of each unary call (Hello, HaveChunks, Commit). @default 60 s */
  readonly callTimeoutMs?: number;
  readonly codec?: CodecSelectorOptions;
  /** Where each push's time goes, summed (for the bench). @default none */
  readonly stages?: StageTimes;
}

/** A local checkpoint directory, or a checkpoint already staged in this node's store. */
export type PushSource =
  { readonly directory: string } | { readonly store: CheckpointStore; readonly checkpointId: string };

export interface PushResult {
  readonly checkpointId: string;
  readonly manifestDigest: string;
  /** The checkpoint as the receiver filed it. */
  readonly checkpoint: CheckpointInfo;
  readonly peerNode: string;
  /** Chunk payload bytes sent (after compression), the figure the incremental target is about. */
  readonly wireBytes: number;
  readonly sentChunks: number;
  /** Chunks the receiver already held, or that repeat within the checkpoint. */
  readonly skippedChunks: number;
  readonly totalChunks: number;
  readonly plainBytes: number;
  readonly sentPlainBytes: number;
  readonly manifestBytes: number;
  /** Plain bytes sent per codec. */
  readonly codecs: Readonly<Record<string, number>>;
  readonly peakInFlightBytes: number;
}

interface PendingChunk {
  readonly digest: Buffer;
  readonly data: Buffer;
}

/** A connection opened ahead of a push and not used within this long is closed. */
const PREPARED_TTL_MS = 60_000;

interface PreparedPush {
  readonly client: StateTransferClient;
  readonly session: PushSession;
  readonly timer: NodeJS.Timeout;
}

const QUERY_BATCH_BYTES = 8 * 1024 * 1024;
/**
 * The first query asks about this many chunks, each next one about twice as many, up to queryBatchChunks:
 * the receiver starts storing while this node still reads, instead of a small checkpoint travelling only
 * once all of it has been read (at 128 a 5 MiB checkpoint was one batch: read, then ask, then send).
 */
const FIRST_QUERY_BATCH_CHUNKS = 8;
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const WIRE_SAMPLE_BYTES = 2 * 1024 * 1024;

/** Pushes checkpoints to peer sidecars: the State Transfer Protocol's client. */
export class TransferClient {
  private readonly tls: TransferTls;
  private readonly log: Logger;
  private readonly versions: VersionRange;
  private readonly maxInFlightBytes: number;
  private readonly queryBatchChunks: number;
  private readonly callTimeoutMs: number;
  private readonly codecOptions: CodecSelectorOptions;
  private readonly stages: StageTimes | undefined;
  private readonly prepared = new Map<string, PreparedPush>();

  constructor(options: TransferClientOptions) {
    this.tls = options.tls;
    this.log = options.logger.child({ component: 'transfer-client' });
    this.versions = options.versions ?? PROTOCOL_VERSIONS;
    this.maxInFlightBytes = options.maxInFlightBytes ?? 8 * 1024 * 1024;
    this.queryBatchChunks = options.queryBatchChunks ?? 128;
    this.callTimeoutMs = options.callTimeoutMs ?? 60_000;
    this.codecOptions = options.codec ?? {};
    this.stages = options.stages;
  }

  /**
   * Sends the checkpoint to `peerAddress` ("host:port"): only chunks the peer lacks travel, then the
   * manifest is committed and the peer files it under `meta.handoverKey`. Pushing again after a failure
   * resumes: chunks that arrived before are not sent twice. The source is only read.
   */
  async push(peerAddress: string, source: PushSource, meta: CheckpointMeta): Promise<PushResult> {
    const { client, session } = (await this.takePrepared(peerAddress)) ?? this.open(peerAddress);
    try {
      return await session.run(source, meta);
    } catch (err) {
      const mapped = isServiceError(err) ? peerFailure(err, peerAddress) : err;
      this.log.warn({ err: mapped, peer: peerAddress }, 'checkpoint push failed');
      throw mapped;
    } finally {
      session.abort();
      client.close();
    }
  }

  /**
   * Opens a connection to `peerAddress` (TCP, mutual TLS, protocol version agreed) for the next push there,
   * and resolves once it is up: a hand-over calls it before it freezes its task, so the freeze does not wait
   * for a handshake. Best effort: if it fails, the push opens its own connection (and reports its failure).
   * Unused, it is closed after a minute.
   */
  async prepare(peerAddress: string): Promise<void> {
    this.discardPrepared(peerAddress);
    const opened = this.open(peerAddress);
    const timer = setTimeout(() => this.discardPrepared(peerAddress), PREPARED_TTL_MS);
    timer.unref();
    this.prepared.set(peerAddress, { ...opened, timer });
    await opened.session.greet().catch((err: unknown) => {
      this.log.warn({ err, peer: peerAddress }, 'could not connect ahead of the push; it will connect itself');
    });
  }

  private open(peerAddress: string): { client: StateTransferClient; session: PushSession } {
    const client = new FastStateTransferClient(peerAddress, channelCredentials(this.tls), {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      [FLOW_CONTROL_WINDOW_OPTION]: 4 * 1024 * 1024,
    });
    return { client, session: new PushSession(client, peerAddress, this, this.log.child({ peer: peerAddress })) };
  }

  /** The connection prepared for `peerAddress`, if it came up; one that failed is closed. */
  private async takePrepared(peerAddress: string): Promise<PreparedPush | undefined> {
    const prepared = this.prepared.get(peerAddress);
    if (prepared === undefined) return undefined;
    this.prepared.delete(peerAddress);
    clearTimeout(prepared.timer);
    const up = await prepared.session.greet().then(
      () => true,
      () => false,
    );
    if (up) return prepared;
    prepared.client.close();
    return undefined;
  }

  private discardPrepared(peerAddress: string): void {
    const prepared = this.prepared.get(peerAddress);
    if (prepared === undefined) return;
    this.prepared.delete(peerAddress);
    clearTimeout(prepared.timer);
    prepared.client.close();
  }

  /** @internal settings a push session reads. */
  settings(): {
    versions: VersionRange;
    maxInFlightBytes: number;
    queryBatchChunks: number;
    callTimeoutMs: number;
    codec: CodecSelectorOptions;
    stages: StageTimes | undefined;
  } {
    return {
      versions: this.versions,
      maxInFlightBytes: this.maxInFlightBytes,
      queryBatchChunks: this.queryBatchChunks,
      callTimeoutMs: this.callTimeoutMs,
      codec: this.codecOptions,
      stages: this.stages,
    };
  }
}

/** One push: holds the upload stream, the window and the counters. */
class PushSession {
  private readonly settings: ReturnType<TransferClient['settings']>;
  private readonly metadata = new Metadata();
  private readonly seen = new Set<string>();
  private readonly inFlight = new Map<string, number>();
  private readonly selector: CodecSelector;
  private window: FlowWindow;
  private upload: ClientDuplexStream<ChunkFrame, ChunkAck> | undefined;
  private uploadDone: Promise<void> | undefined;
  private uploadFailure: Error | undefined;
  private batch: PendingChunk[] = [];
  private sending: Promise<void> = Promise.resolve();
  private batchBytes = 0;
  private batchLimit: number;
  private counts = { total: 0, sent: 0, skipped: 0, plain: 0, sentPlain: 0, wire: 0 };
  private hello: Promise<HelloResponse> | undefined;

  constructor(
    private readonly client: StateTransferClient,
    private readonly peer: string,
    owner: TransferClient,
    private readonly log: Logger,
  ) {
    this.settings = owner.settings();
    this.window = new FlowWindow(this.settings.maxInFlightBytes);
    this.selector = new CodecSelector(this.settings.codec);
    this.batchLimit = Math.min(FIRST_QUERY_BATCH_CHUNKS, this.settings.queryBatchChunks);
  }

  /** Connects (the first call pays the TCP and TLS handshakes) and agrees a version, once per session. */
  greet(): Promise<HelloResponse> {
    this.hello ??= this.unary<HelloResponse>((m, o, cb) =>
      this.client.hello({ minVersion: this.settings.versions.min, maxVersion: this.settings.versions.max }, m, o, cb),
    ).then((hello) => {
      if (hello.version < this.settings.versions.min || hello.version > this.settings.versions.max) {
        throw new TransferError(
          'NC_TRANSFER_VERSION_MISMATCH',
          'peer chose a protocol version this node does not speak',
          {
            context: { peer: this.peer, version: hello.version },
          },
        );
      }
      this.metadata.set(VERSION_HEADER, String(hello.version));
      return hello;
    });
    return this.hello;
  }

  async run(source: PushSource, meta: CheckpointMeta): Promise<PushResult> {
    const stages = this.settings.stages;
    // Wall time of the push's phases; a prepared session's hello is already settled.
    const hello = await timedAsync(stages, 'push-hello', 0, () => this.greet());
    this.window = new FlowWindow(
      Math.max(1, Math.min(this.settings.maxInFlightBytes, hello.maxInFlightBytes || Infinity)),
    );
    const started = process.hrtime.bigint();

    const sealed = await timedAsync(stages, 'push-offer', 0, () =>
      'directory' in source
        ? this.sendDirectory(source.directory, hello.maxChunkBytes)
        : this.sendStaged(source.store, source.checkpointId),
    );
    await timedAsync(stages, 'push-drain', 0, async () => {
      await this.flush();
      await this.sending;
      await this.finishUpload();
    });

    const info = infoFromMeta(meta, sealed.digest);
    const committed = await timedAsync(stages, 'push-commit', 0, () =>
      this.unary<CommitResponse>((m, o, cb) => this.client.commit({ info, manifest: sealed.bytes }, m, o, cb)),
    );
    const checkpoint = committed.checkpoint;
    if (checkpoint === undefined || checkpoint.manifestDigest !== sealed.digest) {
      throw new TransferError('NC_TRANSFER_PROTOCOL', 'peer committed something other than what was sent', {
        context: { peer: this.peer },
      });
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const result: PushResult = {
      checkpointId: checkpoint.checkpointId,
      manifestDigest: sealed.digest,
      checkpoint,
      peerNode: hello.nodeName,
      wireBytes: this.counts.wire,
      sentChunks: this.counts.sent,
      skippedChunks: this.counts.skipped,
      totalChunks: this.counts.total,
      plainBytes: this.counts.plain,
      sentPlainBytes: this.counts.sentPlain,
      manifestBytes: sealed.bytes.length,
      codecs: this.selector.usage(),
      peakInFlightBytes: this.window.peakBytes,
    };
    this.log.info(
      { ...result, checkpoint: undefined, codecs: result.codecs, seconds, handoverKey: meta.handoverKey },
      'checkpoint pushed',
    );
    return result;
  }

  abort(): void {
    this.upload?.cancel();
  }

  private async sendDirectory(directory: string, maxChunkBytes: number): Promise<SealedManifest> {
    const chunker = new ContentDefinedChunker(undefined, this.settings.stages);
    if (maxChunkBytes > 0 && chunker.maxChunkBytes > maxChunkBytes) {
      throw new TransferError('NC_TRANSFER_PROTOCOL', 'peer accepts only smaller chunks than this node cuts', {
        context: { peer: this.peer, maxChunkBytes },
      });
    }
    const builder = new ManifestBuilder();
    for await (const event of chunker.chunkDirectory(directory)) {
      builder.add(event);
      if (event.kind === 'chunk') await this.offer(event);
    }
    return builder.seal();
  }

  private async sendStaged(store: CheckpointStore, checkpointId: string): Promise<SealedManifest> {
    const sealed = await store.readManifest(checkpointId);
    for (const file of sealed.manifest.files) {
      for (const { digest, size } of fileChunks(file)) {
        const hex = digest.toString('hex');
        // Repeats are counted without reading them again.
        const data = this.seen.has(hex) ? Buffer.alloc(0) : await store.readPlainChunk(hex, size);
        await this.offer({ digest, data, size });
      }
    }
    return sealed;
  }

  private async offer(chunk: PendingChunk & { size?: number }): Promise<void> {
    const hex = chunk.digest.toString('hex');
    this.counts.total += 1;
    this.counts.plain += chunk.size ?? chunk.data.length;
    if (this.seen.has(hex)) {
      this.counts.skipped += 1;
      return;
    }
    this.seen.add(hex);
    this.batch.push(chunk);
    this.batchBytes += chunk.data.length;
    if (this.batch.length >= this.batchLimit || this.batchBytes >= QUERY_BATCH_BYTES) await this.flush();
  }

  /**
   * Asks which of the batch the peer lacks and queues those for sending. The question for one batch
   * travels while the previous batch is being sent; at most those two batches and the one being read
   * are held in memory.
   */
  private async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    this.batchLimit = Math.min(this.batchLimit * 2, this.settings.queryBatchChunks);
    const query = this.unary<HaveChunksResponse>((m, o, cb) =>
      this.client.haveChunks({ digests: batch.map((c) => c.digest) }, m, o, cb),
    );
    query.catch(() => undefined);
    const previous = this.sending;
    this.sending = previous.then(async () => {
      const { have } = await timedAsync(this.settings.stages, 'wait-have', 0, () => query);
      if (have.length !== batch.length) {
        throw new TransferError('NC_TRANSFER_PROTOCOL', 'peer answered a chunk query with the wrong count', {
          context: { peer: this.peer },
        });
      }
      for (let i = 0; i < batch.length; i += 1) {
        const chunk = batch[i] as PendingChunk;
        if (have[i] === true) this.counts.skipped += 1;
        else await this.send(chunk);
      }
    });
    this.sending.catch(() => undefined);
    await previous;
  }

  private async send(chunk: PendingChunk): Promise<void> {
    const stages = this.settings.stages;
    const option = timed(stages, 'compress', 0, () => this.selector.optionFor(chunk.data));
    let codec = option.codec;
    let payload = chunk.data;
    if (option !== NONE) {
      const packed = await timedAsync(stages, 'compress', chunk.data.length, () => compress(option, chunk.data));
      if (packed.length < chunk.data.length) payload = packed;
      else codec = ChunkCodec.CHUNK_CODEC_NONE;
    }
    await timedAsync(stages, 'wait-window', 0, () => this.window.acquire(payload.length));
    const upload = this.openUpload();
    const hex = chunk.digest.toString('hex');
    this.inFlight.set(hex, payload.length);
    this.counts.sent += 1;
    this.counts.sentPlain += chunk.data.length;
    this.counts.wire += payload.length;
    const frame = { digest: chunk.digest, codec, rawSize: chunk.data.length, data: payload };
    if (!timed(stages, 'send', payload.length, () => upload.write(frame)))
      await timedAsync(stages, 'wait-drain', 0, () => this.drained(upload));
    const rate = this.window.takeWireRate(WIRE_SAMPLE_BYTES);
    if (rate !== undefined) this.selector.recordWireRate(rate);
  }

  private openUpload(): ClientDuplexStream<ChunkFrame, ChunkAck> {
    if (this.upload !== undefined) return this.upload;
    const upload = this.client.uploadChunks(this.metadata);
    this.upload = upload;
    this.uploadDone = new Promise<void>((resolve, reject) => {
      upload.on('data', (ack: ChunkAck) => {
        const hex = ack.digest.toString('hex');
        const size = this.inFlight.get(hex);
        if (size === undefined) {
          const err = new TransferError('NC_TRANSFER_PROTOCOL', 'peer acknowledged a chunk that was not sent', {
            context: { peer: this.peer, digest: hex },
          });
          this.failUpload(err);
          reject(err);
          return;
        }
        this.inFlight.delete(hex);
        this.window.release(size);
      });
      upload.on('error', (err: ServiceError) => {
        const mapped = peerFailure(err, this.peer);
        this.failUpload(mapped);
        reject(mapped);
      });
      upload.on('status', () => resolve());
    });
    // A failure surfaces through the window or finishUpload; this keeps it from counting as unhandled meanwhile.
    this.uploadDone.catch(() => undefined);
    return upload;
  }

  private failUpload(err: Error): void {
    this.uploadFailure ??= err;
    this.window.fail(err);
  }

  private drained(upload: ClientDuplexStream<ChunkFrame, ChunkAck>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.uploadFailure !== undefined) {
        reject(this.uploadFailure);
        return;
      }
      const onDrain = (): void => {
        upload.off('error', onError);
        resolve();
      };
      const onError = (): void => {
        upload.off('drain', onDrain);
        reject(
          this.uploadFailure ??
            new TransferError('NC_TRANSFER_PEER_UNAVAILABLE', 'upload stream failed', { recoverable: true }),
        );
      };
      upload.once('drain', onDrain);
      upload.once('error', onError);
    });
  }

  /** Half-closes the upload and waits for every frame's ack: a stream that ends short is an error. */
  private async finishUpload(): Promise<void> {
    const upload = this.upload;
    if (upload === undefined) return;
    upload.end();
    await this.uploadDone;
    if (this.inFlight.size > 0) {
      throw new TransferError('NC_TRANSFER_STREAM_TRUNCATED', 'upload ended before every chunk was acknowledged', {
        recoverable: true,
        context: { peer: this.peer, unacknowledged: this.inFlight.size },
      });
    }
  }

  private unary<Res>(
    call: (
      metadata: Metadata,
      options: CallOptions,
      callback: (err: ServiceError | null, res?: Res) => void,
    ) => ClientUnaryCall,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      call(this.metadata, { deadline: Date.now() + this.settings.callTimeoutMs }, (err, res) => {
        if (err !== null) reject(peerFailure(err, this.peer));
        else if (res === undefined)
          reject(new TransferError('NC_TRANSFER_PROTOCOL', 'empty answer from peer', { context: { peer: this.peer } }));
        else resolve(res);
      });
    });
  }
}
