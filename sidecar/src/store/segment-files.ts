import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../common/logging';

/** Where a sealed chunk lies: its segment, the offset there and its length. */
export interface ChunkLocation {
  readonly segment: number;
  readonly offset: number;
  readonly length: number;
}

interface Segment {
  readonly id: number;
  readonly path: string;
  /** Bytes appended, or reserved by an append under way. */
  size: number;
  /** Bytes of the chunks the store indexes in it, and of appends under way. */
  liveBytes: number;
  /** A writer still appends to it, so it stays even while nothing in it is live. */
  writable: boolean;
  handle: Promise<FileHandle> | undefined;
}

const SEGMENT_NAME = /^([0-9]{1,15})\.seg$/;
/** Offsets travel in records as 32-bit numbers. */
export const MAX_SEGMENT_BYTES = 1024 * 1024 * 1024;

/**
 * Append-only segment files holding sealed chunks back to back: a transfer appends to its own segment
 * (one file, positioned writes) instead of creating a file per chunk, and a segment is deleted once none
 * of its chunks is indexed any more. Bytes are never overwritten in place, so a location a record names
 * holds exactly what was appended there, or the segment is gone or shorter (then reads come back short).
 */
export class SegmentFiles {
  private readonly segments = new Map<number, Segment>();
  private readonly removing = new Set<Promise<void>>();
  private readonly readQueue: PendingRead[] = [];
  private readsUnderWay = 0;
  private nextId = 1;

  private constructor(
    private readonly dir: string,
    private readonly maxSegmentBytes: number,
    private readonly log: Logger,
  ) {}

  /** Opens `dir` (created if missing) with the segments found there; none is live until `adopt`ed. */
  static async open(dir: string, log: Logger, maxSegmentBytes = MAX_SEGMENT_BYTES): Promise<SegmentFiles> {
    const files = new SegmentFiles(dir, Math.min(maxSegmentBytes, MAX_SEGMENT_BYTES), log);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(dir)) {
      const match = SEGMENT_NAME.exec(name);
      if (match === null) {
        await rm(join(dir, name), { recursive: true, force: true });
        continue;
      }
      const id = Number(match[1]);
      const path = join(dir, name);
      const { size } = await stat(path);
      files.segments.set(id, { id, path, size, liveBytes: 0, writable: false, handle: undefined });
      files.nextId = Math.max(files.nextId, id + 1);
    }
    return files;
  }

  /** A writer appending to segments of its own. */
  writer(): SegmentWriter {
    return new SegmentWriter(this, this.maxSegmentBytes);
  }

  /** Whether `location` lies inside a segment on disk (at load: a record whose chunks are all there). */
  holds(location: ChunkLocation): boolean {
    const segment = this.segments.get(location.segment);
    return segment !== undefined && location.offset + location.length <= segment.size;
  }

  /** Counts a chunk found at load as live. */
  adopt(location: ChunkLocation): void {
    const segment = this.segments.get(location.segment);
    if (segment !== undefined) segment.liveBytes += location.length;
  }

  /** After load: deletes the segments no adopted chunk lies in. */
  async removeUnused(): Promise<void> {
    for (const segment of [...this.segments.values()]) this.removeIfDead(segment);
    await Promise.all(this.removing);
  }

  /** The chunk at `location` is no longer indexed; its segment goes once nothing in it is. */
  release(location: ChunkLocation): void {
    const segment = this.segments.get(location.segment);
    if (segment === undefined) return;
    segment.liveBytes -= location.length;
    this.removeIfDead(segment);
  }

  /**
   * The sealed bytes at `location`; shorter than asked when the segment was cut short or is gone. Reads asked
   * for while others are under way are served together: runs of neighbouring locations (a file's chunks as
   * one transfer appended them) become one read call each, as appends become one write.
   */
  read(location: ChunkLocation): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.readQueue.push({ location, resolve, reject });
      if (this.readsUnderWay === 0) this.startReads();
    });
  }

  private startReads(): void {
    const queued = this.readQueue.splice(0);
    queued.sort((x, y) => x.location.segment - y.location.segment || x.location.offset - y.location.offset);
    for (let i = 0; i < queued.length;) {
      const run = [queued[i] as PendingRead];
      let end = run[0]!.location.offset + run[0]!.location.length;
      for (i += 1; i < queued.length; i += 1) {
        const next = (queued[i] as PendingRead).location;
        if (
          next.segment !== run[0]!.location.segment ||
          next.offset !== end ||
          end - run[0]!.location.offset >= READ_BATCH_BYTES
        )
          break;
        run.push(queued[i] as PendingRead);
        end += next.length;
      }
      this.readsUnderWay += 1;
      void this.readRun(run, end).finally(() => {
        this.readsUnderWay -= 1;
        if (this.readsUnderWay === 0 && this.readQueue.length > 0) this.startReads();
      });
    }
  }

  private async readRun(run: readonly PendingRead[], end: number): Promise<void> {
    const first = (run[0] as PendingRead).location;
    try {
      const segment = this.segments.get(first.segment);
      const span =
        segment === undefined
          ? Buffer.alloc(0)
          : await readAt(await this.handleOf(segment), first.offset, end - first.offset);
      for (const { location, resolve } of run) {
        const from = location.offset - first.offset;
        resolve(span.subarray(Math.min(from, span.length), Math.min(from + location.length, span.length)));
      }
    } catch (err) {
      for (const { reject } of run) reject(err);
    }
  }

  /** Bytes on disk in segments, and the part of them no indexed chunk uses (kept until the segment goes). */
  usage(): { totalBytes: number; deadBytes: number; segments: number } {
    let totalBytes = 0;
    let deadBytes = 0;
    for (const segment of this.segments.values()) {
      totalBytes += segment.size;
      deadBytes += segment.size - segment.liveBytes;
    }
    return { totalBytes, deadBytes, segments: this.segments.size };
  }

  /** Lets deletions finish and closes every open segment. */
  async close(): Promise<void> {
    await Promise.all(this.removing);
    const handles = [...this.segments.values()].map((s) => s.handle).filter((h) => h !== undefined);
    await Promise.all(handles.map((h) => h.then((fh) => fh.close()).catch(() => undefined)));
  }

  /** @internal a writer's new segment. */
  create(): Segment {
    const id = this.nextId;
    this.nextId += 1;
    const path = join(this.dir, `${id}.seg`);
    const segment: Segment = { id, path, size: 0, liveBytes: 0, writable: true, handle: open(path, 'wx+', 0o600) };
    segment.handle?.catch(() => undefined);
    this.segments.set(id, segment);
    return segment;
  }

  /** @internal a writer is done with `segment`. */
  retire(segment: Segment): void {
    segment.writable = false;
    this.removeIfDead(segment);
  }

  /** @internal */
  handleOf(segment: Segment): Promise<FileHandle> {
    segment.handle ??= open(segment.path, 'r');
    return segment.handle;
  }

  private removeIfDead(segment: Segment): void {
    if (segment.writable || segment.liveBytes > 0 || this.segments.get(segment.id) !== segment) return;
    this.segments.delete(segment.id);
    // Unlinked first: a read under way on the open handle still completes; close waits for it.
    const done = rm(segment.path, { force: true })
      .then(() => segment.handle?.then((h) => h.close()))
      .catch((err: unknown) => this.log.warn({ err, path: segment.path }, 'cannot delete store segment'))
      .finally(() => this.removing.delete(done));
    this.removing.add(done);
  }
}

