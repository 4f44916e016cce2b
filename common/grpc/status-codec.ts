import { Metadata, status } from '@grpc/grpc-js';
import type { ServerErrorResponse, ServiceError } from '@grpc/grpc-js';
import { errorCode, errorMessage, NomadChainError } from '../errors';
import type { ErrorContext, NomadChainErrorOptions } from '../errors';

/**
 * The wire format of an error between nomad-chain's own gRPC peers (plugin ↔ sidecar local API, sidecar ↔
 * sidecar transfer): the gRPC status says what kind of failure it is to any client, and trailers carry what
 * a nomad-chain client rebuilds the error from. Keys are lower-case as gRPC requires; `-bin` keys travel
 * base64 so a context may hold any UTF-8.
 */
export const ERROR_CODE_TRAILER = 'nc-error-code';
export const RECOVERABLE_TRAILER = 'nc-recoverable';
export const CONTEXT_TRAILER = 'nc-error-context-bin';

/** A context larger than this is not sent: gRPC refuses a response whose metadata passes 8 KiB by default. */
const MAX_CONTEXT_BYTES = 4096;
const CODE_PATTERN = /^NC_[A-Z0-9_]+$/;

/** The gRPC status of each code that is not an internal failure; any other NC_ code travels as INTERNAL. */
const GRPC_STATUS: Readonly<Record<string, status>> = {
  NC_CONFIG_INVALID: status.INVALID_ARGUMENT,
  NC_PLUGIN_CONFIG_INVALID: status.INVALID_ARGUMENT,
  NC_PLUGIN_TASK_CONFIG_INVALID: status.INVALID_ARGUMENT,
  NC_PLUGIN_REQUEST_INVALID: status.INVALID_ARGUMENT,
  NC_PLUGIN_TASK_STATE_INVALID: status.INVALID_ARGUMENT,
  NC_PLUGIN_NOT_CONFIGURED: status.FAILED_PRECONDITION,
  NC_PLUGIN_TASK_RUNNING: status.FAILED_PRECONDITION,
  NC_PLUGIN_TASK_NOT_FOUND: status.NOT_FOUND,
  NC_PLUGIN_TASK_EXISTS: status.ALREADY_EXISTS,
  NC_PLUGIN_UNSUPPORTED: status.UNIMPLEMENTED,
  NC_TASK_NOT_FOUND: status.NOT_FOUND,
  NC_TASK_EXISTS: status.ALREADY_EXISTS,
  NC_TASK_SPEC_INVALID: status.INVALID_ARGUMENT,
  NC_TASK_NOT_RUNNING: status.FAILED_PRECONDITION,
  NC_TASK_NOT_HELD: status.FAILED_PRECONDITION,
  NC_TASK_EXEC_FAILED: status.DEADLINE_EXCEEDED,
  NC_CHECKPOINT_NOT_FOUND: status.NOT_FOUND,
  NC_CHECKPOINT_ALREADY_RESTORED: status.FAILED_PRECONDITION,
  NC_CHECKPOINT_CORRUPT: status.DATA_LOSS,
  NC_CHECKPOINT_TRUNCATED: status.DATA_LOSS,
  NC_FEATURE_UNAVAILABLE: status.FAILED_PRECONDITION,
  NC_LAZY_PAGES_TIMEOUT: status.DEADLINE_EXCEEDED,
  NC_TRANSFER_VERSION_MISMATCH: status.FAILED_PRECONDITION,
  NC_TRANSFER_FRAME_INVALID: status.INVALID_ARGUMENT,
  NC_TRANSFER_MANIFEST_INVALID: status.INVALID_ARGUMENT,
  NC_TRANSFER_PROTOCOL: status.INVALID_ARGUMENT,
  NC_TRANSFER_CHUNK_CORRUPT: status.DATA_LOSS,
  NC_TRANSFER_STREAM_CORRUPT: status.DATA_LOSS,
  NC_TRANSFER_MANIFEST_MISMATCH: status.DATA_LOSS,
  NC_TRANSFER_CHUNKS_MISSING: status.FAILED_PRECONDITION,
  NC_STORE_FULL: status.RESOURCE_EXHAUSTED,
  NC_STORE_CONFLICT: status.ALREADY_EXISTS,
  NC_STORE_NOT_FOUND: status.NOT_FOUND,
};

