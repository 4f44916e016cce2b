import { constants, type Http2Stream } from 'node:http2';

/**
 * Resets (RST_STREAM CANCEL) the HTTP/2 stream under a grpc-js server call. A status can reach a peer only
 * behind the messages already queued for it, so a peer that stopped reading holds its stream for as long as
 * it likes; grpc-js 1.14 has no public way to end one call's stream, so this reaches the stream it keeps in
 * the call (through any server interceptors' nextCall). Returns false, and changes nothing, when those
 * internals are not there.
 */
export function resetServerStream(call: object): boolean {
  let inner: unknown = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && typeof inner === 'object' && inner !== null; depth += 1) {
    const stream = (inner as { stream?: Partial<Http2Stream> }).stream;
    if (typeof stream?.close === 'function' && typeof stream.destroyed === 'boolean') {
      if (!stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
      return true;
    }
    inner = (inner as { nextCall?: unknown }).nextCall;
  }
  return false;
}
