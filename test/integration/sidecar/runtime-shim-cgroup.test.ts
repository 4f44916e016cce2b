import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchShim, removeShimCgroup } from '../../../sidecar/src/runtime/shim';
import { eventually } from '../../harness/eventually';

// Real cgroups (v1 hierarchies and the unified one on this host): a shim must leave the sidecar's cgroup
// however many tasks start or are restored at once under one cgroup parent.
jest.setTimeout(120_000);

const CPUSET = '/sys/fs/cgroup/cpuset';

describe('task shim cgroups (real cgroupfs)', () => {
  let work: string;
  let parent: string;
  const launched: string[] = [];

  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'nc-shim-cg-'));
    parent = `nomad-chain-test-${randomBytes(4).toString('hex')}`;
  });

  afterEach(async () => {
    for (const cgroup of launched.splice(0))
      await eventually(async () => expect(await removeShimCgroup(cgroup)).toBe(true));
    await removeShimCgroup(parent);
    await rm(work, { recursive: true, force: true });
  });

  const launch = async (name: string): Promise<number> => {
    const cgroup = `${parent}/${name}.shim`;
    launched.push(cgroup);
    return launchShim({
      exitFile: join(work, `${name}.exit`),
      stdoutPath: join(work, `${name}.out`),
      stderrPath: join(work, `${name}.err`),
      command: ['/bin/sh', '-c', 'echo ran'],
      cgroup,
    });
  };

  const ranToTheEnd = (name: string): Promise<void> =>
    eventually(async () => {
      expect((await readFile(join(work, `${name}.exit`), 'utf8')).trim()).toBe('0');
      expect(await readFile(join(work, `${name}.out`), 'utf8')).toBe('ran\n');
    });

  it('a launch under a cgroup parent another launch has created but not yet given cpus and mems', async () => {
    // The first launch's mkdir made the parent; its cpuset.cpus and cpuset.mems are still empty.
    await mkdir(join(CPUSET, parent));
    expect((await readFile(join(CPUSET, parent, 'cpuset.cpus'), 'utf8')).trim()).toBe('');
    await launch('second');
    await ranToTheEnd('second');
    expect((await readFile(join(CPUSET, parent, 'cpuset.cpus'), 'utf8')).trim()).not.toBe('');
    expect((await readFile(join(CPUSET, parent, 'cpuset.mems'), 'utf8')).trim()).not.toBe('');
  });

  it("eight shims launched at once under a new cgroup parent all leave the sidecar's cgroup", async () => {
    const names = Array.from({ length: 8 }, (_, i) => `t${i}`);
    const pids = await Promise.all(names.map((name) => launch(name)));
    expect(new Set(pids).size).toBe(names.length);
    for (const name of names) await ranToTheEnd(name);
  });
});
