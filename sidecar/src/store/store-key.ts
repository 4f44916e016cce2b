import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { STORE_KEY_BYTES } from './chunk-cipher';
import { StoreError } from './errors';

/**
 * The node's at-rest key: read from `path`, or made (32 random bytes, mode 0600) on first start. Losing
 * it loses only staged checkpoints, which are transient by design.
 */
export async function loadOrCreateStoreKey(path: string): Promise<Buffer> {
  try {
    const key = await readFile(path);
    if (key.length !== STORE_KEY_BYTES) {
      throw new StoreError('NC_STORE_KEY_INVALID', `store key file must hold ${STORE_KEY_BYTES} bytes`, {
        context: { path, bytes: key.length },
      });
    }
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof StoreError) throw err;
      throw new StoreError('NC_STORE_KEY_INVALID', 'store key file unreadable', { cause: err, context: { path } });
    }
  }
  const key = randomBytes(STORE_KEY_BYTES);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    await writeFile(path, key, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process made it first: use theirs, so both agree.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateStoreKey(path);
    throw new StoreError('NC_STORE_IO', 'cannot write store key file', { cause: err, context: { path } });
  }
  return key;
}
