import type { Clock } from '../../../../common/clock';
import { ask, parseJson, textOf, timeOf, unexpected } from './interruption-source';
import type { InterruptionSource, Notice } from './interruption-source';

export interface AwsImdsOptions {
  /** Instance metadata service. @default "http://169.254.169.254" */
  readonly endpoint?: string;
  /** Session token lifetime asked for. @default 21600 (6 h, the most IMDSv2 grants) */
  readonly tokenTtlS?: number;
  /** @default 2000 */
  readonly timeoutMs?: number;
}

const SOURCE = 'aws-imds';

/**
 * EC2 instance metadata, IMDSv2: a session token from `PUT /latest/api/token`
 * (X-aws-ec2-metadata-token-ttl-seconds), then with X-aws-ec2-metadata-token the spot `instance-action`
 * ({"action","time"}; 404 when none), the rebalance recommendation ({"noticeTime"}; 404 when none) and
 * scheduled maintenance events (a JSON array; only "active" ones count).
 */
export class AwsImdsSource implements InterruptionSource {
  readonly name = SOURCE;
  private token: { value: string; expiresMs: number } | undefined;
  private readonly endpoint: string;
  private readonly ttlS: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly clock: Clock,
    options: AwsImdsOptions = {},
  ) {
    this.endpoint = (options.endpoint ?? 'http://169.254.169.254').replace(/\/$/, '');
    this.ttlS = options.tokenTtlS ?? 21_600;
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  async poll(): Promise<Notice[]> {
    const notices: Notice[] = [];
    const action = await this.get('/latest/meta-data/spot/instance-action');
    if (action !== undefined) {
      const doc = action as { action?: unknown; time?: unknown };
      notices.push({
        source: SOURCE,
        kind: 'spot-interruption',
        deadlineMs: timeOf(doc.time),
        detail: typeof doc.action === 'string' ? doc.action : '',
      });
    }
    const rebalance = await this.get('/latest/meta-data/events/recommendations/rebalance');
    if (rebalance !== undefined) {
      const doc = rebalance as { noticeTime?: unknown };
      notices.push({
        source: SOURCE,
        kind: 'rebalance-recommendation',
        deadlineMs: 0,
        detail: typeof doc.noticeTime === 'string' ? `noticeTime ${doc.noticeTime}` : '',
      });
    }
    const scheduled = await this.get('/latest/meta-data/events/maintenance/scheduled');
    if (Array.isArray(scheduled)) {
      for (const e of scheduled as { Code?: unknown; EventId?: unknown; NotBefore?: unknown; State?: unknown }[]) {
        if (e.State !== undefined && e.State !== 'active') continue;
        notices.push({
          source: SOURCE,
          kind: 'scheduled-maintenance',
          deadlineMs: timeOf(e.NotBefore),
          detail: `${textOf(e.Code)} ${textOf(e.EventId)}`.trim(),
        });
      }
    }
    return notices;
  }

  close(): void {
    this.token = undefined;
  }

  /** A metadata document, or undefined when the service says there is none (404). */
  private async get(path: string, retried = false): Promise<unknown> {
    const url = `${this.endpoint}${path}`;
    const token = await this.sessionToken();
    const res = await ask(SOURCE, url, { headers: { 'X-aws-ec2-metadata-token': token }, timeoutMs: this.timeoutMs });
    if (res.status === 404) return undefined;
    if (res.status === 401 && !retried) {
      // The token expired or the service restarted: one fresh token, one retry.
      this.token = undefined;
      return this.get(path, true);
    }
    if (res.status !== 200) throw unexpected(SOURCE, url, `status ${res.status}`);
    return parseJson(SOURCE, url, res.text);
  }

  private async sessionToken(): Promise<string> {
    const now = this.clock.now();
    if (this.token !== undefined && now < this.token.expiresMs) return this.token.value;
    const url = `${this.endpoint}/latest/api/token`;
    const res = await ask(SOURCE, url, {
      method: 'PUT',
      headers: { 'X-aws-ec2-metadata-token-ttl-seconds': String(this.ttlS) },
      timeoutMs: this.timeoutMs,
    });
    if (res.status !== 200 || res.text === '') throw unexpected(SOURCE, url, `token request answered ${res.status}`);
    // Renewed at 90 % of its life so a poll never races the expiry.
    this.token = { value: res.text.trim(), expiresMs: now + this.ttlS * 900 };
    return this.token.value;
  }
}
