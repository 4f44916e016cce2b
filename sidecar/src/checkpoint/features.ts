import { MigrationMode } from '../../../proto/gen/chain/v1/sidecar';
import type { Runc } from '../runtime/runc';
import type { Criu } from './criu';

export interface Features {
  readonly criuVersion: string;
  readonly runcVersion: string;
  /** `criu pre-dump` can track pages changed since the last round (needs the kernel's soft-dirty bits). */
  readonly preCopy: boolean;
  /** Post-copy restore through userfaultfd, including non-cooperative events (fork, mremap). */
  readonly lazyPages: boolean;
}

export async function probeFeatures(criu: Criu, runc: Runc): Promise<Features> {
  const [criuVersion, runcVersion, dirty, uffd, noncoop] = await Promise.all([
    criu.version(),
    runc.version(),
    criu.hasFeature('mem_dirty_track'),
    criu.hasFeature('uffd'),
    criu.hasFeature('uffd-noncoop'),
  ]);
  return { criuVersion, runcVersion, preCopy: dirty, lazyPages: uffd && noncoop };
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
        fallbackReason: 'lazy pages need userfaultfd (criu check --feature uffd-noncoop failed)',
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
