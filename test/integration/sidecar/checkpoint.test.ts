import { readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MigrationMode, TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { chooseMode } from '../../../sidecar/src/checkpoint/features';
import { imagesDir } from '../../../sidecar/src/checkpoint/manifest';
import type { DirectoryStagedCheckpoints } from '../../../sidecar/src/checkpoint/staging';
import type { HarnessNode } from './node-harness';
import { DirectoryShipper, eventually, identity, inNetns, makeNode, teardownNode } from './node-harness';
import { TestNetwork } from '../../harness/test-network';

// A counter in memory and a listening socket that answers with it: both must survive the move.
const SERVER = `
import socket, threading, time
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
    c.sendall(str(count).encode())
    c.close()
`;

const ASK = (address: string) => [
  '/usr/bin/python3',
  '-c',
  `import socket;s=socket.create_connection(('${address}',8080),timeout=3);print(s.recv(64).decode())`,
];

// Real runc and CRIU on a loaded 2-core machine: generous, never a performance assertion.
jest.setTimeout(300_000);

describe('checkpoint and restore across network namespaces (real runc + CRIU)', () => {
  let net: TestNetwork;
  let a: HarnessNode;
  let b: HarnessNode;
  const peers = new Map<string, DirectoryStagedCheckpoints>();
  const shipper = new DirectoryShipper(peers);

  beforeAll(async () => {
    net = TestNetwork.create(2);
    a = await makeNode('cpa', net.node(0), peers, shipper);
    b = await makeNode('cpb', net.node(1), peers, shipper);
  });

  afterAll(async () => {
    await teardownNode(a);
    await teardownNode(b);
    net?.destroy();
  });

  async function startServer(node: HarnessNode, taskId: string): Promise<string> {
    const alloc = await node.allocDir(taskId);
    await writeFile(join(alloc, 'server.py'), SERVER);
    await node.runtime.start(
      identity(taskId),
      TaskSpec.fromPartial({ argv: ['/usr/bin/python3', '/alloc/server.py'], allocDir: alloc }),
    );
    const netns = node.net?.netnsPath ?? '';
    await eventually(() => inNetns(netns, ASK(node.net?.address ?? '')));
    return alloc;
  }

  async function ask(from: HarnessNode, to: HarnessNode): Promise<number> {
    return Number((await inNetns(from.net?.netnsPath ?? '', ASK(to.net?.address ?? ''))).trim());
  }

  it('moves a task with a listening socket and in-memory counter to another namespace and /alloc dir', async () => {
    await startServer(a, 'mover');
    const before = await ask(b, a);
    const sourcePid = (await a.runtime.inspect('mover')).pid;

    const dumped = await a.dumper.dump({ taskId: 'mover', leaveRunning: false, handoverKey: 'mover-next' });
    expect((await a.runtime.inspect('mover')).record.phase).toBe('migrated');
    // The source process is gone and its address no longer answers.
    expect(() => process.kill(sourcePid, 0)).toThrow();
    await expect(ask(b, a)).rejects.toThrow();
    // CRIU's network lock must not outlive the dump in the source namespace.
    expect(await inNetns(a.net?.netnsPath ?? '', ['iptables', '-S'])).not.toContain('CRIU');
    expect(await inNetns(a.net?.netnsPath ?? '', ['ip6tables', '-S'])).not.toContain('CRIU');

    const allocB = await b.allocDir('moved');
    await writeFile(join(allocB, 'marker'), 'node-b');
    const { view } = await b.restorer.restore({
      identity: identity('moved'),
      checkpointDir: dumped.dir,
      spec: TaskSpec.fromPartial({ allocDir: allocB }),
    });
    expect(view.record.restoredFromCheckpoint).toBe(dumped.meta.checkpointId);
    const after = await eventually(() => ask(a, b));
    expect(after).toBeGreaterThanOrEqual(before);
    // The restored process sees node B's /alloc, not node A's.
    const marker = await b.runtime.exec('moved', ['/bin/cat', '/alloc/marker'], 20_000);
    expect(String(marker.stdout)).toBe('node-b');
    // And it keeps counting.
    await eventually(async () => {
      if (!((await ask(a, b)) > after)) throw new Error('counter stalled');
    });
    await b.runtime.stop('moved', 'SIGKILL', 5000);
  });

  it('migrates to a peer through the shipper and the peer restores it from its staging area', async () => {
    await startServer(a, 'shipped');
    const before = await ask(b, a);
    const result = await a.migrator.migrate({
      taskId: 'shipped',
      peerAddress: `${b.net?.address ?? ''}:7450`,
      mode: MigrationMode.MIGRATION_MODE_PRE_COPY,
      handoverKey: 'alloc-2/app',
    });
    // No soft-dirty tracking on this kernel: pre-copy must fall back, and say why.
    expect(b.features.preCopy).toBe(false);
    expect(result.modeUsed).toBe(MigrationMode.MIGRATION_MODE_STOP_AND_COPY);
    expect(result.fallbackReason).toContain('soft-dirty');
    expect(result.wireBytes).toBeGreaterThan(0);

    const staged = await b.staged.find('alloc-2/app', 0);
    expect(staged?.checkpointId).toBe(result.meta.checkpointId);
    const dir = join(b.root, 'restore-shipped');
    await b.staged.materialize(result.meta.checkpointId, dir);
    await b.restorer.restore({ identity: identity('shipped-2'), checkpointDir: dir, spec: TaskSpec.fromPartial({}) });
    expect(await eventually(() => ask(a, b))).toBeGreaterThanOrEqual(before);
    await b.runtime.stop('shipped-2', 'SIGKILL', 5000);
  });

  it('restores the task at home when shipping fails, so it keeps running', async () => {
    await startServer(a, 'rollback');
    const before = await ask(b, a);
    shipper.failNext = true;
    await expect(
      a.migrator.migrate({
        taskId: 'rollback',
        peerAddress: 'nowhere:1',
        mode: MigrationMode.MIGRATION_MODE_AUTO,
        handoverKey: 'x',
      }),
    ).rejects.toMatchObject({ code: 'NC_TEST_PEER_UNREACHABLE' });
    const view = await a.runtime.inspect('rollback');
    expect(view.record.phase).toBe('running');
    expect(await eventually(() => ask(b, a))).toBeGreaterThanOrEqual(before);
    await a.runtime.stop('rollback', 'SIGKILL', 5000);
  });

  it('takes a background checkpoint without stopping the task', async () => {
    await startServer(a, 'background');
    const dumped = await a.dumper.dump({ taskId: 'background', leaveRunning: true, handoverKey: 'bg' });
    expect(dumped.meta.files.length).toBeGreaterThan(0);
    expect((await a.runtime.inspect('background')).record.phase).toBe('running');
    await eventually(() => ask(b, a));
    expect(await inNetns(a.net?.netnsPath ?? '', ['iptables', '-S'])).not.toContain('CRIU');
    await a.runtime.stop('background', 'SIGKILL', 5000);
  });

  it('refuses truncated and corrupt images with coded errors, restores nothing, and the checkpoint stays restorable', async () => {
    await startServer(a, 'victim');
    const dumped = await a.dumper.dump({ taskId: 'victim', leaveRunning: true, handoverKey: 'v' });
    const pages = (await readdir(imagesDir(dumped.dir))).find((f) => f.startsWith('pages-'));
    expect(pages).toBeDefined();
    const pagesPath = join(imagesDir(dumped.dir), pages ?? '');
    const original = await readFile(pagesPath);

    await truncate(pagesPath, Math.floor(original.length / 2));
    await expect(
      b.restorer.restore({ identity: identity('victim-t'), checkpointDir: dumped.dir, spec: TaskSpec.fromPartial({}) }),
    ).rejects.toMatchObject({ code: 'NC_CHECKPOINT_TRUNCATED' });

    const corrupt = Buffer.from(original);
    corrupt[100] = (corrupt[100] ?? 0) ^ 0xff;
    await writeFile(pagesPath, corrupt);
    await expect(
      b.restorer.restore({ identity: identity('victim-c'), checkpointDir: dumped.dir, spec: TaskSpec.fromPartial({}) }),
    ).rejects.toMatchObject({ code: 'NC_CHECKPOINT_CORRUPT' });
    await expect(b.runtime.inspect('victim-c')).rejects.toMatchObject({ code: 'NC_TASK_NOT_FOUND' });
    // The source never stopped.
    expect((await a.runtime.inspect('victim')).record.phase).toBe('running');
    await eventually(() => ask(b, a));

    // Images that pass the manifest but that CRIU cannot use fail the restore itself, cleanly.
    const inventory = join(dumped.dir, 'checkpoint.json');
    const meta = JSON.parse(await readFile(inventory, 'utf8')) as {
      files: { path: string; sizeBytes: number; sha256: string }[];
    };
    await writeFile(pagesPath, original);
    await writeFile(join(imagesDir(dumped.dir), 'inventory.img'), Buffer.alloc(16, 7));
    const { createHash } = await import('node:crypto');
    for (const f of meta.files) {
      if (f.path === 'inventory.img') {
        f.sizeBytes = 16;
        f.sha256 = createHash('sha256').update(Buffer.alloc(16, 7)).digest('hex');
      }
    }
    await writeFile(inventory, JSON.stringify(meta));
    await expect(
      b.restorer.restore({ identity: identity('victim-i'), checkpointDir: dumped.dir, spec: TaskSpec.fromPartial({}) }),
    ).rejects.toMatchObject({ code: 'NC_RESTORE_FAILED' });
    await expect(b.runtime.inspect('victim-i')).rejects.toMatchObject({ code: 'NC_TASK_NOT_FOUND' });
    expect((await a.runtime.inspect('victim')).record.phase).toBe('running');
    await a.runtime.stop('victim', 'SIGKILL', 5000);
  });

  it('chooses modes from the probed features', () => {
    // What this machine offers user-namespaced tasks, probed for real: userfaultfd works, but their restorer
    // may not open one unprivileged (vm.unprivileged_userfaultfd = 0) nor raise RLIMIT_NOFILE (no
    // CAP_SYS_RESOURCE), so a lazy request falls back to stop-and-copy and says why.
    expect(a.features.lazyPages).toBe(false);
    expect(chooseMode(MigrationMode.MIGRATION_MODE_LAZY, a.features)).toEqual({
      mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
      fallbackReason: expect.stringMatching(/unprivileged_userfaultfd|CAP_SYS_RESOURCE/) as unknown,
    });
    expect(chooseMode(MigrationMode.MIGRATION_MODE_AUTO, a.features).mode).toBe(
      MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
    );
  });
});
