import { readFile } from 'node:fs/promises';
import { EnvironmentError } from './errors';

/** CRIU's image magics (criu/include/magic.h): every protobuf image opens with the common one, then its own. */
export const IMG_COMMON_MAGIC = 0x54564319;
export const PSTREE_MAGIC = 0x50273030;
export const MM_MAGIC = 0x57492820;
export const PAGEMAP_MAGIC = 0x56084025;

export interface ImageMessage<T> {
  decode(input: Uint8Array): T;
}

/**
 * Reads a CRIU protobuf image: the two little-endian u32 magics, then entries each prefixed by its u32 size.
 * A missing file is `undefined` (a zombie has no memory images); anything else that does not parse is
 * NC_ENV_IMAGE_UNREADABLE.
 */
export async function readImage(path: string, magic: number): Promise<Buffer[] | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new EnvironmentError('NC_ENV_IMAGE_UNREADABLE', 'image file could not be read', { cause, context: { path } });
  }
  const fail = (why: string): EnvironmentError =>
    new EnvironmentError('NC_ENV_IMAGE_UNREADABLE', `image file ${why}`, { context: { path } });
  if (bytes.length < 8 || bytes.readUInt32LE(0) !== IMG_COMMON_MAGIC || bytes.readUInt32LE(4) !== magic) {
    throw fail('does not start with the expected CRIU magic');
  }
  const entries: Buffer[] = [];
  let pos = 8;
  while (pos < bytes.length) {
    if (pos + 4 > bytes.length) throw fail('ends inside an entry size');
    const size = bytes.readUInt32LE(pos);
    pos += 4;
    if (pos + size > bytes.length) throw fail('ends inside an entry');
    entries.push(bytes.subarray(pos, pos + size));
    pos += size;
  }
  return entries;
}

/** Decodes one entry, turning a protobuf error into NC_ENV_IMAGE_UNREADABLE. */
export function decodeEntry<T>(message: ImageMessage<T>, entry: Buffer, path: string): T {
  try {
    return message.decode(entry);
  } catch (cause) {
    throw new EnvironmentError('NC_ENV_IMAGE_UNREADABLE', 'image entry is not valid protobuf', {
      cause,
      context: { path },
    });
  }
}
