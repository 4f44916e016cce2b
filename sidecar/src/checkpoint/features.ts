import { readFile } from 'node:fs/promises';
import { MigrationMode } from '../../../proto/gen/chain/v1/sidecar';
import { hasSysResource } from '../runtime/user-namespace';
import type { Runc } from '../runtime/runc';
import type { Criu } from './criu';

export interface Features {
  readonly criuVersion: string;
  readonly runcVersion: string;
  /** `criu pre-dump` can track pages changed since the last round (needs the kernel's soft-dirty bits). */
  readonly preCopy: boolean;
  /** Post-copy restore through userfaultfd, including non-cooperative events (fork, mremap). */
  readonly lazyPages: boolean;
  /** Why lazyPages is false. */
  readonly lazyPagesUnavailable?: string;
}

export interface FeatureProbeOptions {
  /** Tasks run in their own user namespace (their restorer then opens the userfaultfd without privileges). @default false */
  readonly userNamespace?: boolean;
  /** @default /proc/sys/vm/unprivileged_userfaultfd and /proc/self/status */
  readonly readProcFile?: (path: string) => Promise<string>;
}

/**
 * Why a user-namespaced task cannot be restored lazily here, or undefined when it can. Its restorer opens the
 * userfaultfd as an unprivileged process (refused unless vm.unprivileged_userfaultfd is 1: "uffd: Unable to
 * open an userfaultfd descriptor: Operation not permitted"), and CRIU then raises RLIMIT_NOFILE, which
 * needs CAP_SYS_RESOURCE (both seen on this project's test machine).
 */
async function userNamespaceLazyBlocker(read: (path: string) => Promise<string>): Promise<string | undefined> {
  const sysctl = (await read('/proc/sys/vm/unprivileged_userfaultfd').catch(() => '0')).trim();
  if (sysctl !== '1') {
    return 'lazy restore of a task in its own user namespace needs vm.unprivileged_userfaultfd = 1';
  }
  if (!hasSysResource(await read('/proc/self/status'))) {
    return 'lazy restore of a task in its own user namespace needs CAP_SYS_RESOURCE (CRIU raises RLIMIT_NOFILE)';
  }
  return undefined;
}

export async function probeFeatures(criu: Criu, runc: Runc, options: FeatureProbeOptions = {}): Promise<Features> {
  const [criuVersion, runcVersion, dirty, uffd, noncoop] = await Promise.all([
    criu.version(),
    runc.version(),
    criu.hasFeature('mem_dirty_track'),
    criu.hasFeature('uffd'),
    criu.hasFeature('uffd-noncoop'),
  ]);
  const base = { criuVersion, runcVersion, preCopy: dirty };
  if (!(uffd && noncoop)) {
    return {
      ...base,
      lazyPages: false,
      lazyPagesUnavailable: 'lazy pages need userfaultfd (criu check --feature uffd-noncoop failed)',
    };
  }
  const blocker =
    options.userNamespace === true
      ? await userNamespaceLazyBlocker(options.readProcFile ?? ((path) => readFile(path, 'utf8')))
      : undefined;
  return blocker === undefined
    ? { ...base, lazyPages: true }
    : { ...base, lazyPages: false, lazyPagesUnavailable: `${blocker}; stop-and-copy used` };
}

export type ModeUsed = MigrationMode.MIGRATION_MODE_STOP_AND_COPY | MigrationMode.MIGRATION_MODE_LAZY;

export interface ModeChoice {
  readonly mode: ModeUsed;
  /** Set when the requested mode was not what runs, and why. */
  readonly fallbackReason?: string;
}

/**
 * Picks the mode a migration runs in. Pre-copy rounds only pay off when changed pages can be tracked; without
 * soft-dirty every round would copy everything again, so it falls back to stop-and-copy. Lazy mode is never
 * chosen automatically: its failure window (DESIGN.md) is a risk a job must accept explicitly.
 */
export function chooseMode(requested: MigrationMode, features: Features): ModeChoice {
  switch (requested) {
    case MigrationMode.MIGRATION_MODE_LAZY:
      if (features.lazyPages) return { mode: MigrationMode.MIGRATION_MODE_LAZY };
      return {
        mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
        fallbackReason: features.lazyPagesUnavailable ?? 'lazy pages are unavailable on this node',
      };
    case MigrationMode.MIGRATION_MODE_PRE_COPY:
      return {
        mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
        fallbackReason: features.preCopy
          ? 'pre-copy rounds are not implemented yet; stop-and-copy used'
          : 'pre-copy needs soft-dirty page tracking (criu check --feature mem_dirty_track failed)',
      };
    default:
      return { mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY };
  }
}
