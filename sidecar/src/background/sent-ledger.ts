import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../../common/logging';
import { BackgroundError } from './errors';

/** The newest background checkpoint of one task that reached the buddy. */
export interface SentCheckpoint {
  readonly checkpointId: string;
  readonly atUnixMs: number;
  readonly wireBytes: number;
  readonly dumpMs: number;
}

/** Bumped whenever the file's shape changes; a sidecar reads only the versions it knows. */
export const SENT_LEDGER_VERSION = 1;

interface LedgerFile {
  readonly version: number;
  /** The buddy the checkpoints went to: a forget is worth sending only there. */
  readonly buddy: string;
  readonly tasks: Readonly<Record<string, SentCheckpoint>>;
}

function isSentCheckpoint(value: unknown): value is SentCheckpoint {
  const v = value as Partial<SentCheckpoint> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.checkpointId === 'string' &&
    typeof v.atUnixMs === 'number' &&
    typeof v.wireBytes === 'number' &&
    typeof v.dumpMs === 'number'
  );
}

/**
 * The tasks this node has a background checkpoint of on its buddy, kept in the data dir (written on every
 * change, replaced atomically) so that a restarted sidecar still tells the buddy to forget the checkpoints
 * of tasks that left while it was down or before it asked. Without it the buddy kept them until its store
 * evicted them, holding their bytes and segment fds.
 */
export class SentLedger {
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    private readonly path: string,
    private readonly buddy: string,
    private readonly tasks: Map<string, SentCheckpoint>,
  ) {}

  /**
   * The ledger at `path` for checkpoints sent to `buddy`: empty when there is none yet, when it lists another
   * buddy's (they cannot be forgotten through this one), or when it cannot be read (logged with
   * NC_BACKGROUND_LIST_UNREADABLE: the buddy's store then evicts those checkpoints in time).
   */
  static async load(path: string, buddy: string, log: Logger): Promise<SentLedger> {
    const empty = new SentLedger(path, buddy, new Map());
    let raw: string;
    try {
      raw = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return empty;
      log.warn({ err: unreadable(path, 'cannot be read', err) }, 'background checkpoint list ignored');
      return empty;
    }
    let file: Partial<LedgerFile>;
    try {
      file = JSON.parse(raw) as Partial<LedgerFile>;
    } catch (err) {
      log.warn({ err: unreadable(path, 'is not JSON', err) }, 'background checkpoint list ignored');
      return empty;
    }
    if (file.version !== SENT_LEDGER_VERSION) {
      const err = unreadable(path, `is of version ${String(file.version)}, not ${SENT_LEDGER_VERSION}`);
      log.warn({ err }, 'background checkpoint list ignored');
      return empty;
    }
    const entries = Object.entries(file.tasks ?? {});
    if (typeof file.buddy !== 'string' || !entries.every(([, entry]) => isSentCheckpoint(entry))) {
      log.warn({ err: unreadable(path, 'is malformed') }, 'background checkpoint list ignored');
      return empty;
    }
    if (file.buddy !== buddy) {
      log.warn(
        { path, listed: file.buddy, buddy, tasks: entries.length },
        'background checkpoints were sent to another buddy; they are not forgotten there',
      );
      return empty;
    }
    return new SentLedger(path, buddy, new Map(entries));
  }

  view(): ReadonlyMap<string, SentCheckpoint> {
    return this.tasks;
  }

  /** Notes a task's newest checkpoint on the buddy; kept in memory even when the file cannot be written. */
  async record(taskId: string, sent: SentCheckpoint): Promise<void> {
    this.tasks.set(taskId, sent);
    await this.save(this.tasks);
  }

  /** Drops a task the buddy has forgotten; it stays listed (and is forgotten again) until the file says so. */
  async drop(taskId: string): Promise<void> {
    const rest = new Map(this.tasks);
    rest.delete(taskId);
    await this.save(rest);
    this.tasks.delete(taskId);
  }

  private save(tasks: ReadonlyMap<string, SentCheckpoint>): Promise<void> {
    const file: LedgerFile = { version: SENT_LEDGER_VERSION, buddy: this.buddy, tasks: Object.fromEntries(tasks) };
    const write = async (): Promise<void> => {
      await mkdir(dirname(this.path), { recursive: true });
      const tmp = `${this.path}.tmp`;
      await writeFile(tmp, JSON.stringify(file), { mode: 0o600 });
      // rename is atomic: a sidecar killed mid-write leaves the previous list, never half of one.
      await rename(tmp, this.path);
    };
    const saved = this.saving.then(write, write);
    this.saving = saved.catch(() => undefined);
    return saved;
  }
}

function unreadable(path: string, what: string, cause?: unknown): BackgroundError {
  return new BackgroundError('NC_BACKGROUND_LIST_UNREADABLE', `background checkpoint list ${what}`, {
    ...(cause !== undefined ? { cause } : {}),
    context: { path },
  });
}
