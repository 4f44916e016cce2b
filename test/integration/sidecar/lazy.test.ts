import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MigrationMode, TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { readMeta } from '../../../sidecar/src/checkpoint/manifest';
import type { DirectoryStagedCheckpoints } from '../../../sidecar/src/checkpoint/staging';
import type { HarnessNode } from './node-harness';
import { eventually, identity, inNetns, makeNode, teardownNode } from './node-harness';
import { TestNetwork } from '../../harness/test-network';

// 64 MiB actually written, a checksum over it on every request, a counter and a listening socket.
const PROGRAM = `
import socket, threading, time
data = bytearray(64 * 1024 * 1024)
for i in range(0, len(data), 4096):
    data[i] = (i // 4096) % 251
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
s.listen(8)
while True:
    c, _ = s.accept()
    ok = all(data[i] == (i // 4096) % 251 for i in range(0, len(data), 4096))
    c.sendall(f"{count} {ok}".encode())
    c.close()
`;

describe('lazy (post-copy) migration through runc and CRIU lazy-pages', () => {
  let net: TestNetwork;
  let a: HarnessNode;
  let b: HarnessNode;
  const peers = new Map<string, DirectoryStagedCheckpoints>();

  beforeAll(async () => {
    net = TestNetwork.create(2);
    // Lazy restore of a user-namespaced task does not work yet (issue #10): its restorer may not open a
    // userfaultfd ("uffd: Unable to open an userfaultfd descriptor: Operation not permitted").
    const options = { pageServerHost: net.gateway, lazyConnectTimeoutMs: 3000, userNamespace: false };
    a = await makeNode('lza', net.node(0), peers, undefined, options);
    b = await makeNode('lzb', net.node(1), peers, undefined, options);
  });

  afterAll(async () => {
    await teardownNode(a);
    await teardownNode(b);
    net?.destroy();
  });

  async function ask(node: HarnessNode): Promise<{ count: number; intact: boolean }> {
    const out = await inNetns(node.net?.netnsPath ?? '', [
      '/usr/bin/python3',
      '-c',
      `import socket;s=socket.create_connection(('${node.net?.address ?? ''}',8080),timeout=5);print(s.recv(64).decode())`,
    ]);
    const [count, ok] = out.trim().split(' ');
    return { count: Number(count), intact: ok === 'True' };
  }

  async function start(node: HarnessNode, taskId: string): Promise<void> {
    const alloc = await node.allocDir(taskId);
    await writeFile(join(alloc, 'prog.py'), PROGRAM);
    await node.runtime.start(
      identity(taskId),
      TaskSpec.fromPartial({ argv: ['/usr/bin/python3', '/alloc/prog.py'], allocDir: alloc }),
    );
    await eventually(() => ask(node), 60_000);
  }

  it('restores at once on the target and pulls every page from the frozen source', async () => {
    expect(a.features.lazyPages).toBe(true);
    await start(a, 'lazy');
    const before = await ask(a);
    expect(before.intact).toBe(true);

    const migration = a.migrator.migrate({
      taskId: 'lazy',
      peerAddress: `${b.net?.address ?? ''}:7450`,
      mode: MigrationMode.MIGRATION_MODE_LAZY,
      handoverKey: 'lazy-next',
    });
    migration.catch(() => undefined);
    // The target side, as the replacement's RestoreTask does it.
    const meta = await eventually(async () => {
      const found = await b.staged.find('lazy-next', 0);
      if (!found) throw new Error('not staged yet');
      return found;
    });
    const dir = join(b.root, 'restore-lazy');
    await b.staged.materialize(meta.checkpointId, dir);
    expect((await readMeta(dir)).mode).toBe('lazy');
    const restored = await b.restorer.restore({
      identity: identity('lazy-b'),
      checkpointDir: dir,
      spec: TaskSpec.fromPartial({}),
    });
    const result = await migration;
    await restored.complete;
    expect(result.modeUsed).toBe(MigrationMode.MIGRATION_MODE_LAZY);
    // The images without memory are small next to the 64 MiB the task holds.
    expect(result.wireBytes).toBeLessThan(16 * 1024 * 1024);
    expect((await a.runtime.inspect('lazy')).record.phase).toBe('migrated');
    expect(await inNetns(a.net?.netnsPath ?? '', ['iptables', '-S'])).not.toContain('CRIU');

    const after = await eventually(() => ask(b));
    expect(after.intact).toBe(true);
    expect(after.count).toBeGreaterThanOrEqual(before.count);
    await b.runtime.stop('lazy-b', 'SIGKILL', 5000);
  });

  it('resumes the source when no lazy-pages daemon connects in time', async () => {
    await start(a, 'orphan');
    const before = await ask(a);
    await expect(
      a.migrator.migrate({
        taskId: 'orphan',
        peerAddress: `${b.net?.address ?? ''}:7450`,
        mode: MigrationMode.MIGRATION_MODE_LAZY,
        handoverKey: 'orphan-next',
      }),
    ).rejects.toMatchObject({ code: 'NC_LAZY_PAGES_TIMEOUT', context: { sourceRunning: true } });
    expect((await a.runtime.inspect('orphan')).record.phase).toBe('running');
    expect(await inNetns(a.net?.netnsPath ?? '', ['iptables', '-S'])).not.toContain('CRIU');
    const after = await eventually(() => ask(a));
    expect(after.intact).toBe(true);
    expect(after.count).toBeGreaterThanOrEqual(before.count);
    await a.runtime.stop('orphan', 'SIGKILL', 5000);
  });
});
