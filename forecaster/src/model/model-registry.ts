import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ForecastError } from '../errors';

/** The registry's index (written by forecaster/training/nc_forecast/registry.py, replaced atomically). */
export const REGISTRY_INDEX = 'registry.json';

/**
 * The folder of the registry's current version (`ROOT/versions/<current>`), or undefined when nothing has been
 * promoted yet (no index, or `current` null). An index that is not the registry's shape is refused with
 * NC_MODEL_REGISTRY_INVALID, so a half-written or foreign file never picks the serving model.
 */
export async function currentModelDir(root: string): Promise<string | undefined> {
  const path = join(root, REGISTRY_INDEX);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ForecastError('NC_MODEL_REGISTRY_INVALID', `model registry ${path}: unreadable`, {
      cause,
      context: { path },
    });
  }
  let index: unknown;
  try {
    index = JSON.parse(text);
  } catch (cause) {
    throw new ForecastError('NC_MODEL_REGISTRY_INVALID', `model registry ${path}: not valid JSON`, {
      cause,
      context: { path },
    });
  }
  const current = (index as { current?: unknown } | null)?.current;
  if (current === null || current === undefined) return undefined;
  // A version is one path segment: the index must not point the forecaster outside the registry.
  if (typeof current !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(current)) {
    throw new ForecastError('NC_MODEL_REGISTRY_INVALID', `model registry ${path}: current is not a version name`, {
      context: { path },
    });
  }
  return join(root, 'versions', current);
}
