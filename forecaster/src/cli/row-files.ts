import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ForecastCliError } from './errors';

/** What `nc_forecast.cli prepare` leaves in its work directory beside features.f32 (float32, row-major). */
export interface RowsMeta {
  readonly rows: number;
  readonly cols: number;
  readonly featureNames: readonly string[];
  readonly specId: string;
}

export const FEATURES_FILE = 'features.f32';
export const SCORES_FILE = 'scores.f32';
export const ROWS_FILE = 'windows.json';

export async function readRows(dir: string): Promise<{ meta: RowsMeta; features: Float32Array }> {
  const meta = JSON.parse(await readFile(join(dir, ROWS_FILE), 'utf8')) as RowsMeta;
  const bytes = await readFile(join(dir, FEATURES_FILE));
  if (bytes.byteLength !== meta.rows * meta.cols * 4) {
    throw new ForecastCliError(
      'NC_FORECAST_PYTHON_FAILED',
      `${join(dir, FEATURES_FILE)}: ${bytes.byteLength} bytes for ${meta.rows}x${meta.cols} float32`,
    );
  }
  // Copy into an aligned buffer: a Buffer from the pool may start at any byte offset.
  const features = new Float32Array(meta.rows * meta.cols);
  new Uint8Array(features.buffer).set(bytes);
  return { meta, features };
}

export async function writeScores(dir: string, scores: Float32Array): Promise<void> {
  await writeFile(join(dir, SCORES_FILE), new Uint8Array(scores.buffer, scores.byteOffset, scores.byteLength));
}
