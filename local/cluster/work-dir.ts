import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fresh directory under the system's temp dir for a local cluster or what holds one. mkdtemp makes it 0700,
 * but tasks run in their own user namespace as an unprivileged host id and must search down to their roots
 * below it (the sidecar refuses a data dir they cannot reach): it is made 0711, searchable, not listable.
 */
export function makeWorkDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o711);
  return dir;
}
