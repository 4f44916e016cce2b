import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBinary } from '../../../common/binaries';
import { run } from '../../../common/exec';
import { LocalCluster } from '../../../local/cluster/cluster';

/** Each connection gets the next value of a counter that lives only in the process's memory. */
const COUNTER_SERVER = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
counter = 0
while True:
    c, _ = s.accept()
    counter += 1
    c.sendall(str(counter).encode())
    c.close()
`;

function readCounter(address: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, address);
    let data = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    socket.on('data', (d: Buffer) => (data += d.toString()));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}

async function untilAnswers(address: string, port: number): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return await readCounter(address, port);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function running(pid: number): boolean {
  if (!existsSync(`/proc/${pid}/stat`)) return false;
  const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
  return state !== 'Z' && state !== 'X';
}

describe('CRIU dump and restore of a process tree in its own pid namespace (issue #3)', () => {
  let cluster: LocalCluster;
  let images: string;
  const pids: number[] = [];

  beforeAll(async () => {
    cluster = await LocalCluster.up({ nodes: 1 });
    images = mkdtempSync(join(tmpdir(), 'nc-criu-test-'));
  });

  afterAll(async () => {
    for (const pid of pids) if (running(pid)) process.kill(pid, 'SIGKILL');
    await cluster?.down(true);
    rmSync(images, { recursive: true, force: true });
  });

  it('restores a listening TCP socket and an in-memory counter; the old process is gone', async () => {
    const node = cluster.nodes[0];
    if (node === undefined) throw new Error('no node');
    const criu = resolveBinary('criu');
    const nsenter = [resolveBinary('nsenter'), `--net=${node.netnsPath}`, '--'];

    // stdio to /dev/null: a pipe to a process outside the tree would be an external resource for CRIU.
    const launcher = spawn(
      nsenter[0] ?? 'nsenter',
      [
        ...nsenter.slice(1),
        'unshare',
        '--pid',
        '--fork',
        'setsid',
        'python3',
        '-c',
        COUNTER_SERVER,
        node.address,
        '9000',
      ],
      {
        stdio: 'ignore',
      },
    );
    pids.push(launcher.pid ?? 0);
    expect(await untilAnswers(node.address, 9000)).toBe('1');
    expect(await readCounter(node.address, 9000)).toBe('2');
    expect(await readCounter(node.address, 9000)).toBe('3');

    const children = readFileSync(`/proc/${launcher.pid}/task/${launcher.pid}/children`, 'utf8').trim().split(/\s+/);
    const init = Number(children[0]);
    expect(init).toBeGreaterThan(0);
    expect(readFileSync(`/proc/${init}/status`, 'utf8')).toMatch(/^NSpid:\s+\d+\s+1$/m);

    const launcherExit = new Promise<void>((resolve) => launcher.on('exit', () => resolve()));
    await run([...nsenter, criu, 'dump', '-t', String(init), '-D', images, '-o', 'dump.log', '-v4']);
    await launcherExit;
    expect(running(init)).toBe(false);
    await expect(readCounter(node.address, 9000)).rejects.toThrow();

    await run([
      ...nsenter,
      criu,
      'restore',
      '-D',
      images,
      '-o',
      'restore.log',
      '-v4',
      '-d',
      '--pidfile',
      join(images, 'restored.pid'),
    ]);
    const restored = Number(readFileSync(join(images, 'restored.pid'), 'utf8'));
    pids.push(restored);
    expect(running(restored)).toBe(true);
    expect(await readCounter(node.address, 9000)).toBe('4');
    expect(await readCounter(node.address, 9000)).toBe('5');
  });
});
