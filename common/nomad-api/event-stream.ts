import type { IncomingMessage } from 'node:http';
import type { Clock } from '../clock';
import { SystemClock } from '../clock';
import { NomadApiError } from './errors';
import type { NomadHttp } from './http';
import type { Events, Topic } from './types';

export interface EventStreamOptions {
  /** Topic → keys (`['*']` for all); none means every topic (needs a management token). @default all */
  readonly topics?: Readonly<Partial<Record<Topic, readonly string[]>>>;
  /** First index wanted; after a disconnect the stream resumes past the last index it delivered. @default 0 */
  readonly index?: number;
  /** Namespace filter, `*` for all. @default the client's namespace */
  readonly namespace?: string;
  readonly signal?: AbortSignal;
  /** First reconnect delay, doubled per failed attempt. @default 250 */
  readonly backoffInitialMs?: number;
  /** Largest reconnect delay. @default 10000 */
  readonly backoffMaxMs?: number;
  /** Silence after which the connection is presumed dead; Nomad sends `{}` every 30 s. @default 75000 */
  readonly idleTimeoutMs?: number;
  /** Told of each reconnect, for logging. @default none */
  readonly onReconnect?: (info: {
    readonly err: NomadApiError;
    readonly attempt: number;
    readonly delayMs: number;
  }) => void;
}

/**
 * `GET /v1/event/stream`: ndjson frames `{"Index":N,"Events":[…]}` and `{}` heartbeats. Frames are yielded in
 * index order without repeats across reconnects: Nomad restarts a resumed stream at the closest buffered
 * index, which may be one already delivered.
 */
export class EventStream {
  constructor(
    private readonly http: NomadHttp,
    private readonly clock: Clock = new SystemClock(),
  ) {}

  async *subscribe(options: EventStreamOptions = {}): AsyncGenerator<Events, void, undefined> {
    const initialMs = options.backoffInitialMs ?? 250;
    const maxMs = options.backoffMaxMs ?? 10_000;
    const topics = Object.entries(options.topics ?? {}).flatMap(([topic, keys]) =>
      (keys ?? []).map((key) => `${topic}:${key}`),
    );
    let lastIndex = options.index === undefined || options.index <= 0 ? 0 : options.index - 1;
    let attempt = 0;
    for (;;) {
      try {
        const params = {
          index: lastIndex === 0 ? undefined : String(lastIndex + 1),
          namespace: options.namespace ?? this.http.config.namespace,
          topic: topics,
        };
        const res = await this.http.openStream('/v1/event/stream', params, options.signal);
        for await (const frame of readFrames(res, options.idleTimeoutMs ?? 75_000, options.signal)) {
          attempt = 0;
          if (frame.Index <= lastIndex) continue;
          lastIndex = frame.Index;
          yield frame;
        }
        throw new NomadApiError('NC_NOMAD_API_UNREACHABLE', 'Nomad event stream ended');
      } catch (err) {
        if (options.signal?.aborted === true) return;
        if (!(err instanceof NomadApiError) || !err.recoverable) throw err;
        attempt += 1;
        const delayMs = Math.min(maxMs, initialMs * 2 ** (attempt - 1));
        options.onReconnect?.({ err, attempt, delayMs });
        try {
          await this.clock.sleep(delayMs, options.signal);
        } catch {
          return;
        }
      }
    }
  }
}

async function* readFrames(
  res: IncomingMessage,
  idleTimeoutMs: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<Events, void, undefined> {
  let idle: NodeJS.Timeout | undefined;
  const armIdle = (): void => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      res.destroy(
        new NomadApiError('NC_NOMAD_API_TIMEOUT', 'Nomad event stream went silent', { context: { idleTimeoutMs } }),
      );
    }, idleTimeoutMs);
  };
  const onAbort = (): void => {
    res.destroy();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  armIdle();
  let pending = '';
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      armIdle();
      pending += chunk.toString('utf8');
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        newline = pending.indexOf('\n');
        if (line === '') continue;
        const frame = parseFrame(line);
        if (frame !== undefined) yield frame;
      }
    }
  } catch (err) {
    if (err instanceof NomadApiError || signal?.aborted === true) throw err;
    throw new NomadApiError('NC_NOMAD_API_UNREACHABLE', 'Nomad event stream broke', { cause: err });
  } finally {
    clearTimeout(idle);
    signal?.removeEventListener('abort', onAbort);
    res.destroy();
  }
}

/** A heartbeat is `{}`: no Index, nothing to deliver. */
function parseFrame(line: string): Events | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new NomadApiError('NC_NOMAD_API_BAD_RESPONSE', 'Nomad event stream sent invalid JSON', { cause: err });
  }
  if (typeof value !== 'object' || value === null) {
    throw new NomadApiError('NC_NOMAD_API_BAD_RESPONSE', 'Nomad event stream sent a non-object frame');
  }
  const frame = value as Partial<Events>;
  if (typeof frame.Index !== 'number') return undefined;
  return { Index: frame.Index, Events: frame.Events ?? [] };
}
