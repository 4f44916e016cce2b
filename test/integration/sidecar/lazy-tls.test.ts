import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LocalCluster } from '../../../local/cluster/cluster';
import { GrpcSidecarApi } from '../../../common/sidecar-api/grpc-sidecar-api';
import { MigrationMode, TaskState } from '../../../proto/gen/chain/v1/sidecar';
import { EXAMPLE_SERVICE } from '../../../local/local-mode';
import { taskSpecFor } from '../../../local/controller/service-definition';
import { eventually } from '../../harness/eventually';
import { kvCounter, prepareKvTaskDir } from '../../harness/kv-task';

function criuOptionFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return criuOptionFiles(path);
    return entry.name === 'criu.conf' ? [path] : [];
  });
}

describe('lazy (post-copy) migration with an authenticated, encrypted page stream (issue #4)', () => {
  let cluster: LocalCluster;
  const apis: GrpcSidecarApi[] = [];

  afterAll(async () => {
    for (const api of apis) api.close();
    await cluster?.down(process.env.NC_KEEP_RUN_DIR === undefined);
  });

  it("serves the source's pages over CRIU's mutual TLS, with the cluster's node certificates", async () => {
    // Lazy restore of a user-namespaced task needs vm.unprivileged_userfaultfd = 1 and CAP_SYS_RESOURCE, which
    // this machine lacks (the sidecar's probe says so): these tasks run in the node's user namespace.
    cluster = await LocalCluster.up({ nodes: 2, sidecarEnv: { NOMAD_CHAIN_USER_NAMESPACE: 'off' } });
    const [a, b] = cluster.nodes;
    if (a === undefined || b === undefined) throw new Error('need two nodes');
    const aApi = new GrpcSidecarApi({ socketPath: a.localSocket, timeoutMs: 30_000 });
    const bApi = new GrpcSidecarApi({ socketPath: b.localSocket, timeoutMs: 30_000 });
    apis.push(aApi, bApi);
    expect((await aApi.features()).lazyPages).toBe(true);

    const taskId = 'kv-lazy';
    const identity = { taskId, allocId: taskId, taskName: 'kv', jobId: 'kv', namespace: 'test' };
    const sourceDir = prepareKvTaskDir(a.dataDir, taskId);
    await aApi.startTask({ identity, spec: taskSpecFor(EXAMPLE_SERVICE, sourceDir, a.netnsPath) });
    await eventually(() => kvCounter(a.address), 30_000);
    expect(await kvCounter(a.address)).toBe(2);

    const handoverKey = 'kv-lazy-2/kv';
    // Post-copy: the source stays frozen serving pages until the target's restore pulls them, so the restore
    // starts while the source's MigrateToPeer is still under way.
    const migration = aApi.migrateToPeer({
      taskId,
      peerAddress: (await bApi.features()).transferAddress,
      mode: MigrationMode.MIGRATION_MODE_LAZY,
      handoverKey,
    });
    const staged = await bApi.findCheckpoint({ handoverKey, waitMs: 30_000 });
    if (staged.checkpoint === undefined) throw new Error('no checkpoint arrived');
    const restoredId = 'kv-lazy-2';
    await bApi.restoreTask({
      identity: { ...identity, taskId: restoredId, allocId: restoredId },
      checkpointId: staged.checkpoint.checkpointId,
      spec: taskSpecFor(EXAMPLE_SERVICE, prepareKvTaskDir(b.dataDir, restoredId), b.netnsPath),
    });
    expect((await migration).modeUsed).toBe(MigrationMode.MIGRATION_MODE_LAZY);
    expect(await eventually(() => kvCounter(b.address), 30_000)).toBe(3);
    expect((await bApi.inspectTask(restoredId)).state).toBe(TaskState.TASK_STATE_RUNNING);

    // The source's page server took TLS from the task's CRIU options; the daemon on b had to complete the
    // handshake with its own node certificate for a single page to arrive.
    const [optionsFile] = criuOptionFiles(join(a.dataDir, 'tasks'));
    if (optionsFile === undefined) throw new Error('the source task has no CRIU options file');
    const options = readFileSync(optionsFile, 'utf8').split('\n');
    expect(options).toEqual(
      expect.arrayContaining([
        'tls',
        expect.stringMatching(/^tls-cacert \/.*ca\.crt$/),
        expect.stringMatching(/^tls-cert \/.*node1\.crt$/),
      ]),
    );
  });
});