export interface EncodeOptions {
  /**
   * How an error without an NC_ code is sent. A server facing other hosts sends a code of its own and a
   * fixed message rather than a stack's internals.
   * @default no code, the error's own message
   */
  readonly unexpected?: { readonly code: string; readonly message: string };
}

/** An error as a gRPC status, ready for a unary callback or a stream's `emit('error')`. */
export interface EncodedStatus extends ServerErrorResponse {
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;
}

/**
 * The one mapping from an error to a gRPC status for every nomad-chain server: the status that fits the
 * code (or the one a relayed peer answer came under), the code, `recoverable` and context in trailers.
 */
export function encodeStatus(err: unknown, options: EncodeOptions = {}): EncodedStatus {
  const code = errorCode(err);
  const coded = code !== undefined && CODE_PATTERN.test(code);
  const metadata = new Metadata();
  let grpcCode: status = status.INTERNAL;
  let message = errorMessage(err);
  if (coded) {
    metadata.set(ERROR_CODE_TRAILER, code);
    grpcCode = peerStatus(err) ?? GRPC_STATUS[code] ?? status.INTERNAL;
    if (err instanceof NomadChainError) {
      if (err.recoverable) metadata.set(RECOVERABLE_TRAILER, 'true');
      const context = encodeContext(err.context);
      if (context !== undefined) metadata.set(CONTEXT_TRAILER, context);
    }
  } else if (options.unexpected !== undefined) {
    metadata.set(ERROR_CODE_TRAILER, options.unexpected.code);
    message = options.unexpected.message;
  }
  // Both describe the channel, not an answer: a client reads UNAVAILABLE as "this server is gone".
  if (grpcCode === status.UNAVAILABLE || grpcCode === status.OK) grpcCode = status.INTERNAL;
  return { name: 'Error', message, code: grpcCode, details: message, metadata };
}

/**
 * An error a nomad-chain peer answered with, rebuilt from its trailers: its code, message, `recoverable`
 * and context, with the gRPC status it came under and the ServiceError as `cause`.
 */
export class PeerError extends NomadChainError {
  /** The gRPC status the peer answered with; a relaying server answers with the same. */
  readonly grpcCode: status;

  constructor(code: string, message: string, grpcCode: status, options: NomadChainErrorOptions = {}) {
    super(code, message, options);
    this.grpcCode = grpcCode;
  }
}

export interface DecodeOptions {
  /** Said before the peer's message, naming the call or the peer (`peer refused: `). @default none */
  readonly prefix?: string;
  /** The client's own context (`peer`, `rpc`), added to the peer's. @default none */
  readonly context?: ErrorContext;
}

/** The peer's own error when it sent its code; undefined for a failure of the channel or a foreign server. */
export function decodeStatus(err: ServiceError, options: DecodeOptions = {}): PeerError | undefined {
  const code = err.metadata?.get(ERROR_CODE_TRAILER)[0];
  if (typeof code !== 'string' || !CODE_PATTERN.test(code)) return undefined;
  return new PeerError(code, `${options.prefix ?? ''}${err.details}`, err.code, {
    cause: err,
    recoverable: err.metadata.get(RECOVERABLE_TRAILER)[0] === 'true',
    context: { ...decodeContext(err.metadata.get(CONTEXT_TRAILER)[0]), ...options.context },
  });
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && 'details' in err;
}

/** The status a relayed peer answer came under (PeerError, SidecarError), so a relay keeps NOT_FOUND a NOT_FOUND. */
function peerStatus(err: unknown): status | undefined {
  const grpcCode = (err as { grpcCode?: unknown }).grpcCode;
  return typeof grpcCode === 'number' ? grpcCode : undefined;
}

function encodeContext(context: ErrorContext): Buffer | undefined {
  if (Object.values(context).every((value) => value === undefined)) return undefined;
  const json = Buffer.from(JSON.stringify(context), 'utf8');
  return json.length > MAX_CONTEXT_BYTES ? undefined : json;
}

function decodeContext(raw: string | Buffer | undefined): ErrorContext {
  if (!Buffer.isBuffer(raw)) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    return {};
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
  const context: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') context[key] = value;
  }
  return context;
}