interface PendingRead {
  readonly location: ChunkLocation;
  readonly resolve: (bytes: Buffer) => void;
  readonly reject: (err: unknown) => void;
}

const READ_BATCH_BYTES = 4 * 1024 * 1024;

/** Up to `length` bytes at `position`; fewer where the file ends first. */
async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(out, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return out.subarray(0, filled);
}

interface PendingAppend {
  readonly segment: Segment;
  readonly offset: number;
  readonly buffer: Buffer;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

const WRITE_BATCH_BYTES = 4 * 1024 * 1024;

async function writeAllAt(handle: FileHandle, buffers: Buffer[], bytes: number, position: number): Promise<void> {
  let { bytesWritten } = await handle.writev(buffers, position);
  if (bytesWritten === bytes) return;
  const rest = Buffer.concat(buffers);
  while (bytesWritten < bytes) {
    const { bytesWritten: more } = await handle.write(
      rest,
      bytesWritten,
      bytes - bytesWritten,
      position + bytesWritten,
    );
    bytesWritten += more;
  }
}

/**
 * Appends sealed chunks for one transfer: each append reserves its offset at once, so appends under way
 * together write disjoint ranges of one file. `close` when the transfer ends.
 */
export class SegmentWriter {
  private current: Segment | undefined;
  private closed = false;
  private readonly queue: PendingAppend[] = [];
  private flushing = false;

  constructor(
    private readonly files: SegmentFiles,
    private readonly maxSegmentBytes: number,
  ) {}

  async append(sealed: Buffer): Promise<ChunkLocation> {
    if (this.closed) throw new Error('segment writer is closed');
    let segment = this.current;
    if (segment === undefined || segment.size + sealed.length > this.maxSegmentBytes) {
      if (segment !== undefined) this.files.retire(segment);
      segment = this.files.create();
      this.current = segment;
    }
    const location: ChunkLocation = { segment: segment.id, offset: segment.size, length: sealed.length };
    segment.size += sealed.length;
    segment.liveBytes += sealed.length;
    try {
      await new Promise<void>((resolve, reject) => {
        this.queue.push({ segment, offset: location.offset, buffer: sealed, resolve, reject });
        if (!this.flushing) void this.flush();
      });
    } catch (err) {
      // The range stays as dead bytes; a segment that failed once takes no more appends.
      if (this.current === segment) this.current = undefined;
      this.files.retire(segment);
      this.files.release(location);
      throw err;
    }
    return location;
  }

  /**
   * Writes what is queued, a batch per call: appends that arrive while a write is under way go out together
   * in the next one (their ranges follow each other), so a transfer costs a write call per batch, not per
   * chunk. On two busy cores each call is a hand-off to a libuv thread and back, which measured about as
   * dear as the copy itself.
   */
  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queue.length > 0) {
      const first = this.queue[0] as PendingAppend;
      let count = 1;
      let bytes = first.buffer.length;
      for (
        let next = this.queue[count];
        next !== undefined && next.segment === first.segment;
        next = this.queue[count]
      ) {
        if (bytes + next.buffer.length > WRITE_BATCH_BYTES) break;
        bytes += next.buffer.length;
        count += 1;
      }
      const batch = this.queue.splice(0, count);
      try {
        const handle = await this.files.handleOf(first.segment);
        await writeAllAt(
          handle,
          batch.map((a) => a.buffer),
          bytes,
          first.offset,
        );
        for (const append of batch) append.resolve();
      } catch (err) {
        for (const append of batch) append.reject(err);
      }
    }
    this.flushing = false;
  }

  close(): void {
    this.closed = true;
    if (this.current !== undefined) this.files.retire(this.current);
    this.current = undefined;
  }
}
