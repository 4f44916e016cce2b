import type { Instance } from '../../common/router';
import { waitForPort } from '../local-mode';
import type { ServiceCheck } from './job-file';

const HTTP_POLL_MS = 200;

/** Resolves once the instance passes its job's check: a TCP connect, or an HTTP GET of its path answered 2xx. */
export async function waitForCheck(instance: Instance, check: ServiceCheck, timeoutMs = 60_000): Promise<void> {
  await waitForPort(instance, timeoutMs);
  if (check.type === 'tcp') return;
  const url = `http://${instance.address}:${instance.port}${check.path}`;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      if (res.ok) return;
      last = `answered ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, HTTP_POLL_MS));
  }
  throw new Error(`${url} did not pass its http check within ${timeoutMs} ms (${last})`);
}
