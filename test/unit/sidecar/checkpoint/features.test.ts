import { MigrationMode } from '../../../../proto/gen/chain/v1/sidecar';
import type { Criu, CriuFeature } from '../../../../sidecar/src/checkpoint/criu';
import { chooseMode, probeFeatures } from '../../../../sidecar/src/checkpoint/features';
import type { Runc } from '../../../../sidecar/src/runtime/runc';

function fakeCriu(features: readonly CriuFeature[]): Criu {
  return {
    bin: '/fake/criu',
    version: () => Promise.resolve('4.2.1'),
    hasFeature: (f) => Promise.resolve(features.includes(f)),
    spawnLazyPages: () => {
      throw new Error('not in unit tests');
    },
  };
}

const runc = { version: () => Promise.resolve('1.1.5') } as unknown as Runc;

describe('feature probe and mode choice', () => {
  it('reports pre-copy only with soft-dirty tracking and lazy pages only with both uffd features', async () => {
    expect(await probeFeatures(fakeCriu(['uffd', 'uffd-noncoop']), runc)).toEqual({
      criuVersion: '4.2.1',
      runcVersion: '1.1.5',
      preCopy: false,
      lazyPages: true,
    });
    expect(await probeFeatures(fakeCriu(['uffd', 'mem_dirty_track']), runc)).toMatchObject({
      preCopy: true,
      lazyPages: false,
      lazyPagesUnavailable: expect.stringContaining('uffd-noncoop') as unknown,
    });
  });

  it('offers lazy pages to user-namespaced tasks only with unprivileged userfaultfd and CAP_SYS_RESOURCE', async () => {
    const criu = fakeCriu(['uffd', 'uffd-noncoop']);
    const proc = (sysctl: string, capEff: string) => (path: string) =>
      Promise.resolve(path.endsWith('unprivileged_userfaultfd') ? `${sysctl}\n` : `Name:\tnode\nCapEff:\t${capEff}\n`);
    const all = '000001ffffffffff';
    const noSysResource = '000001fffeffffff';
    expect(await probeFeatures(criu, runc, { userNamespace: true, readProcFile: proc('1', all) })).toMatchObject({
      lazyPages: true,
    });
    const blocked = await probeFeatures(criu, runc, { userNamespace: true, readProcFile: proc('0', all) });
    expect(blocked).toMatchObject({ lazyPages: false });
    expect(blocked.lazyPagesUnavailable).toContain('vm.unprivileged_userfaultfd = 1');
    expect(chooseMode(MigrationMode.MIGRATION_MODE_LAZY, blocked)).toEqual({
      mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
      fallbackReason: blocked.lazyPagesUnavailable,
    });
    const noCap = await probeFeatures(criu, runc, { userNamespace: true, readProcFile: proc('1', noSysResource) });
    expect(noCap.lazyPagesUnavailable).toContain('CAP_SYS_RESOURCE');
    expect(
      await probeFeatures(criu, runc, { userNamespace: false, readProcFile: proc('0', noSysResource) }),
    ).toMatchObject({ lazyPages: true });
  });

  it('falls back from pre-copy to stop-and-copy and says why', () => {
    const noDirty = { criuVersion: '4', runcVersion: '1', preCopy: false, lazyPages: true };
    expect(chooseMode(MigrationMode.MIGRATION_MODE_PRE_COPY, noDirty)).toEqual({
      mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
      fallbackReason: expect.stringContaining('soft-dirty') as unknown,
    });
    expect(chooseMode(MigrationMode.MIGRATION_MODE_LAZY, noDirty)).toEqual({ mode: MigrationMode.MIGRATION_MODE_LAZY });
    expect(chooseMode(MigrationMode.MIGRATION_MODE_LAZY, { ...noDirty, lazyPages: false }).mode).toBe(
      MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
    );
    // Lazy mode carries a failure window: never picked unless asked for.
    expect(chooseMode(MigrationMode.MIGRATION_MODE_AUTO, noDirty)).toEqual({
      mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
    });
  });
});
