import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LocalCluster } from '../../../common/local-cluster/cluster';
import { GrpcSidecarApi } from '../../../common/sidecar-api/grpc-sidecar-api';
import { TaskState } from '../../../proto/gen/chain/v1/sidecar';
import { backgroundKey } from '../../../sidecar/src/background/background-checkpointer';
import { EXAMPLE_SERVICE } from '../../../sidecar/src/controller/local-mode';
import { taskSpecFor } from '../../../sidecar/src/controller/service-definition';

async function counter(address: string): Promise<number> {
  const res = await fetch(`http://${address}:${EXAMPLE_SERVICE.port}/counter`);
  return ((await res.json()) as { counter: number }).counter;
}

function prepareTaskDir(dataDir: string, taskId: string): string {
  const dir = join(dataDir, 'allocs', taskId);
  for (const sub of ['alloc', 'local', 'secrets']) mkdirSync(join(dir, sub), { recursive: true });
  for (const [hostPath, name] of Object.entries(EXAMPLE_SERVICE.localFiles))
    copyFileSync(hostPath, join(dir, 'local', name));
  return dir;
}

async function eventually<T>(fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('incremental background checkpoints to a buddy (issue #4)', () => {
  let cluster: LocalCluster;
  const apis: GrpcSidecarApi[] = [];

  afterAll(async () => {
    for (const api of apis) api.close();
    await cluster?.down(true);
  });

  it('a node that vanishes without warning loses at most one interval: the buddy restores its task', async () => {
    cluster = await LocalCluster.up({ nodes: 2 });
    const [a, b] = cluster.nodes;
    if (a === undefined || b === undefined) throw new Error('need two nodes');
    const bApi = new GrpcSidecarApi({ socketPath: b.localSocket, timeoutMs: 30_000 });
    apis.push(bApi);
    const buddy = (await bApi.features()).transferAddress;
    // Node a's sidecar checkpoints its tasks to node b every 2 s.
    await cluster.killNode(a.name);
    await cluster.restartNode(a.name, {
      sidecarEnv: { NOMAD_CHAIN_BACKGROUND_INTERVAL: '2s', NOMAD_CHAIN_BACKGROUND_BUDDY: buddy },
    });
    const aApi = new GrpcSidecarApi({ socketPath: a.localSocket, timeoutMs: 30_000 });
    apis.push(aApi);

    const taskId = 'kv-on-a';
    const identity = { taskId, allocId: taskId, taskName: 'kv', jobId: 'kv', namespace: 'test' };
    await aApi.startTask({
      identity,
      spec: taskSpecFor(EXAMPLE_SERVICE, prepareTaskDir(a.dataDir, taskId), a.netnsPath),
    });
    await eventually(() => counter(a.address), 30_000);
    expect(await counter(a.address)).toBe(2);
    expect(await counter(a.address)).toBe(3);

    const first = await eventually(async () => {
      const found = await bApi.findCheckpoint({ handoverKey: backgroundKey(taskId), waitMs: 0 });
      return found.found && found.checkpoint !== undefined && found.checkpoint.createdAtUnixMs > 0
        ? found.checkpoint
        : undefined;
    }, 60_000);
    expect(first.sourceNode).toBe(a.name);
    // The task kept running through its background checkpoints.
    expect((await aApi.inspectTask(taskId)).state).toBe(TaskState.TASK_STATE_RUNNING);
    const beforeLoss = await counter(a.address);

    await cluster.killNode(a.name);
    await expect(counter(a.address)).rejects.toThrow();

    const newest = await bApi.findCheckpoint({ handoverKey: backgroundKey(taskId), waitMs: 0 });
    if (newest.checkpoint === undefined) throw new Error('buddy lost the checkpoint');
    const restoredId = 'kv-on-b';
    await bApi.restoreTask({
      identity: { ...identity, taskId: restoredId, allocId: restoredId },
      checkpointId: newest.checkpoint.checkpointId,
      spec: taskSpecFor(EXAMPLE_SERVICE, prepareTaskDir(b.dataDir, restoredId), b.netnsPath),
    });
    const resumed = await eventually(() => counter(b.address), 30_000);
    // A cold start would answer 1. The restored copy continues from its last checkpoint: at most one interval lost.
    expect(resumed).toBeGreaterThanOrEqual(4);
    expect(resumed).toBeLessThanOrEqual(beforeLoss + 1);
  });
});
