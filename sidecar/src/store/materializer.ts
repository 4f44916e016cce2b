import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { chmod, mkdir, open, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errorCode } from '../../../common/errors';
import type { Manifest } from '../../../proto/gen/chain/v1/transfer';
import { fileChunks } from '../transfer/manifest';
import type { StageTimes } from '../transfer/stage-times';
import { timedAsync } from '../transfer/stage-times';
import { StoreError, storeIoError } from './errors';

/** A chunk's plain bytes, checked; throws a coded error otherwise. */
export type ChunkReader = (digestHex: string, size: number) => Promise<Buffer>;

const READ_AHEAD_CHUNKS = 8;
/** Chunks ready in order are written together, up to this many bytes per call. */
const WRITE_BATCH_BYTES = 1024 * 1024;
/**
 * Files written at once: as many as libuv's pool has threads by default. A file costs several trips through
 * that pool (open, writes, chmod, close), each queued behind other work on a busy node; a checkpoint of a
 * small task is ~30 such files, so writing them one after another is most of its materialisation.
 */
const FILES_AT_ONCE = 4;

/**
 * Lays a manifest's tree down in `targetDir` (absent or empty). Everything is written beside it and
 * renamed into place only once every chunk read back whole, so a failure leaves no target directory.
 */
export async function materializeTree(
  manifest: Manifest,
  targetDir: string,
  readChunk: ChunkReader,
  stages: StageTimes | undefined,
): Promise<void> {
  await ensureVacant(targetDir);
  const partial = `${targetDir}.partial-${randomBytes(6).toString('hex')}`;
  try {
    await mkdir(partial, { recursive: true, mode: 0o700 });
    const made = new Set<string>([partial]);
    const files: { path: string; file: Manifest['files'][number] }[] = [];
    for (const file of manifest.files) {
      const path = join(partial, ...file.path.split('/'));
      if (file.directory) {
        await mkdir(path, { recursive: true });
        await chmod(path, file.mode);
        made.add(path);
      } else {
        if (!made.has(dirname(path))) {
          await mkdir(dirname(path), { recursive: true });
          made.add(dirname(path));
        }
        files.push({ path, file });
      }
    }
    await eachAtOnce(files, async ({ path, file }) => {
      await writeFile(path, [...fileChunks(file)], file.mode, readChunk, stages);
    });
    await rename(partial, targetDir);
  } catch (err) {
    await rm(partial, { recursive: true, force: true });
    if (errorCode(err)?.startsWith('NC_') === true) throw err;
    throw storeIoError(err, 'cannot materialize checkpoint', { targetDir });
  }
}

/**
 * `work` over every item, FILES_AT_ONCE at a time. After a failure no further item starts, and the first
 * failure is thrown only once every started item has settled: nothing writes into the tree while it is removed.
 */
async function eachAtOnce<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const item = items[next] as T;
      next += 1;
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(FILES_AT_ONCE, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
}

async function writeFile(
  path: string,
  pieces: readonly { digest: Buffer; size: number }[],
  mode: number,
  readChunk: ChunkReader,
  stages: StageTimes | undefined,
): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    const reads: Promise<Buffer>[] = [];
    let next = 0;
    const fill = (): void => {
      while (reads.length < READ_AHEAD_CHUNKS && next < pieces.length) {
        const piece = pieces[next] as { digest: Buffer; size: number };
        next += 1;
        const read = readChunk(piece.digest.toString('hex'), piece.size);
        // Reads ahead of a failing one are abandoned; they must not surface as unhandled.
        read.catch(() => undefined);
        reads.push(read);
      }
    };
    fill();
    while (reads.length > 0) {
      const batch = [await (reads.shift() as Promise<Buffer>)];
      let bytes = batch[0]?.length ?? 0;
      fill();
      // Whatever else has already arrived goes out in the same call.
      while (reads.length > 0 && bytes < WRITE_BATCH_BYTES) {
        const ready = await Promise.race([reads[0] as Promise<Buffer>, Promise.resolve(undefined)]);
        if (ready === undefined) break;
        void reads.shift();
        batch.push(ready);
        bytes += ready.length;
        fill();
      }
      await timedAsync(stages, 'materialize-write', bytes, () => writeAll(handle, batch, bytes));
    }
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

async function writeAll(handle: FileHandle, batch: Buffer[], bytes: number): Promise<void> {
  let { bytesWritten } = await handle.writev(batch);
  if (bytesWritten === bytes) return;
  const rest = Buffer.concat(batch);
  while (bytesWritten < bytes) bytesWritten += (await handle.write(rest, bytesWritten)).bytesWritten;
}

async function ensureVacant(targetDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(targetDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new StoreError('NC_STORE_TARGET_EXISTS', 'materialize target is not a usable directory', {
      cause: err,
      context: { targetDir },
    });
  }
  if (entries.length > 0)
    throw new StoreError('NC_STORE_TARGET_EXISTS', 'materialize target is not empty', { context: { targetDir } });
  await rmdir(targetDir);
}
