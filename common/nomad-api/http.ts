import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { deepFreeze } from '../config';
import { ConfigError } from '../config-error';
import { NomadApiError } from './errors';

export interface NomadTlsOptions {
  /** PEM CA bundle that signs Nomad's HTTP certificate. @default Node's bundled roots */
  readonly ca?: string | Buffer;
  /** PEM client certificate, when Nomad's `verify_https_client` is on. @default none */
  readonly cert?: string | Buffer;
  /** PEM key of `cert`. @default none */
  readonly key?: string | Buffer;
  /** Name to verify instead of the address's host (Nomad's own certs say `server.<region>.nomad`). @default the host */
  readonly serverName?: string;
}

export interface NomadHttpOptions {
  /** Nomad agent HTTP address, `http://` or `https://`. @default 'http://127.0.0.1:4646' */
  readonly address?: string;
  /** ACL token, sent as `X-Nomad-Token`. @default none */
  readonly token?: string;
  /** TLS material for an `https://` address. @default none */
  readonly tls?: NomadTlsOptions;
  /** Limit for one non-blocking call, and added to `wait` for blocking ones. @default 10000 */
  readonly timeoutMs?: number;
  /** Namespace for namespaced endpoints. @default 'default' */
  readonly namespace?: string;
}

export interface NomadHttpConfig {
  /** Normalised base address, e.g. `http://127.0.0.1:4646/`. */
  readonly address: string;
  readonly token: string | undefined;
  readonly tls: Readonly<{ ca?: string; cert?: string; key?: string; serverName?: string }> | undefined;
  readonly timeoutMs: number;
  readonly namespace: string;
}

/** Query parameters; an array value repeats the key (`topic=Node&topic=Allocation`). */
export type QueryParams = Readonly<Record<string, string | number | boolean | readonly string[] | undefined>>;

export interface QueryOptions {
  /** Blocking query: answer once Nomad's index exceeds this (`?index=`). @default not blocking */
  readonly index?: number;
  /** Longest a blocking query waits (`?wait=`); Nomad caps it at 10 min. @default Nomad's 5 min */
  readonly waitMs?: number;
  readonly signal?: AbortSignal;
}

export interface QueryResult<T> {
  readonly value: T;
  /** `X-Nomad-Index`: pass back as `index` to block until something changes. */
  readonly lastIndex: number;
}

type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

const MAX_ERROR_BODY_CHARS = 512;

/** Nomad adds up to wait/16 of jitter to a blocking query before it answers (api.go). */
const BLOCKING_JITTER_DIVISOR = 16;

/** The transport every endpoint file shares: address, token, TLS, timeouts, blocking queries, error mapping. */
export class NomadHttp {
  readonly config: NomadHttpConfig;

  constructor(options: NomadHttpOptions = {}) {
    this.config = resolveNomadHttpConfig(options);
  }

  async query<T>(path: string, params: QueryParams = {}, options: QueryOptions = {}): Promise<QueryResult<T>> {
    const blocking: Record<string, string | undefined> = {
      index: options.index === undefined ? undefined : String(options.index),
      wait: options.waitMs === undefined ? undefined : `${Math.ceil(options.waitMs)}ms`,
    };
    const waitMs = options.index === undefined ? 0 : (options.waitMs ?? 5 * 60_000);
    const timeoutMs = this.config.timeoutMs + waitMs + waitMs / BLOCKING_JITTER_DIVISOR;
    const res = await this.send('GET', path, { ...params, ...blocking }, undefined, timeoutMs, options.signal);
    const body = await readBody(res, path, options.signal);
    return { value: parseJson<T>(body, path), lastIndex: Number(res.headers['x-nomad-index'] ?? 0) };
  }

  async write<T>(method: Exclude<Method, 'GET'>, path: string, body: unknown, params: QueryParams = {}): Promise<T> {
    const res = await this.send(method, path, params, body, this.config.timeoutMs, undefined);
    return parseJson<T>(await readBody(res, path, undefined), path);
  }

  /** Opens a long-lived response (event stream); the caller owns it and must destroy it. */
  async openStream(path: string, params: QueryParams, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    return this.send('GET', path, params, undefined, this.config.timeoutMs, signal, true);
  }

