import { errorMessage } from '../../../../common/errors';
import { TelemetryError } from '../errors';

/** A notice the cloud posted about this node (mirrors chain.v1.InterruptionSignal, times in ms). */
export interface Notice {
  readonly source: string;
  readonly kind: string;
  /** When the node goes; 0 = not announced. */
  readonly deadlineMs: number;
  readonly detail: string;
}

/** One cloud's interruption notices, by role: AWS instance metadata, GCP metadata, Azure Scheduled Events. */
export interface InterruptionSource {
  readonly name: string;
  /** The notices posted now (empty = none). Fails with NC_SIGNAL_SOURCE_FAILED when the service cannot be asked. */
  poll(): Promise<Notice[]>;
  /** Stops background watches, if any. */
  close(): void;
}

export interface HttpAnswer {
  readonly status: number;
  readonly text: string;
  readonly headers: Headers;
}

/** One HTTP call to a metadata service with a deadline; transport failures become NC_SIGNAL_SOURCE_FAILED. */
export async function ask(
  source: string,
  url: string,
  init: { method?: string; headers?: Record<string, string>; timeoutMs: number; signal?: AbortSignal },
): Promise<HttpAnswer> {
  const signals = [AbortSignal.timeout(init.timeoutMs), ...(init.signal === undefined ? [] : [init.signal])];
  try {
    const res = await fetch(url, {
      method: init.method ?? 'GET',
      headers: init.headers,
      signal: AbortSignal.any(signals),
    });
    return { status: res.status, text: await res.text(), headers: res.headers };
  } catch (cause) {
    throw new TelemetryError('NC_SIGNAL_SOURCE_FAILED', `${source}: ${url} unreachable: ${errorMessage(cause)}`, {
      cause,
      context: { source, url },
      recoverable: true,
    });
  }
}

export function unexpected(source: string, url: string, problem: string): TelemetryError {
  return new TelemetryError('NC_SIGNAL_SOURCE_FAILED', `${source}: ${url}: ${problem}`, {
    context: { source, url },
    recoverable: true,
  });
}

export function parseJson(source: string, url: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw unexpected(source, url, 'answer is not JSON');
  }
}

/** A string field of a service's document; '' when absent or not a string. */
export function textOf(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** A date the service wrote (RFC 3339 or RFC 1123); 0 when absent or unreadable. */
export function timeOf(value: unknown): number {
  if (typeof value !== 'string' || value === '') return 0;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : 0;
}
