import { execFileSync } from 'node:child_process';
import { cp, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Server } from '@grpc/grpc-js';
import { SystemClock } from '../../../common/clock';
import { shutdownServer } from '../../../common/grpc/server';
import { GrpcSidecarApi } from '../../../common/sidecar-api/grpc-sidecar-api';
import { TaskSpec, TaskState } from '../../../proto/gen/chain/v1/sidecar';
import { readMeta } from '../../../sidecar/src/checkpoint/manifest';
import type { DirectoryStagedCheckpoints } from '../../../sidecar/src/checkpoint/staging';
import { LocalApi } from '../../../sidecar/src/local-api/local-api';
import { serveLocalApi } from '../../../sidecar/src/local-api/server';
import { fuzzLocalApi, honestFeatures } from '../../harness/fuzz/local-api-fuzz';
import type { HarnessNode } from './node-harness';
import { RUNC_BIN, identity, log, makeNode, teardownNode } from './node-harness';
import { TestNetwork } from '../../harness/test-network';

// Hostile and malformed input on the sidecar's local API (issue #13): the real LocalApi, runtime, runc and
// CRIU behind the real unix-socket server. A fixed seed, so a failure reproduces with
// `npm run fuzz -- -target local-api -seed 13 -iterations 1500`.
const SEED = 13;
const TICKER = ['/usr/bin/python3', '-c', 'import time\nwhile True: time.sleep(0.2)'];

jest.setTimeout(600_000);

describe('local API under hostile input (real server on a unix socket, real runc + CRIU)', () => {
  let net: TestNetwork;
  let node: HarnessNode;
  let server: Server;
  let socket: string;
  let api: GrpcSidecarApi;

  beforeAll(async () => {
    net = TestNetwork.create(1);
    node = await makeNode('hostile', net.node(0), new Map<string, DirectoryStagedCheckpoints>());
    const local = new LocalApi(
      {
        nodeName: 'hostile',
        transferAddress: `${net.node(0).address}:7450`,
        restoreDir: join(node.root, 'restore'),
        defaultStopTimeoutMs: 2000,
      },
      { ...node, features: () => node.features, clock: new SystemClock(), log },
    );
    socket = join(node.root, 'sidecar.sock');
    server = await serveLocalApi(local, socket);
    api = new GrpcSidecarApi({ socketPath: socket, timeoutMs: 60_000 });
  });

  afterAll(async () => {
    api?.close();
    if (server) await shutdownServer(server, 1000);
    await teardownNode(node);
    net?.destroy();
  });

  /** Containers runc itself lists as running under this node's root: the truth, not the sidecar's view. */
  const runningContainers = (): string[] =>
    (
      JSON.parse(
        execFileSync(RUNC_BIN, ['--root', join(node.root, 'runc'), 'list', '--format', 'json']).toString() || '[]',
      ) as { id: string; status: string }[] | null
    )
      ?.filter((c) => c.status === 'running')
      .map((c) => c.id) ?? [];

  it('answers random and mutated messages on every RPC with success or a coded refusal, then serves honest calls', async () => {
    const sandbox = join(node.root, 'fuzz-sandbox');
    await mkdir(sandbox, { recursive: true });
    const dataDirs = ['staged', 'retained', 'runc', 'tasks'].map((d) => join(node.root, d));
    for (const dir of dataDirs) await mkdir(dir, { recursive: true });
    const survivors = [socket, ...dataDirs];
    const tally = await fuzzLocalApi({ iterations: 1500, seed: SEED, socketPath: socket, sandbox, survivors });
    expect(tally.defects).toEqual([]);
    const outcomes = Object.keys(tally.summary());
    for (const code of ['NC_TASK_NOT_FOUND', 'NC_TASK_SPEC_INVALID', 'NC_CHECKPOINT_NOT_FOUND'])
      expect(outcomes).toContain(`refused ${code}`);
    expect(outcomes.some((o) => o.startsWith('undecodable'))).toBe(true);
    expect(outcomes.some((o) => o.startsWith('honest Features after fuzzing'))).toBe(true);
    // Nothing the fuzzer sent left a task running.
    expect(runningContainers()).toEqual([]);

    const started = await api.startTask({
      identity: identity('after-fuzz'),
      spec: TaskSpec.fromPartial({ argv: TICKER }),
    });
    expect(started.state).toBe(TaskState.TASK_STATE_RUNNING);
    await api.destroyTask({ taskId: 'after-fuzz', force: true });
  });

  it('refuses a message over the receive limit with RESOURCE_EXHAUSTED and keeps serving', async () => {
    const huge = {
      identity: identity('huge'),
      spec: TaskSpec.fromPartial({ argv: ['/bin/true', 'x'.repeat(5 * 1024 * 1024)] }),
    };
    await expect(api.startTask(huge)).rejects.toMatchObject({ grpcCode: 8 });
    expect((await api.listTasks()).map((t) => t.identity?.taskId)).not.toContain('huge');
    expect((await honestFeatures(socket)).healthy).toBe(true);
  });

  it('refuses a replayed hand-over: the same checkpoint staged again is not restored a second time', async () => {
    await api.startTask({ identity: identity('replay-src'), spec: TaskSpec.fromPartial({ argv: TICKER }) });
    const checkpoint = await api.checkpoint({ taskId: 'replay-src', leaveRunning: false, handoverKey: 'replay/app' });
    // What a replayed push would bring back: a byte-for-byte copy of the staged checkpoint.
    const copy = join(node.root, 'replayed');
    await node.staged.materialize(checkpoint.checkpointId, join(node.root, 'replay-link'));
    await cp(join(node.root, 'replay-link'), copy, { recursive: true });
    await rm(join(node.root, 'replay-link'), { recursive: true, force: true });

    const restored = await api.restoreTask({
      identity: identity('replay-dst'),
      checkpointId: checkpoint.checkpointId,
      spec: TaskSpec.fromPartial({}),
    });
    expect(restored.state).toBe(TaskState.TASK_STATE_RUNNING);
    // The same restore asked again: the checkpoint is spent.
    await expect(
      api.restoreTask({
        identity: identity('replay-again'),
        checkpointId: checkpoint.checkpointId,
        spec: TaskSpec.fromPartial({}),
      }),
    ).rejects.toMatchObject({ code: 'NC_CHECKPOINT_NOT_FOUND' });
    // The same hand-over delivered again, then restored: refused by the restorer's at-most-once rule.
    await node.staged.adopt(copy, await readMeta(copy));
    await expect(
      api.restoreTask({
        identity: identity('replay-twice'),
        checkpointId: checkpoint.checkpointId,
        spec: TaskSpec.fromPartial({}),
      }),
    ).rejects.toMatchObject({ code: 'NC_CHECKPOINT_ALREADY_RESTORED' });

    const running = (await api.listTasks()).filter((t) => t.state === TaskState.TASK_STATE_RUNNING);
    expect(running.map((t) => t.identity?.taskId)).toEqual(['replay-dst']);
    expect(runningContainers()).toHaveLength(1);
    await api.destroyTask({ taskId: 'replay-dst', force: true });
  });
});
