import { ask, parseJson, textOf, timeOf, unexpected } from './interruption-source';
import type { InterruptionSource, Notice } from './interruption-source';

export interface AzureScheduledEventsOptions {
  /** Instance Metadata Service. @default "http://169.254.169.254" */
  readonly endpoint?: string;
  /** @default "2020-07-01" */
  readonly apiVersion?: string;
  /** Only events naming this VM in `Resources` count (events for a whole availability set list every VM). @default all */
  readonly vmName?: string;
  /** @default 2000 */
  readonly timeoutMs?: number;
}

const SOURCE = 'azure-scheduled-events';
const KINDS: Readonly<Record<string, string>> = {
  Preempt: 'preempt',
  Terminate: 'terminate',
  Reboot: 'reboot',
  Redeploy: 'redeploy',
  Freeze: 'freeze',
};

interface ScheduledEvent {
  EventId?: unknown;
  EventType?: unknown;
  Resources?: unknown;
  EventStatus?: unknown;
  NotBefore?: unknown;
}

/**
 * Azure Scheduled Events: `GET /metadata/scheduledevents?api-version=…` with `Metadata: true` answers
 * {"DocumentIncarnation", "Events": [{EventId, EventType, Resources, EventStatus, NotBefore, …}]}; an empty
 * Events array means nothing is scheduled. NotBefore is empty once an event has Started.
 */
export class AzureScheduledEventsSource implements InterruptionSource {
  readonly name = SOURCE;
  private readonly url: string;
  private readonly timeoutMs: number;

  constructor(private readonly options: AzureScheduledEventsOptions = {}) {
    const endpoint = (options.endpoint ?? 'http://169.254.169.254').replace(/\/$/, '');
    this.url = `${endpoint}/metadata/scheduledevents?api-version=${options.apiVersion ?? '2020-07-01'}`;
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  async poll(): Promise<Notice[]> {
    const res = await ask(SOURCE, this.url, { headers: { Metadata: 'true' }, timeoutMs: this.timeoutMs });
    if (res.status !== 200) throw unexpected(SOURCE, this.url, `status ${res.status}`);
    const doc = parseJson(SOURCE, this.url, res.text) as { Events?: unknown };
    if (!Array.isArray(doc.Events)) throw unexpected(SOURCE, this.url, 'no Events array');
    const vm = this.options.vmName;
    return (doc.Events as ScheduledEvent[])
      .filter((e) => vm === undefined || (Array.isArray(e.Resources) && e.Resources.includes(vm)))
      .map((e) => ({
        source: SOURCE,
        kind: KINDS[String(e.EventType)] ?? String(e.EventType).toLowerCase(),
        deadlineMs: timeOf(e.NotBefore),
        detail: `${textOf(e.EventId)} ${textOf(e.EventStatus)}`.trim(),
      }));
  }

  close(): void {
    // Nothing runs in the background.
  }
}