  private send(
    method: Method,
    path: string,
    params: QueryParams,
    body: unknown,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    stream = false,
  ): Promise<IncomingMessage> {
    const url = new URL(path, this.config.address);
    for (const [key, value] of Object.entries(params)) {
      if (value === undefined) continue;
      for (const item of Array.isArray(value) ? (value as readonly string[]) : [String(value)]) {
        url.searchParams.append(key, item);
      }
    }
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (this.config.token !== undefined) headers['X-Nomad-Token'] = this.config.token;
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    const context = { method, path };
    return new Promise<IncomingMessage>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(new NomadApiError('NC_NOMAD_API_ABORTED', 'Nomad API call aborted', { context }));
        return;
      }
      const tls = this.config.tls;
      const req =
        url.protocol === 'https:'
          ? https.request(url, {
              method,
              headers,
              ca: tls?.ca,
              cert: tls?.cert,
              key: tls?.key,
              servername: tls?.serverName,
            })
          : http.request(url, { method, headers });
      const timer = setTimeout(() => {
        req.destroy(
          new NomadApiError('NC_NOMAD_API_TIMEOUT', 'Nomad API call timed out', { context: { ...context, timeoutMs } }),
        );
      }, timeoutMs);
      const onAbort = (): void => {
        req.destroy(new NomadApiError('NC_NOMAD_API_ABORTED', 'Nomad API call aborted', { context }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const settle = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      req.on('error', (err) => {
        settle();
        reject(
          err instanceof NomadApiError
            ? err
            : new NomadApiError('NC_NOMAD_API_UNREACHABLE', 'Nomad API unreachable', { cause: err, context }),
        );
      });
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          // A stream's body outlives the call: its owner handles abort and idleness from here on.
          if (stream) settle();
          else res.once('close', settle);
          resolve(res);
          return;
        }
        settle();
        readBody(res, path, undefined).then(
          (text) => reject(statusError(status, text, { ...context, tokenSent: this.config.token !== undefined })),
          (err: Error) => reject(err),
        );
      });
      req.end(payload);
    });
  }
}

function statusError(
  status: number,
  body: string,
  context: { method: string; path: string; tokenSent: boolean },
): NomadApiError {
  const detail = body.trim().slice(0, MAX_ERROR_BODY_CHARS);
  if (status === 403) {
    // Nomad answers 403 for all three ACL failures; its text tells them apart ("ACL token not found",
    // "Permission denied"), and whether a token was sent at all is ours to say.
    const problem = context.tokenSent
      ? 'the ACL token is unknown to Nomad or its policies do not allow this call'
      : 'no ACL token was sent and the anonymous policy does not allow this call';
    return new NomadApiError('NC_NOMAD_API_ACL_DENIED', `Nomad refused the call: ${problem}`, {
      status,
      context: { ...context, detail },
    });
  }
  return new NomadApiError(
    status === 404 ? 'NC_NOMAD_API_NOT_FOUND' : 'NC_NOMAD_API_STATUS',
    'Nomad API refused the call',
    {
      status,
      context: { ...context, detail },
    },
  );
}

function readBody(res: IncomingMessage, path: string, signal: AbortSignal | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', (err) => {
      reject(
        signal?.aborted === true || err instanceof NomadApiError
          ? err
          : new NomadApiError('NC_NOMAD_API_UNREACHABLE', 'Nomad API connection lost', {
              cause: err,
              context: { path },
            }),
      );
    });
  });
}

function parseJson<T>(text: string, path: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new NomadApiError('NC_NOMAD_API_BAD_RESPONSE', 'Nomad API answered with invalid JSON', {
      cause: err,
      context: { path },
    });
  }
}

export function resolveNomadHttpConfig(options: NomadHttpOptions): NomadHttpConfig {
  let url: URL;
  try {
    url = new URL(options.address ?? 'http://127.0.0.1:4646');
  } catch (err) {
    throw new ConfigError('nomad.address', 'must be an http:// or https:// URL', { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError('nomad.address', 'must be an http:// or https:// URL');
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new ConfigError('nomad.timeoutMs', 'must be a positive number');
  }
  if (options.tls !== undefined && url.protocol !== 'https:') {
    throw new ConfigError('nomad.tls', 'needs an https:// address');
  }
  return deepFreeze({
    address: url.href,
    token: options.token === '' ? undefined : options.token,
    tls:
      options.tls === undefined
        ? undefined
        : {
            ca: options.tls.ca?.toString(),
            cert: options.tls.cert?.toString(),
            key: options.tls.key?.toString(),
            serverName: options.tls.serverName,
          },
    timeoutMs,
    namespace: options.namespace ?? 'default',
  });
}
