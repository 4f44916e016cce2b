import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import type { HarnessNode } from './node-harness';
import { eventually, handOverAndRestore, identity, inNetns, useTwoNodes } from './node-harness';

const getfacl = (dir: string): string => execFileSync('getfacl', ['-p', dir], { encoding: 'utf8' });

// Issue #10: tasks run as their user in their own user namespace, and dump and restore there.

// A counter in memory behind a listening socket, optionally served by a child that dropped root for `uid`.
const SERVER = (dropTo: number | undefined) => `
import os, socket, threading, time
${dropTo === undefined ? '' : `if os.fork() != 0:\n    os.wait()\n    raise SystemExit\nos.setgroups([])\nos.setgid(${dropTo})\nos.setuid(${dropTo})`}
count = 0
def tick():
    global count
    while True:
        count += 1
        time.sleep(0.05)
threading.Thread(target=tick, daemon=True).start()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8080))
s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(f'{count} {os.getuid()}'.encode())
    c.close()
`;

const ASK = (address: string) => [
  '/usr/bin/python3',
  '-c',
  `import socket;s=socket.create_connection(('${address}',8080),timeout=3);print(s.recv(64).decode())`,
];

jest.setTimeout(300_000);

describe('tasks in their own user namespace (real runc + CRIU)', () => {
  const nodes = useTwoNodes('us');
  let a: HarnessNode;
  let b: HarnessNode;
  beforeAll(() => {
    ({ a, b } = nodes);
  });

  async function ask(from: HarnessNode, to: HarnessNode): Promise<{ count: number; uid: number }> {
    const [count, uid] = (await inNetns(from.net?.netnsPath ?? '', ASK(to.net?.address ?? ''))).trim().split(' ');
    return { count: Number(count), uid: Number(uid) };
  }

  /** Host uids of the task's processes, read from /proc on the node. */
  async function hostUids(node: HarnessNode, taskId: string): Promise<number[]> {
    const pids = await node.runc.pids((await node.runtime.inspect(taskId)).record.containerId);
    const uids = await Promise.all(
      pids.map(async (pid) => Number(/^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1])),
    );
    return uids.sort((x, y) => x - y);
  }

  async function moveAndCheck(taskId: string, user: string, dropTo: number | undefined, uidInside: number) {
    const alloc = await a.allocDir(taskId);
    await writeFile(join(alloc, 'server.py'), SERVER(dropTo));
    await a.runtime.start(
      identity(taskId),
      TaskSpec.fromPartial({ argv: ['/usr/bin/python3', '/alloc/server.py'], allocDir: alloc, user }),
    );
    const before = await eventually(() => ask(b, a));
    expect(before.uid).toBe(uidInside);
    // On the node the same process is an unprivileged id of the task's range, never the id itself.
    expect(await hostUids(a, taskId)).toContain(100_000 + uidInside);
    expect((await stat(alloc)).uid).toBeGreaterThanOrEqual(100_000);

    const dumped = await a.dumper.dump({ taskId, leaveRunning: false, handoverKey: `${taskId}-next` });
    const allocB = await b.allocDir(`${taskId}-b`);
    await b.restorer.restore({
      identity: identity(`${taskId}-b`),
      checkpointDir: dumped.dir,
      spec: TaskSpec.fromPartial({ allocDir: allocB, user }),
    });
    const after = await eventually(() => ask(a, b));
    expect(after.uid).toBe(uidInside);
    expect(after.count).toBeGreaterThanOrEqual(before.count);
    await eventually(async () => {
      if (!((await ask(a, b)).count > after.count)) throw new Error('counter stalled');
    });
    expect(await hostUids(b, `${taskId}-b`)).toContain(100_000 + uidInside);
    await b.runtime.stop(`${taskId}-b`, 'SIGKILL', 5000);
  }

  it('moves a task started as "nobody" to another namespace and /alloc with its memory intact', async () => {
    await moveAndCheck('nobody', 'nobody', undefined, 65534);
  });

  it('moves a root task whose server child dropped to uid 70', async () => {
    await moveAndCheck('dropper', '', 70, 70);
  });

  // Nomad keeps its data_dir (above every allocation dir) at 0700: runc starts such a task, but CRIU restores
  // its binds from inside its user namespace and read "Permission denied" there.
  it('moves a task whose directories sit below a 0700 directory, as Nomad allocation dirs do', async () => {
    const privateA = await mkdtemp(join(tmpdir(), 'userns-private-a-'));
    const privateB = await mkdtemp(join(tmpdir(), 'userns-private-b-'));
    try {
      expect((await stat(privateB)).mode & 0o777).toBe(0o700);
      const [allocA, allocB] = [join(privateA, 'alloc'), join(privateB, 'alloc')];
      await mkdir(allocA);
      await mkdir(allocB);
      await writeFile(join(allocA, 'server.py'), SERVER(undefined));
      await a.runtime.start(
        identity('private'),
        TaskSpec.fromPartial({ argv: ['/usr/bin/python3', '/alloc/server.py'], allocDir: allocA }),
      );
      const before = await eventually(() => ask(b, a));
      await handOverAndRestore(a, b, 'private', TaskSpec.fromPartial({ allocDir: allocB }));
      const after = await eventually(() => ask(a, b));
      expect(after.count).toBeGreaterThanOrEqual(before.count);
      // Search for the task's root only, by an ACL entry: the owning group and others still have no access.
      const acl = getfacl(privateB);
      expect(acl).toContain('user:100000:--x');
      expect(acl).toMatch(/^group::---$/m);
      expect(acl).toMatch(/^other::---$/m);
      await b.runtime.stop('private-b', 'SIGKILL', 5000);
    } finally {
      await rm(privateA, { recursive: true, force: true });
      await rm(privateB, { recursive: true, force: true });
    }
  });

  it("keeps root in the task from writing a host directory owned by the node's root", async () => {
    const hostDir = await mkdtemp(join(tmpdir(), 'userns-rw-'));
    try {
      const alloc = await a.allocDir('writer');
      await a.runtime.start(
        identity('writer'),
        TaskSpec.fromPartial({ argv: ['/bin/sleep', '600'], allocDir: alloc, binds: { [hostDir]: '/data' } }),
      );
      expect((await stat(hostDir)).uid).toBe(0);
      const denied = await a.runtime.exec('writer', ['/bin/sh', '-c', 'echo x > /data/f'], 20_000);
      expect(denied.exitCode).not.toBe(0);
      expect(String(denied.stderr)).toMatch(/Permission denied|Read-only/);
      // Its own /alloc it can write.
      const allowed = await a.runtime.exec('writer', ['/bin/sh', '-c', 'echo x > /alloc/f && id -u'], 20_000);
      expect([allowed.exitCode, String(allowed.stdout).trim()]).toEqual([0, '0']);
      expect((await stat(join(alloc, 'f'))).uid).toBe(100_000);
      await a.runtime.stop('writer', 'SIGKILL', 5000);
    } finally {
      await rm(hostDir, { recursive: true, force: true });
    }
  });

  // A server running as its own user keeps temp files in /tmp (MariaDB: "Can't create/write to file '/tmp/ib…'").
  it('gives a task running as another user a /tmp it can write', async () => {
    const alloc = await a.allocDir('tmpuser');
    await a.runtime.start(
      identity('tmpuser'),
      TaskSpec.fromPartial({ argv: ['/bin/sleep', '600'], allocDir: alloc, user: 'nobody' }),
    );
    // exec enters the task's namespaces as their root: drop to the task's user as its own processes are.
    const wrote = await a.runtime.exec(
      'tmpuser',
      [
        '/usr/bin/setpriv',
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        '/bin/sh',
        '-c',
        'echo x > /tmp/f && id -u && stat -c %a /tmp',
      ],
      20_000,
    );
    expect([wrote.exitCode, String(wrote.stdout).trim().split('\n')]).toEqual([0, ['65534', '1777']]);
    await a.runtime.stop('tmpuser', 'SIGKILL', 5000);
  });

  it('refuses an unknown user with a coded error naming it', async () => {
    await expect(
      a.runtime.start(identity('ghost'), TaskSpec.fromPartial({ argv: ['/bin/true'], user: 'no-such-user' })),
    ).rejects.toMatchObject({
      code: 'NC_TASK_USER_UNKNOWN',
      message: expect.stringContaining('no-such-user') as unknown,
    });
  });
});
