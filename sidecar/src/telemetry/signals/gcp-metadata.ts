import type { Clock } from '../../../../common/clock';
import type { Logger } from '../../../../common/logging';
import { ask, unexpected } from './interruption-source';
import type { InterruptionSource, Notice } from './interruption-source';

export interface GcpMetadataOptions {
  /** Metadata server. @default "http://metadata.google.internal" */
  readonly endpoint?: string;
  /** Longest hanging GET (`timeout_sec`). @default 60 */
  readonly watchTimeoutS?: number;
  /** Time between a preemption notice and the VM's stop (30 s for preemptible/spot VMs by default). @default 30000 */
  readonly preemptionNoticeMs?: number;
  /** @default 2000 (plus the watch timeout for hanging GETs) */
  readonly timeoutMs?: number;
  /** Pause after a failed watch before the next. @default 1000 */
  readonly retryMs?: number;
}

const SOURCE = 'gcp-metadata';
const KEYS = ['instance/preempted', 'instance/maintenance-event'] as const;
type Key = (typeof KEYS)[number];

interface Value {
  readonly text: string;
  readonly etag: string;
  readonly sinceMs: number;
}

/**
 * GCE metadata: `instance/preempted` ("TRUE"/"FALSE") and `instance/maintenance-event` ("NONE",
 * "MIGRATE_ON_HOST_MAINTENANCE", "TERMINATE_ON_HOST_MAINTENANCE"), asked with `Metadata-Flavor: Google` (and
 * the answer must carry it too). After a first read, each key is watched with hanging GETs
 * (`?wait_for_change=true&last_etag=…`), so a notice is seen the moment it is posted; `poll` returns the
 * latest values.
 */
export class GcpMetadataSource implements InterruptionSource {
  readonly name = SOURCE;
  private readonly values = new Map<Key, Value>();
  private readonly abort = new AbortController();
  private primed: Promise<void> | undefined;
  private readonly endpoint: string;

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly options: GcpMetadataOptions = {},
  ) {
    this.endpoint = (options.endpoint ?? 'http://metadata.google.internal').replace(/\/$/, '');
  }

  async poll(): Promise<Notice[]> {
    if (this.primed === undefined) {
      const priming = Promise.all(KEYS.map((k) => this.read(k, undefined))).then(() => {
        for (const key of KEYS) void this.watch(key);
      });
      this.primed = priming;
      // A failed first read is retried on the next poll.
      priming.catch(() => {
        if (this.primed === priming) this.primed = undefined;
      });
    }
    await this.primed;
    const notices: Notice[] = [];
    const preempted = this.values.get('instance/preempted');
    if (preempted?.text === 'TRUE') {
      notices.push({
        source: SOURCE,
        kind: 'preempted',
        deadlineMs: preempted.sinceMs + (this.options.preemptionNoticeMs ?? 30_000),
        detail: 'instance/preempted TRUE',
      });
    }
    const maintenance = this.values.get('instance/maintenance-event');
    if (maintenance !== undefined && maintenance.text !== 'NONE' && maintenance.text !== '') {
      notices.push({
        source: SOURCE,
        kind: maintenance.text.startsWith('TERMINATE') ? 'maintenance-terminate' : 'maintenance-migrate',
        // GCE posts the value about 60 s before host maintenance.
        deadlineMs: maintenance.sinceMs + 60_000,
        detail: maintenance.text,
      });
    }
    return notices;
  }

  close(): void {
    this.abort.abort();
  }

  private async watch(key: Key): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        await this.read(key, this.values.get(key)?.etag);
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn({ err, key }, 'gcp metadata watch failed; retrying');
        await this.clock.sleep(this.options.retryMs ?? 1000, signal).catch(() => undefined);
      }
    }
  }

  /** One read; with an etag it hangs until the value changes or timeout_sec passes. */
  private async read(key: Key, etag: string | undefined): Promise<void> {
    const waitS = this.options.watchTimeoutS ?? 60;
    const query =
      etag === undefined ? '' : `?wait_for_change=true&last_etag=${encodeURIComponent(etag)}&timeout_sec=${waitS}`;
    const url = `${this.endpoint}/computeMetadata/v1/${key}${query}`;
    const res = await ask(SOURCE, url, {
      headers: { 'Metadata-Flavor': 'Google' },
      timeoutMs: (this.options.timeoutMs ?? 2000) + (etag === undefined ? 0 : waitS * 1000),
      signal: this.abort.signal,
    });
    if (res.status !== 200) throw unexpected(SOURCE, url, `status ${res.status}`);
    // Anything else answering on that address is not Google's metadata server.
    if (res.headers.get('metadata-flavor') !== 'Google')
      throw unexpected(SOURCE, url, 'answer lacks Metadata-Flavor: Google');
    const text = res.text.trim();
    const before = this.values.get(key);
    this.values.set(key, {
      text,
      etag: res.headers.get('etag') ?? '',
      sinceMs: before !== undefined && before.text === text ? before.sinceMs : this.clock.now(),
    });
  }
}
