import { status } from '@grpc/grpc-js';
import type { Server } from '@grpc/grpc-js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SystemClock } from '../../../common/clock';
import { shutdownServer } from '../../../common/grpc/server';
import type { SidecarClient } from '../../../proto/gen/chain/v1/sidecar';
import { TaskSpec, TaskState } from '../../../proto/gen/chain/v1/sidecar';
import type { DirectoryStagedCheckpoints } from '../../../sidecar/src/checkpoint/staging';
import { LocalApi } from '../../../sidecar/src/local-api/local-api';
import { serveLocalApi } from '../../../sidecar/src/local-api/server';
import { call, codeOf, localClient } from './grpc-client';
import type { HarnessNode } from './node-harness';
import { eventually, identity, inNetns, log, makeNode, teardownNode } from './node-harness';
import { TestNetwork } from '../../harness/test-network';

const SERVER = `
import socket, threading, time
count = 0
def tick():
    global count
    while True:
        count += 1
        time.sleep(0.05)
threading.Thread(target=tick, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(str(count).encode()); c.close()
`;

// Real runc and CRIU on a loaded 2-core machine: generous, never a performance assertion.
jest.setTimeout(300_000);

describe('local API over a unix socket (grpc-js, real runc + CRIU)', () => {
  let net: TestNetwork;
  let node: HarnessNode;
  let server: Server;
  let client: SidecarClient;

  beforeAll(async () => {
    net = TestNetwork.create(1);
    node = await makeNode('api', net.node(0), new Map<string, DirectoryStagedCheckpoints>());
    const api = new LocalApi(
      {
        nodeName: 'api',
        transferAddress: `${net.node(0).address}:7450`,
        restoreDir: join(node.root, 'restore'),
        defaultStopTimeoutMs: 2000,
      },
      { ...node, features: () => node.features, clock: new SystemClock(), log },
    );
    const socket = join(node.root, 'sidecar.sock');
    server = await serveLocalApi(api, socket);
    client = localClient(socket);
  });

  afterAll(async () => {
    client?.close();
    if (server) await shutdownServer(server, 1000);
    await teardownNode(node);
    net?.destroy();
  });

  const ask = () =>
    inNetns(net.node(0).netnsPath, [
      '/usr/bin/python3',
      '-c',
      `import socket;s=socket.create_connection(('${net.node(0).address}',8080),timeout=3);print(s.recv(64).decode())`,
    ]).then((out) => Number(out.trim()));

  it('round-trips start, inspect, stats, exec, checkpoint, find, restore and stop', async () => {
    const features = await call(client.features.bind(client), {});
    // Its tasks run in their own user namespace, which this machine cannot restore lazily (no unprivileged
    // userfaultfd, no CAP_SYS_RESOURCE): the probe says so.
    expect(features).toMatchObject({ healthy: true, nodeName: 'api', preCopy: false, lazyPages: false });
    expect(features.criuVersion).toMatch(/^4\.\d/);

    const alloc = await node.allocDir('api-task');
    await writeFile(join(alloc, 'server.py'), SERVER);
    const started = await call(client.startTask.bind(client), {
      identity: identity('api-task'),
      spec: TaskSpec.fromPartial({ argv: ['/usr/bin/python3', '/alloc/server.py'], allocDir: alloc }),
    });
    expect(started.state).toBe(TaskState.TASK_STATE_RUNNING);
    expect(started.pid).toBeGreaterThan(0);
    const inspected = await call(client.inspectTask.bind(client), { taskId: 'api-task' });
    expect(inspected).toMatchObject({ state: TaskState.TASK_STATE_RUNNING, pid: started.pid, nodeName: 'api' });
    const stats = await call(client.taskStats.bind(client), { taskId: 'api-task' });
    expect(stats.pids).toContain(started.pid);
    const exec = await call(client.execTask.bind(client), {
      taskId: 'api-task',
      argv: ['/bin/ls', '/alloc'],
      timeoutMs: 20_000,
    });
    expect(String(exec.stdout)).toContain('server.py');
    const before = await eventually(ask);

    const checkpoint = await call(client.checkpoint.bind(client), {
      taskId: 'api-task',
      leaveRunning: false,
      handoverKey: 'next-alloc/app',
    });
    expect(checkpoint).toMatchObject({ handoverKey: 'next-alloc/app', sourceNode: 'api' });
    expect(checkpoint.manifestDigest).toMatch(/^[0-9a-f]{64}$/);
    expect((await call(client.inspectTask.bind(client), { taskId: 'api-task' })).state).toBe(
      TaskState.TASK_STATE_MIGRATED,
    );

    const found = await call(client.findCheckpoint.bind(client), { handoverKey: 'next-alloc/app', waitMs: 0 });
    expect(found.found).toBe(true);
    expect(found.checkpoint?.checkpointId).toBe(checkpoint.checkpointId);
    const listed = await call(client.listCheckpoints.bind(client), {});
    expect(listed.checkpoints.map((c) => c.checkpointId)).toContain(checkpoint.checkpointId);

    const restored = await call(client.restoreTask.bind(client), {
      identity: identity('api-task-2'),
      checkpointId: checkpoint.checkpointId,
      spec: TaskSpec.fromPartial({ allocDir: await node.allocDir('api-task-2') }),
    });
    expect(restored).toMatchObject({
      state: TaskState.TASK_STATE_RUNNING,
      restoredFromCheckpoint: checkpoint.checkpointId,
    });
    expect(await eventually(ask)).toBeGreaterThanOrEqual(before);

    // Restored at most once: the staged checkpoint is gone.
    expect((await call(client.findCheckpoint.bind(client), { handoverKey: 'next-alloc/app', waitMs: 0 })).found).toBe(
      false,
    );
    const again = call(client.restoreTask.bind(client), {
      identity: identity('api-task-3'),
      checkpointId: checkpoint.checkpointId,
      spec: TaskSpec.fromPartial({}),
    });
    await expect(again).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(codeOf(await again.catch((e: unknown) => e))).toBe('NC_CHECKPOINT_NOT_FOUND');

    const stopped = await call(client.stopTask.bind(client), {
      taskId: 'api-task-2',
      signal: 'SIGKILL',
      timeoutMs: 5000,
    });
    expect(stopped.state).toBe(TaskState.TASK_STATE_EXITED);
    expect(stopped.exit?.signal).toBe(9);
    const waited = await call(client.waitTask.bind(client), { taskId: 'api-task-2' });
    expect(waited.exit?.exitCode).toBe(137);
    const tasks = await call(client.listTasks.bind(client), {});
    expect(tasks.tasks.map((t) => t.identity?.taskId).sort()).toEqual(['api-task', 'api-task-2']);
    const destroyed = await call(client.destroyTask.bind(client), { taskId: 'api-task-2', force: false });
    expect(destroyed.identity?.taskId).toBe('api-task-2');
  });

  it('waits a bounded time for a checkpoint that never comes', async () => {
    const started = Date.now();
    const res = await call(client.findCheckpoint.bind(client), { handoverKey: 'never', waitMs: 300 });
    expect(res.found).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('maps errors to gRPC status with the stable code in metadata', async () => {
    const missing = await call(client.inspectTask.bind(client), { taskId: 'nobody' }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: status.NOT_FOUND });
    expect(codeOf(missing)).toBe('NC_TASK_NOT_FOUND');
    const invalid = await call(client.startTask.bind(client), { identity: identity('x'), spec: undefined }).catch(
      (e: unknown) => e,
    );
    expect(invalid).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(codeOf(invalid)).toBe('NC_TASK_SPEC_INVALID');
  });
});
