import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { MigrationRecord } from './migration-record';

/** Where migration records live between steps. */
export interface MigrationJournal {
  save(record: MigrationRecord): void;
  load(id: string): MigrationRecord | undefined;
  list(): MigrationRecord[];
}

/** One JSON file per migration, replaced atomically (write, fsync, rename): a crash leaves the old or the new. */
export class FileMigrationJournal implements MigrationJournal {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  save(record: MigrationRecord): void {
    const path = join(this.dir, `${record.id}.json`);
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, `${JSON.stringify(record, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  }

  load(id: string): MigrationRecord | undefined {
    try {
      return JSON.parse(readFileSync(join(this.dir, `${id}.json`), 'utf8')) as MigrationRecord;
    } catch {
      return undefined;
    }
  }

  list(): MigrationRecord[] {
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as MigrationRecord)
      .sort((a, b) => a.createdAtUnixMs - b.createdAtUnixMs);
  }
}

/** For unit tests and for callers that need no crash recovery. */
export class MemoryMigrationJournal implements MigrationJournal {
  private readonly records = new Map<string, MigrationRecord>();
  save(record: MigrationRecord): void {
    this.records.set(record.id, structuredClone(record));
  }
  load(id: string): MigrationRecord | undefined {
    const record = this.records.get(id);
    return record === undefined ? undefined : structuredClone(record);
  }
  list(): MigrationRecord[] {
    return [...this.records.values()].map((r) => structuredClone(r));
  }
}
