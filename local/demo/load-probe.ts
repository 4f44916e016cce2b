import { request } from 'node:http';

export interface ProbeSample {
  readonly atUnixMs: number;
  readonly ok: boolean;
  /** From sending the request to its answer (or failure): what one client waited. */
  readonly latencyMs: number;
  readonly counter?: number;
}

export interface ProbeSummary {
  readonly requests: number;
  readonly failedRequests: number;
  /** The largest wall-clock gap between two successful answers: what a client saw as downtime. */
  readonly downtimeMs: number;
  /** The longest a single request waited for its answer (or its failure). */
  readonly worstLatencyMs: number;
  /** Whether the counter went up by exactly one per successful answer all along (no reset, no loss). */
  readonly counterContinuous: boolean;
  readonly lastCounter: number;
}

function get(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Load through the router, as a client sees it: one request to /counter every `intervalMs`, each answer's
 * time and counter recorded. Requests run one after another, so a frozen instance shows as a gap.
 */
export class LoadProbe {
  private readonly samples: ProbeSample[] = [];
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly intervalMs = 20,
    private readonly timeoutMs = 10_000,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (this.running) {
      const sentAt = Date.now();
      try {
        const res = await get(this.url, this.timeoutMs);
        const counter = res.status === 200 ? (JSON.parse(res.body) as { counter?: number }).counter : undefined;
        const atUnixMs = Date.now();
        this.samples.push({
          atUnixMs,
          ok: res.status === 200,
          latencyMs: atUnixMs - sentAt,
          ...(counter !== undefined ? { counter } : {}),
        });
      } catch {
        const atUnixMs = Date.now();
        this.samples.push({ atUnixMs, ok: false, latencyMs: atUnixMs - sentAt });
      }
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }

  /** Resolves once `count` more requests have been answered with 200 (or the probe stopped). */
  async answered(count: number): Promise<void> {
    const ok = (): number => this.samples.filter((s) => s.ok).length;
    const wanted = ok() + count;
    while (this.running && ok() < wanted) await new Promise((r) => setTimeout(r, this.intervalMs));
  }

  async stop(): Promise<ProbeSummary> {
    this.running = false;
    await this.loop;
    return summarize(this.samples);
  }
}

export function summarize(samples: readonly ProbeSample[]): ProbeSummary {
  let downtimeMs = 0;
  let lastOk: ProbeSample | undefined;
  let counterContinuous = true;
  for (const sample of samples) {
    if (!sample.ok) continue;
    if (lastOk !== undefined) {
      downtimeMs = Math.max(downtimeMs, sample.atUnixMs - lastOk.atUnixMs);
      if (sample.counter !== (lastOk.counter ?? 0) + 1) counterContinuous = false;
    }
    lastOk = sample;
  }
  return {
    requests: samples.length,
    failedRequests: samples.filter((s) => !s.ok).length,
    downtimeMs,
    worstLatencyMs: samples.reduce((worst, s) => Math.max(worst, s.latencyMs), 0),
    counterContinuous,
    lastCounter: lastOk?.counter ?? 0,
  };
}
