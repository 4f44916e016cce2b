import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TelemetryError } from './errors';

/** Reads a file under the proc root (a tmp dir in tests), mapping failures to NC_TELEMETRY_PROC_UNREADABLE. */
export async function readProc(procRoot: string, relative: string): Promise<string> {
  const path = join(procRoot, relative);
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    throw new TelemetryError('NC_TELEMETRY_PROC_UNREADABLE', `cannot read ${path}`, { cause, context: { path } });
  }
}

export function malformed(path: string, problem: string): TelemetryError {
  return new TelemetryError('NC_TELEMETRY_PROC_MALFORMED', `${path}: ${problem}`, { context: { path } });
}

/** A per-second rate from two counter readings; 0 on the first reading or a counter reset. */
export function rate(previous: number | undefined, current: number, elapsedMs: number): number {
  if (previous === undefined || elapsedMs <= 0 || current < previous) return 0;
  return ((current - previous) * 1000) / elapsedMs;
}
