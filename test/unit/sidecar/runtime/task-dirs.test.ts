import { lstat, mkdir, mkdtemp, rm, symlink, writeFile, chown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownDirsByTask } from '../../../../sidecar/src/runtime/task-dirs';
import { hasSysResource } from '../../../../sidecar/src/runtime/user-namespace';

describe("a task's directories in its user namespace", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'task-dirs-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("hands host root's entries to the task user's mapped ids and leaves other owners alone", async () => {
    const alloc = join(dir, 'alloc');
    await mkdir(join(alloc, 'data'), { recursive: true });
    await writeFile(join(alloc, 'data', 'rendered'), 'x');
    await writeFile(join(alloc, 'nomads'), 'y');
    await chown(join(alloc, 'nomads'), 65534, 65534);
    await symlink('/etc/shadow', join(alloc, 'link'));

    await ownDirsByTask([alloc], { hostId: 100000, size: 65536 }, { uid: 70, gid: 71, additionalGids: [] });

    for (const path of [alloc, join(alloc, 'data'), join(alloc, 'data', 'rendered'), join(alloc, 'link')]) {
      expect(await lstat(path)).toMatchObject({ uid: 100070, gid: 100071 });
    }
    expect(await lstat(join(alloc, 'nomads'))).toMatchObject({ uid: 65534, gid: 65534 });
    // The symlink itself changed owner, never its target.
    expect(await lstat('/etc/shadow')).toMatchObject({ uid: 0 });
  });
});

describe('hasSysResource', () => {
  it("reads CAP_SYS_RESOURCE (bit 24) from a status file's effective set", () => {
    expect(hasSysResource('CapInh:\t0\nCapEff:\t000001ffffffffff\n')).toBe(true);
    expect(hasSysResource('CapEff:\t000001fffeffffff\n')).toBe(false);
    expect(hasSysResource('Name:\tx\n')).toBe(false);
  });
});
