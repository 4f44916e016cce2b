import { createHash } from 'node:crypto';
import { Server } from '@grpc/grpc-js';
import type {
  Metadata,
  sendUnaryData,
  ServerDuplexStream,
  ServerUnaryCall,
  ServiceDefinition,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { bindServer, shutdownServer } from '../../../common/grpc/server';
import { encodeStatus } from '../../../common/grpc/status-codec';
import type { Logger } from '../../../common/logging';
import { StateTransferService } from '../../../proto/gen/chain/v1/transfer';
import type {
  ChunkAck,
  ChunkFrame,
  CommitRequest,
  CommitResponse,
  HaveChunksRequest,
  HaveChunksResponse,
  HelloRequest,
  HelloResponse,
  StateTransferServer,
} from '../../../proto/gen/chain/v1/transfer';
import type { CheckpointStore, SegmentWriter } from '../store/checkpoint-store';
import { DEFAULT_CHUNKING, PAGE_CHUNK_BYTES } from './chunker';
import { SUPPORTED_CODECS, decompress } from './codec';
import { TransferError } from './errors';
import { DIGEST_BYTES } from './manifest';
import { FLOW_CONTROL_WINDOW_OPTION, widenServerWindows } from './http2-window';
import type { StageTimes } from './stage-times';
import { timed, timedAsync } from './stage-times';
import { resetServerStream } from './stream-reset';
import type { TransferTls } from './tls';
import { peerNodeName, serverCredentials } from './tls';
import { PROTOCOL_VERSIONS, VERSION_HEADER, negotiateVersion } from './version';
import type { VersionRange } from './version';

export interface TransferServerOptions {
  readonly store: CheckpointStore;
  readonly tls: TransferTls;
  readonly logger: Logger;
  /** Protocol versions served. @default PROTOCOL_VERSIONS */
  readonly versions?: VersionRange;
  /** Unacknowledged upload bytes a sender may have in flight (what a push costs this node in memory). @default 8 MiB */
  readonly maxInFlightBytes?: number;
  /** Chunks verified and stored at once per upload. @default 4 */
  readonly chunkConcurrency?: number;
  /** Where the receiver's time goes, summed (for the bench). @default none */
  readonly stages?: StageTimes;
  /**
   * An upload that neither sends a frame nor takes an acknowledgement for this long is cut with
   * NC_TRANSFER_TIMEOUT: a stalled or hostile sender must not hold a store segment open forever.
   * @default 60 s
   */
  readonly idleTimeoutMs?: number;
  /** More services behind the same mutual TLS (the peer-facing pre-stage). @default none */
  readonly services?: readonly { definition: ServiceDefinition; implementation: UntypedServiceImplementation }[];
}

/** Peers on other hosts are told a failure of this node's own without its internals. */
const UNEXPECTED = { unexpected: { code: 'NC_TRANSFER_REMOTE', message: 'internal error' } } as const;
const MAX_DIGESTS_PER_QUERY = 4096;
/** Slack over the plain size for a compressed frame: codecs may grow incompressible data a little. */
const FRAME_SLACK_BYTES = 1024;
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const HTTP2_WINDOW_BYTES = 4 * 1024 * 1024;
/** HTTP/2 allows up to 16 MiB - 1; a page chunk and its frame header fit in one. */
const HTTP2_MAX_FRAME_BYTES = 1024 * 1024;

/** Receives checkpoints from peer sidecars into the store: the State Transfer Protocol's server. */
export class TransferServer {
  private readonly store: CheckpointStore;
  private readonly tls: TransferTls;
  private readonly log: Logger;
  private readonly versions: VersionRange;
  private readonly maxInFlightBytes: number;
  private readonly chunkConcurrency: number;
  private readonly maxChunkBytes = Math.max(DEFAULT_CHUNKING.maxBytes, PAGE_CHUNK_BYTES);
  private readonly stages: StageTimes | undefined;
  private readonly idleTimeoutMs: number;
  private readonly services: NonNullable<TransferServerOptions['services']>;
  private server: Server | undefined;

  constructor(options: TransferServerOptions) {
    this.store = options.store;
    this.tls = options.tls;
    this.log = options.logger.child({ component: 'transfer-server' });
    this.versions = options.versions ?? PROTOCOL_VERSIONS;
    this.maxInFlightBytes = options.maxInFlightBytes ?? 8 * 1024 * 1024;
    this.chunkConcurrency = options.chunkConcurrency ?? 4;
    this.stages = options.stages;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.services = options.services ?? [];
  }

  /** Binds `address` ("host:port", port 0 = OS-chosen) with mutual TLS and resolves the bound port. */
  async start(address: string): Promise<number> {
    if (this.server !== undefined) throw new Error('TransferServer already started');
    const server = new Server({
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      [FLOW_CONTROL_WINDOW_OPTION]: HTTP2_WINDOW_BYTES,
    });
    server.addService(StateTransferService, this.handlers());
    for (const s of this.services) server.addService(s.definition, s.implementation);
    const port = await bindServer(server, address, serverCredentials(this.tls));
    if (!widenServerWindows(server, HTTP2_WINDOW_BYTES, HTTP2_MAX_FRAME_BYTES)) {
      this.log.warn('cannot raise the HTTP/2 receive window of this grpc-js version; uploads will be slow');
    }
    this.server = server;
    this.log.info({ address, port, node: this.tls.nodeName }, 'transfer server listening');
    return port;
  }

  async stop(graceMs = 2000): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await shutdownServer(server, graceMs);
  }

  private handlers(): StateTransferServer {
    return {
      hello: (call, callback) => this.unary(call, callback, () => this.hello(call.request)),
      haveChunks: (call, callback) => this.unary(call, callback, () => this.haveChunks(call.metadata, call.request)),
      commit: (call, callback) => this.unary(call, callback, () => this.commit(call)),
      uploadChunks: (call) => this.upload(call),
    };
  }

  private unary<Req, Res>(
    call: ServerUnaryCall<Req, Res>,
    callback: sendUnaryData<Res>,
    run: () => Promise<Res> | Res,
  ): void {
    Promise.resolve()
      .then(run)
      .then(
        (response) => callback(null, response),
        (err: unknown) => {
          this.log.warn({ err, peer: peerNodeName(call), path: call.getPath() }, 'transfer call refused');
          callback(encodeStatus(err, UNEXPECTED));
        },
      );
  }

  private hello(request: HelloRequest): HelloResponse {
    const version = negotiateVersion(this.versions, { min: request.minVersion, max: request.maxVersion });
    return {
      version,
      nodeName: this.tls.nodeName,
      maxInFlightBytes: this.maxInFlightBytes,
      maxChunkBytes: this.maxChunkBytes,
      codecs: [...SUPPORTED_CODECS],
    };
  }

  private checkVersion(metadata: Metadata): void {
    const raw = metadata.get(VERSION_HEADER)[0];
    const version = typeof raw === 'string' ? Number(raw) : NaN;
    if (!Number.isInteger(version) || version < this.versions.min || version > this.versions.max) {
      throw new TransferError('NC_TRANSFER_VERSION_MISMATCH', 'call carries no protocol version this node speaks', {
        context: { version: String(raw), min: this.versions.min, max: this.versions.max },
      });
    }
  }

  private haveChunks(metadata: Metadata, request: HaveChunksRequest): HaveChunksResponse {
    this.checkVersion(metadata);
    if (request.digests.length > MAX_DIGESTS_PER_QUERY || request.digests.some((d) => d.length !== DIGEST_BYTES)) {
      throw new TransferError('NC_TRANSFER_FRAME_INVALID', 'chunk query malformed', {
        context: { digests: request.digests.length },
      });
    }
    return { have: this.store.claimChunks(request.digests) };
  }

  private async commit(call: ServerUnaryCall<CommitRequest, CommitResponse>): Promise<CommitResponse> {
    this.checkVersion(call.metadata);
    const { info, manifest } = call.request;
    if (info === undefined) throw new TransferError('NC_TRANSFER_FRAME_INVALID', 'commit without checkpoint info');
    // The sender is who its certificate says, whatever the request claims.
    const checkpoint = await this.store.commit({ ...info, sourceNode: peerNodeName(call) ?? '' }, manifest);
    return { checkpoint };
  }

  /**
   * Verifies and stores frames as they come, a few at a time. Reading pauses while that many are under way,
   * and while the acknowledgements queued for the sender fill the stream's buffer (it is not reading them):
   * HTTP/2 flow control then holds the sender back rather than memory filling up here, and a sender that
   * neither sends nor reads for the idle timeout is cut.
   */
  private upload(call: ServerDuplexStream<ChunkFrame, ChunkAck>): void {
    const peer = peerNodeName(call);
    const log = this.log.child({ peer });
    let active = 0;
    let ended = false;
    let failed = false;
    let finished = false;
    let acksBlocked = false;
    let idle: NodeJS.Timeout | undefined;
    // This upload's chunks go to a segment of their own, opened by its first frame and closed once the stream
    // is over and nothing is under way.
    let writer: SegmentWriter | undefined;
    const closeWriterWhenIdle = (): void => {
      if ((ended || failed) && active === 0) writer?.close();
    };
    // A status goes out behind the acknowledgements queued before it, which a sender that stopped reading never
    // takes: it would keep the stream. One that took none for the idle timeout has its stream reset at once;
    // any other refused sender is given the idle timeout to read them before its stream is reset.
    const fail = (err: unknown, notReading = false): void => {
      if (failed) return;
      failed = true;
      clearTimeout(idle);
      closeWriterWhenIdle();
      log.warn({ err }, 'chunk upload refused');
      if (notReading && resetServerStream(call)) return;
      call.emit('error', encodeStatus(err, UNEXPECTED));
      if (call.writableLength > 0) idle = setTimeout(() => resetServerStream(call), this.idleTimeoutMs).unref();
    };
    try {
      this.checkVersion(call.metadata);
    } catch (err) {
      fail(err);
      return;
    }
    // Progress is a frame received or an acknowledgement the sender took; a stream without either is cut.
    // A chunk this node is still storing is its own delay, not the sender's.
    const stalled = (): void => {
      if (active > 0) {
        progressed();
        return;
      }
      fail(
        new TransferError('NC_TRANSFER_TIMEOUT', 'upload stalled: no frame sent and no acknowledgement read', {
          context: { idleTimeoutMs: this.idleTimeoutMs, unreadAcks: call.writableLength },
          recoverable: true,
        }),
        call.writableLength > 0,
      );
    };
    const progressed = (): void => {
      clearTimeout(idle);
      if (!failed && !finished) idle = setTimeout(stalled, this.idleTimeoutMs).unref();
    };
    progressed();
    const readOrPause = (): void => {
      if (failed) return;
      if (active < this.chunkConcurrency && !acksBlocked) call.resume();
      else call.pause();
    };
    const settle = (): void => {
      active -= 1;
      closeWriterWhenIdle();
      if (failed) return;
      readOrPause();
      if (ended && active === 0) call.end();
    };
    call.on('data', (frame: ChunkFrame) => {
      if (failed) return;
      progressed();
      active += 1;
      readOrPause();
      this.receive(frame, (writer ??= this.store.openWriter()))
        .then((ack) => {
          if (!failed && !call.write(ack, progressed)) acksBlocked = true;
          log.debug({ digest: frame.digest.toString('hex'), wireBytes: frame.data.length }, 'chunk stored');
        })
        .catch(fail)
        .finally(settle);
    });
    call.on('drain', () => {
      acksBlocked = false;
      readOrPause();
    });
    call.on('end', () => {
      ended = true;
      closeWriterWhenIdle();
      if (active === 0 && !failed) call.end();
    });
    // Every acknowledgement taken and the status sent: nothing left for the sender to stall.
    call.on('finish', () => {
      finished = true;
      clearTimeout(idle);
    });
    call.on('cancelled', () => {
      if (!failed) log.info('chunk upload cancelled by the sender');
      failed = true;
      clearTimeout(idle);
      closeWriterWhenIdle();
    });
    call.on('error', (err: unknown) => {
      if (!failed) log.warn({ err }, 'chunk upload stream failed');
      failed = true;
      clearTimeout(idle);
      closeWriterWhenIdle();
    });
  }

  private async receive(frame: ChunkFrame, writer: SegmentWriter): Promise<ChunkAck> {
    const { digest, codec, rawSize, data } = frame;
    if (
      digest.length !== DIGEST_BYTES ||
      rawSize <= 0 ||
      rawSize > this.maxChunkBytes ||
      data.length > rawSize + FRAME_SLACK_BYTES
    ) {
      throw new TransferError('NC_TRANSFER_FRAME_INVALID', 'chunk frame malformed', {
        context: { digestBytes: digest.length, rawSize, dataBytes: data.length },
      });
    }
    const ack = { digest, wireSize: data.length };
    if (this.store.hasChunk(digest.toString('hex'))) {
      this.store.claimChunks([digest]);
      return ack;
    }
    const plain = await timedAsync(this.stages, 'decompress', data.length, () => decompress(codec, data, rawSize));
    const actual = timed(this.stages, 'verify', plain.length, () => createHash('sha256').update(plain).digest());
    if (plain.length !== rawSize || !actual.equals(digest)) {
      throw new TransferError('NC_TRANSFER_CHUNK_CORRUPT', 'chunk does not match its digest', {
        context: { digest: digest.toString('hex'), rawSize, plainBytes: plain.length },
      });
    }
    await this.store.putChunk(digest, { codec, rawSize, payload: data }, writer);
    return ack;
  }
}
