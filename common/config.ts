import { ConfigError } from './config-error';

/** Freezes a parsed configuration all the way down: configs are resolved once and never mutated. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Nomad-style duration ("250ms", "30s", "5m", "1h30m") or a number of milliseconds. */
export function parseDurationMs(field: string, value: unknown): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ConfigError(field, `expected a duration such as "30s", got ${JSON.stringify(value)}`);
  }
  let total = 0;
  let rest = value.trim();
  while (rest.length > 0) {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    const amount = match?.[1];
    const unit = match?.[2];
    if (!match || amount === undefined || unit === undefined) {
      throw new ConfigError(field, `expected a duration such as "30s", got ${JSON.stringify(value)}`);
    }
    total += Number(amount) * (DURATION_UNITS_MS[unit] ?? 0);
    rest = rest.slice(match[0].length);
  }
  return total;
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
};

/** Parses a size ("512MiB", "2GiB", "1048576") into bytes. */
export function parseSizeBytes(field: string, value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  const match = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$/.exec(value) : null;
  const amount = match?.[1];
  if (!match || amount === undefined) {
    throw new ConfigError(field, `expected a size such as "512MiB", got ${JSON.stringify(value)}`);
  }
  return Math.round(Number(amount) * (SIZE_UNITS[match[2] ?? ''] ?? 1));
}

export function requireString(field: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new ConfigError(field, 'expected a non-empty string');
  return value;
}

export function requireInt(field: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(field, `expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

export function requireNumber(field: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) {
    throw new ConfigError(field, `expected a number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

export function requireBool(field: string, value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new ConfigError(field, `expected true or false, got ${JSON.stringify(value)}`);
}

/** Rejects keys a schema does not know, naming the first one: a typo must not silently fall back to a default. */
export function rejectUnknownKeys(path: string, raw: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) throw new ConfigError(path === '' ? key : `${path}.${key}`, 'unknown field');
  }
}
