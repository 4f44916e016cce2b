import { httpGet } from '../harness/programs';

/** One read of `/v1/health/service/NAME?passing`: when it was asked and which instances it listed. */
export interface ProbeSample {
  readonly atMs: number;
  readonly ids: readonly string[];
}

/** A listed instance that did not answer: a Consul-routed client would have failed this request. */
export interface ProbeFailure {
  readonly atMs: number;
  readonly id: string;
  readonly error: string;
}

interface HealthEntry {
  Node?: { Address?: string };
  Service?: { ID?: string; Address?: string; Port?: number };
}

/**
 * A Consul-routed client in miniature: reads the passing instances of a service every `periodMs` and sends
 * each listed instance one request at once, as a client acting on that answer would. It records what it
 * saw, so a test can tell how long no instance was listed and whether a listed one ever failed to answer.
 */
export class ConsulProbe {
  readonly samples: ProbeSample[] = [];
  readonly failures: ProbeFailure[] = [];
  readonly pollErrors: string[] = [];
  private readonly answers: Promise<void>[] = [];
  private running = false;
  private loop: Promise<void> | undefined;

  /**
   * @param answerTimeoutMs only a guard against a request hanging forever (a frozen process's socket
   *   accepts and never answers); the probe reports a failure, never a slow answer.
   */
  constructor(
    private readonly consulAddress: string,
    private readonly service: string,
    private readonly periodMs = 50,
    private readonly answerTimeoutMs = 15_000,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await Promise.all(this.answers);
  }

  /** First time an instance whose ID `matches` was listed. */
  firstListed(matches: (id: string) => boolean): number | undefined {
    return this.samples.find((s) => s.ids.some(matches))?.atMs;
  }

  /** The first sample that no longer listed an instance whose ID contains `idPart`, after its last listing. */
  lastDropped(idPart: string): number | undefined {
    let dropped: number | undefined;
    let listed = false;
    for (const s of this.samples) {
      const now = s.ids.some((id) => id.includes(idPart));
      if (listed && !now) dropped = s.atMs;
      listed = now;
    }
    return dropped;
  }

  /** The longest run of reads that listed no instance: from the first empty read to the next non-empty one. */
  longestGap(): { fromMs: number; toMs: number; ms: number; reads: number } | undefined {
    let longest: { fromMs: number; toMs: number; ms: number; reads: number } | undefined;
    let from: number | undefined;
    let reads = 0;
    for (const s of this.samples) {
      if (s.ids.length === 0) {
        from ??= s.atMs;
        reads++;
        continue;
      }
      if (from !== undefined && (longest === undefined || s.atMs - from > longest.ms)) {
        longest = { fromMs: from, toMs: s.atMs, ms: s.atMs - from, reads };
      }
      from = undefined;
      reads = 0;
    }
    return longest;
  }

  private async run(): Promise<void> {
    const url = `${this.consulAddress}/v1/health/service/${encodeURIComponent(this.service)}?passing`;
    while (this.running) {
      const atMs = Date.now();
      try {
        const res = await fetch(url);
        if (!res.ok) throw new Error(`HTTP ${res.status} ${await res.text()}`);
        const entries = (await res.json()) as HealthEntry[];
        const ids: string[] = [];
        for (const entry of entries) {
          const id = entry.Service?.ID ?? '?';
          ids.push(id);
          const address = entry.Service?.Address || entry.Node?.Address || '';
          this.answers.push(this.ask(atMs, id, `http://${address}:${entry.Service?.Port ?? 0}/`));
        }
        this.samples.push({ atMs, ids });
      } catch (err) {
        this.pollErrors.push(`${new Date(atMs).toISOString()} ${String(err)}`);
      }
      const wait = atMs + this.periodMs - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }

  private async ask(atMs: number, id: string, url: string): Promise<void> {
    try {
      const res = await httpGet(url, this.answerTimeoutMs);
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    } catch (err) {
      this.failures.push({ atMs, id, error: `${url}: ${String(err)}` });
    }
  }
}
