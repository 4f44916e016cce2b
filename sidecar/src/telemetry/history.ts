import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../../common/logging';
import { NodeEventKind } from '../../../proto/gen/chain/v1/telemetry';
import type { NodeEvent } from '../../../proto/gen/chain/v1/telemetry';

/**
 * This node's history of pre-emptions, drains and notices. Events are appended to a JSON-lines file (so the
 * record survives the sidecar's restarts), kept in memory up to `capacity`, and handed to the telemetry agent
 * once each (`takeNew`).
 */
export class NodeHistory {
  private readonly events: NodeEvent[] = [];
  private fresh: NodeEvent[] = [];

  private constructor(
    private readonly path: string | undefined,
    private readonly capacity: number,
    private readonly log: Logger,
  ) {}

  /** Opens (or starts) the history file; `path` undefined keeps history in memory only. */
  static async open(path: string | undefined, capacity: number, log: Logger): Promise<NodeHistory> {
    const history = new NodeHistory(path, capacity, log);
    if (path === undefined) return history;
    let text = '';
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(dirname(path), { recursive: true });
    }
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const e = JSON.parse(line) as { kind: unknown; timeMs: unknown; detail: unknown };
        if (typeof e.kind === 'number' && typeof e.timeMs === 'number') {
          history.keep({ kind: e.kind, timeUnixMs: e.timeMs, detail: typeof e.detail === 'string' ? e.detail : '' });
        }
      } catch {
        // A torn last line (power loss mid-write) is skipped; the rest of the record stands.
        log.warn({ path }, 'history line unreadable; skipped');
      }
    }
    return history;
  }

  async record(kind: NodeEventKind, timeMs: number, detail: string): Promise<void> {
    const event: NodeEvent = { kind, timeUnixMs: timeMs, detail };
    this.keep(event);
    this.fresh.push(event);
    if (this.path !== undefined) {
      await appendFile(this.path, `${JSON.stringify({ kind, timeMs, detail })}\n`).catch((err: unknown) =>
        this.log.warn({ err, path: this.path }, 'history not persisted'),
      );
    }
  }

  /** Events recorded since the last call. */
  takeNew(): NodeEvent[] {
    const out = this.fresh;
    this.fresh = [];
    return out;
  }

  all(): readonly NodeEvent[] {
    return this.events;
  }

  count(kind: NodeEventKind): number {
    return this.events.filter((e) => e.kind === kind).length;
  }

  private keep(event: NodeEvent): void {
    this.events.push(event);
    if (this.events.length > this.capacity) this.events.shift();
  }
}

export { NodeEventKind };
