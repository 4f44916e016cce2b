import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MigrationMode, type TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import type { MigrateResult } from '../../../sidecar/src/checkpoint/migrate-to-peer';
import type { DirectoryStagedCheckpoints } from '../../../sidecar/src/checkpoint/staging';
import { identity, makeNode, teardownNode, type HarnessNode } from '../../harness/sidecar-node';
import { TestNetwork } from '../../harness/test-network';

export * from '../../harness/sidecar-node';

/** Nodes A and B of one describe block: built before its first test, torn down after its last. */
export interface TwoNodes {
  readonly net: TestNetwork;
  readonly a: HarnessNode;
  readonly b: HarnessNode;
}

/** Registers a describe block's two nodes on a test network of their own; names are `<prefix>a`, `<prefix>b`. */
export function useTwoNodes(prefix: string): TwoNodes {
  const peers = new Map<string, DirectoryStagedCheckpoints>();
  let nodes: TwoNodes | undefined;
  beforeAll(async () => {
    const net = TestNetwork.create(2);
    const a = await makeNode(`${prefix}a`, net.node(0), peers);
    nodes = { net, a, b: await makeNode(`${prefix}b`, net.node(1), peers) };
  });
  afterAll(async () => {
    await teardownNode(nodes?.a);
    await teardownNode(nodes?.b);
    nodes?.net.destroy();
  });
  const get = (): TwoNodes => {
    if (nodes === undefined) throw new Error('the two nodes exist only inside the tests of their describe block');
    return nodes;
  };
  return {
    get net() {
      return get().net;
    },
    get a() {
      return get().a;
    },
    get b() {
      return get().b;
    },
  };
}

/**
 * Hands a running task from `from` to `to` (stop-and-copy through `from`'s shipper) and restores it there as
 * `<taskId>-b` with `spec` (the target's own directories); the staged copy and its scratch directory go.
 */
export async function handOverAndRestore(
  from: HarnessNode,
  to: HarnessNode,
  taskId: string,
  spec: TaskSpec,
): Promise<MigrateResult> {
  const handoverKey = `${taskId}-next`;
  const handedOver = await from.migrator.migrate({
    taskId,
    peerAddress: `${to.net?.address ?? ''}:7450`,
    mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
    handoverKey,
  });
  expect((await from.runtime.inspect(taskId)).record.phase).toBe('migrated');
  const staged = await to.staged.find(handoverKey, 0);
  if (!staged) throw new Error('checkpoint did not arrive');
  const dir = join(to.root, 'restore', staged.checkpointId);
  await to.staged.materialize(staged.checkpointId, dir);
  await to.restorer.restore({ identity: identity(`${taskId}-b`), checkpointDir: dir, spec });
  await to.staged.delete(staged.checkpointId);
  await rm(dir, { recursive: true, force: true });
  return handedOver;
}
