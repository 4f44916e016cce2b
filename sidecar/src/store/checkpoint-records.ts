import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { CheckpointInfo } from '../../../proto/gen/chain/v1/sidecar';
import { CommitRequest } from '../../../proto/gen/chain/v1/transfer';
import type { ChunkCipher } from './chunk-cipher';
import type { ChunkLocation } from './segment-files';

/** A filed checkpoint: what was committed, and where each of its distinct chunks lies. */
export interface CheckpointRecord {
  readonly info: CheckpointInfo;
  readonly manifest: Buffer;
  /** One per distinct chunk, in the manifest's order (`distinctChunks`). */
  readonly locations: readonly ChunkLocation[];
}

/** Records before segment files (a file per chunk) carry no locations: they are dropped at load. */
const RECORD_VERSION = 2;
const LOCATION_BYTES = 12;

/**
 * One sealed file per filed checkpoint, named by a keyed hash of its id and bound to that name, so a
 * record renamed to stand for another checkpoint fails authentication. Written beside and renamed into
 * place: a record exists whole or not at all, and only after every chunk it names was appended.
 */
export class CheckpointRecords {
  constructor(
    private readonly dir: string,
    private readonly cipher: ChunkCipher,
  ) {}

  pathFor(checkpointId: string): string {
    return join(this.dir, `${this.cipher.nameFor('checkpoint', checkpointId)}.rec`);
  }

  /** Seals a record; its length is what it costs the store. */
  seal(path: string, record: CheckpointRecord): Buffer {
    const commit = CommitRequest.encode({ info: record.info, manifest: record.manifest }).finish();
    const head = Buffer.alloc(5);
    head.writeUInt8(RECORD_VERSION, 0);
    head.writeUInt32BE(commit.length, 1);
    const table = Buffer.alloc(4 + record.locations.length * LOCATION_BYTES);
    table.writeUInt32BE(record.locations.length, 0);
    record.locations.forEach((l, i) => {
      const at = 4 + i * LOCATION_BYTES;
      table.writeUInt32BE(l.segment, at);
      table.writeUInt32BE(l.offset, at + 4);
      table.writeUInt32BE(l.length, at + 8);
    });
    return this.cipher.seal([head, commit, table], recordAad(path));
  }

  async write(path: string, sealed: Buffer): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    try {
      await writeFile(`${path}.tmp`, sealed);
      await rename(`${path}.tmp`, path);
    } catch (err) {
      await rm(`${path}.tmp`, { force: true });
      throw err;
    }
  }

  /** The record at `path`; undefined when it fails authentication, is not this version or does not parse. */
  async read(path: string): Promise<CheckpointRecord | undefined> {
    const plain = this.cipher.open(await readFile(path), recordAad(path));
    if (plain === undefined || plain.length < 5 || plain.readUInt8(0) !== RECORD_VERSION) return undefined;
    try {
      const commitEnd = 5 + plain.readUInt32BE(1);
      const commit = CommitRequest.decode(plain.subarray(5, commitEnd));
      const count = plain.readUInt32BE(commitEnd);
      if (commit.info === undefined || plain.length !== commitEnd + 4 + count * LOCATION_BYTES) return undefined;
      const locations: ChunkLocation[] = [];
      for (let at = commitEnd + 4; at < plain.length; at += LOCATION_BYTES) {
        locations.push({
          segment: plain.readUInt32BE(at),
          offset: plain.readUInt32BE(at + 4),
          length: plain.readUInt32BE(at + 8),
        });
      }
      return { info: commit.info, manifest: Buffer.from(commit.manifest), locations };
    } catch {
      return undefined;
    }
  }

  /** Paths of every record on disk; leftovers of interrupted writes are removed. */
  async list(): Promise<string[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const out: string[] = [];
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (name.endsWith('.rec')) out.push(path);
      else await rm(path, { force: true });
    }
    return out;
  }
}

function recordAad(path: string): Buffer {
  return Buffer.from(`checkpoint\0${basename(path)}`);
}
