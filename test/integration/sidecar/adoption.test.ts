import type { ChildProcess } from 'node:child_process';
import { execFileSync, spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { SidecarClient } from '../../../proto/gen/chain/v1/sidecar';
import { TaskSpec, TaskState } from '../../../proto/gen/chain/v1/sidecar';
import { call, localClient } from './grpc-client';
import { CRIU_BIN, RUNC_BIN, deleteAllContainers, eventually, identity, removeCgroupParent } from './node-harness';
import { TestNetwork } from '../../harness/test-network';

const REPO = resolve(__dirname, '..', '..', '..');

// Real runc and CRIU on a loaded 2-core machine: generous, never a performance assertion.
jest.setTimeout(300_000);

describe('sidecar restart adopts running containers (real sidecar process)', () => {
  let net: TestNetwork;
  let dataDir: string;
  let sidecar: ChildProcess | undefined;
  let client: SidecarClient | undefined;
  const cgroupParent = (): string => `/a1-test/adopter-${dataDir.slice(-6)}`;

  function startSidecar(): { child: ChildProcess; socket: string } {
    const socket = join(dataDir, 'sidecar.sock');
    const child = spawn(process.execPath, ['-r', './scripts/register.js', 'sidecar/src/main.ts'], {
      cwd: REPO,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        ...process.env,
        NOMAD_CHAIN_NODE_NAME: 'adopter',
        NOMAD_CHAIN_DATA_DIR: dataDir,
        NOMAD_CHAIN_LOCAL_SOCKET: socket,
        NOMAD_CHAIN_LISTEN_ADDRESS: '127.0.0.1',
        NOMAD_CHAIN_LISTEN_PORT: '0',
        NOMAD_CHAIN_TASK_NETNS: net.node(0).netnsPath,
        NOMAD_CHAIN_CGROUP_PARENT: cgroupParent(),
        NOMAD_CHAIN_LOG_LEVEL: 'warn',
        RUNC_BIN,
        CRIU_BIN,
      },
    });
    return { child, socket };
  }

  async function connect(socket: string): Promise<SidecarClient> {
    const c = localClient(socket);
    await eventually(() => call(c.features.bind(c), {}), 60_000, 200);
    return c;
  }

  beforeAll(async () => {
    net = TestNetwork.create(1);
    dataDir = await mkdtemp(join(tmpdir(), 'a1-adopt-'));
    // mkdtemp makes it 0700; the sidecar refuses a data dir its tasks' user namespace cannot search.
    await chmod(dataDir, 0o711);
  });

  afterAll(async () => {
    if (client) {
      await call(client.destroyTask.bind(client), { taskId: 'survivor', force: true }).catch(() => undefined);
      client.close();
    }
    sidecar?.kill('SIGKILL');
    deleteAllContainers(join(dataDir, 'runc'));
    await removeCgroupParent(cgroupParent());
    net?.destroy();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps the task running while the sidecar is dead and controls it again after restart', async () => {
    const first = startSidecar();
    sidecar = first.child;
    client = await connect(first.socket);
    const started = await call(client.startTask.bind(client), {
      identity: identity('survivor'),
      spec: TaskSpec.fromPartial({
        argv: [
          '/bin/sh',
          '-c',
          'trap "exit 5" TERM; i=0; while true; do i=$((i+1)); echo $i; sleep 0.1 & wait $!; done',
        ],
        stdoutPath: join(dataDir, 'survivor.out'),
      }),
    });
    expect(started.pid).toBeGreaterThan(0);

    // The sidecar dies hard: no chance to clean anything up.
    client.close();
    client = undefined;
    const exited = new Promise((r) => first.child.once('exit', r));
    first.child.kill('SIGKILL');
    await exited;
    const linesAtDeath = (await readFile(join(dataDir, 'survivor.out'), 'utf8')).split('\n').length;
    expect(() => process.kill(started.pid, 0)).not.toThrow();
    // Its output keeps flowing into the log without a sidecar.
    await eventually(async () => {
      const lines = (await readFile(join(dataDir, 'survivor.out'), 'utf8')).split('\n').length;
      if (!(lines > linesAtDeath + 3)) throw new Error('log stalled');
    });

    const second = startSidecar();
    sidecar = second.child;
    client = await connect(second.socket);
    const adopted = await call(client.inspectTask.bind(client), { taskId: 'survivor' });
    expect(adopted).toMatchObject({
      state: TaskState.TASK_STATE_RUNNING,
      pid: started.pid,
      startedAtUnixMs: started.startedAtUnixMs,
    });
    const stats = await call(client.taskStats.bind(client), { taskId: 'survivor' });
    expect(stats.pids).toContain(started.pid);

    const stopped = await call(client.stopTask.bind(client), {
      taskId: 'survivor',
      signal: 'SIGTERM',
      timeoutMs: 10_000,
    });
    expect(stopped.state).toBe(TaskState.TASK_STATE_EXITED);
    expect(stopped.exit?.exitCode).toBe(5);
  });

  it('thaws a task that a dump left frozen when its sidecar died', async () => {
    client?.close();
    sidecar?.kill('SIGKILL');
    const first = startSidecar();
    sidecar = first.child;
    client = await connect(first.socket);
    await call(client.startTask.bind(client), {
      identity: identity('frozen'),
      spec: TaskSpec.fromPartial({
        argv: ['/bin/sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1 & wait $!; done'],
        stdoutPath: join(dataDir, 'frozen.out'),
      }),
    });
    client.close();
    client = undefined;
    const exited = new Promise((r) => first.child.once('exit', r));
    first.child.kill('SIGKILL');
    await exited;
    // What a dump's freeze leaves when its sidecar is killed mid-dump: the container paused, nobody to thaw it.
    const runcRoot = join(dataDir, 'runc');
    const ids = execFileSync(RUNC_BIN, ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8' }).trim().split('\n');
    const frozen = ids.find((id) => id.includes('frozen'));
    expect(frozen).toBeDefined();
    execFileSync(RUNC_BIN, ['--root', runcRoot, 'pause', frozen ?? '']);
    const linesFrozen = (await readFile(join(dataDir, 'frozen.out'), 'utf8')).split('\n').length;

    const second = startSidecar();
    sidecar = second.child;
    client = await connect(second.socket);
    await eventually(async () => {
      const lines = (await readFile(join(dataDir, 'frozen.out'), 'utf8')).split('\n').length;
      if (!(lines > linesFrozen + 3)) throw new Error('still frozen');
    });
    const status = JSON.parse(
      execFileSync(RUNC_BIN, ['--root', runcRoot, 'state', frozen ?? ''], { encoding: 'utf8' }),
    ) as { status: string };
    expect(status.status).toBe('running');
    await call(client.destroyTask.bind(client), { taskId: 'frozen', force: true });
  });
});
