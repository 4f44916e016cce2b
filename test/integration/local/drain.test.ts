import pino from 'pino';
import { GrpcSidecarApi } from '../../../common/sidecar-api/grpc-sidecar-api';
import { connectController, EXAMPLE_SERVICE, startLocalMode, type LocalMode } from '../../../local/local-mode';
import type { MigrationRecord } from '../../../local/migration/migration-record';
import { call, corruptStore, counter, journal, runKv, runningCopies } from './kv-service';

const log = pino({ level: process.env.NOMAD_CHAIN_TEST_LOG ?? 'silent' });
const KEYS = 20;

const whoami = async (base: string): Promise<string[]> =>
  (JSON.parse(await call(base, '/whoami')) as { addresses: string[] }).addresses;
const uidMap = async (base: string): Promise<string> =>
  (JSON.parse(await call(base, '/whoami')) as { uidMap: string }).uidMap;
/** The sidecar's default: tasks' ids 0-65535 are 100000-165535 on the node, the same on every node. */
const TASK_UID_MAP = '0 100000 65536';

async function withService(local: LocalMode): Promise<{ base: string; node: string }> {
  const { placed, base } = await runKv(local);
  for (let i = 0; i < KEYS; i++) await call(base, `/kv/k${i}`, 'PUT', `v${i}`);
  return { base, node: placed.node };
}

describe('local mode: a drain chains the service to another node (issue #5)', () => {
  let local: LocalMode;
  afterEach(async () => {
    await local?.stop(true);
  });

  it('moves a stateful service: the counter continues, every key is kept, the router follows', async () => {
    local = await startLocalMode({ cluster: { nodes: 3, services: [EXAMPLE_SERVICE.name] } }, log);
    const { base, node } = await withService(local);
    expect(await counter(base)).toBe(1);
    expect(await counter(base)).toBe(2);
    expect(await whoami(base)).toEqual([local.cluster.node(node).address]);
    expect(await uidMap(base)).toBe(TASK_UID_MAP);

    const [outcome] = await local.controller.drainNode(node, 'test');
    expect(outcome).toMatchObject({ outcome: 'moved' });
    const target = local.controller.tasks()[EXAMPLE_SERVICE.name]?.node;
    expect(target).toBeDefined();
    expect(target).not.toBe(node);

    expect(await whoami(base)).toEqual([local.cluster.node(target ?? '').address]);
    expect(await uidMap(base)).toBe(TASK_UID_MAP);
    expect(await counter(base)).toBe(3);
    const keys = JSON.parse(await call(base, '/keys')) as Record<string, string>;
    expect(Object.keys(keys)).toHaveLength(KEYS);
    for (let i = 0; i < KEYS; i++) expect(keys[`k${i}`]).toBe(`v${i}`);
    // Issue #10: the journal it holds open under /alloc/data moved with it, and the restored process writes on.
    expect(await journal(base)).toEqual({ lines: KEYS, sameFile: true });
    await call(base, '/kv/after', 'PUT', 'moved');
    expect(await journal(base)).toEqual({ lines: KEYS + 1, sameFile: true });
    expect(await runningCopies(local)).toEqual([target]);
  });

  it('leaves the task running where it is when no healthy target has room', async () => {
    local = await startLocalMode({ cluster: { nodes: 2, services: [EXAMPLE_SERVICE.name] } }, log);
    const { base, node } = await withService(local);
    const other = local.cluster.nodes.find((n) => n.name !== node)?.name ?? '';
    await local.controller.setEligibility(other, false, 'test: no room elsewhere');
    await counter(base);
    const [outcome] = await local.controller.drainNode(node, 'test');
    expect(outcome).toMatchObject({ outcome: 'stayed' });
    expect(await counter(base)).toBe(2);
    expect(await runningCopies(local)).toEqual([node]);
  });

  // Issue #10: after the freeze the source process is gone; its own copy of the hand-over puts it back.
  it('a restore failing on the target after the freeze puts the service back on its source, in rotation', async () => {
    local = await startLocalMode(
      {
        cluster: { nodes: 2, services: [EXAMPLE_SERVICE.name] },
        afterStep: async (r: MigrationRecord) => {
          if (r.step === 'handed-over') await corruptStore(local.cluster.node(r.target.node).dataDir);
        },
      },
      log,
    );
    const { base, node } = await withService(local);
    expect(await counter(base)).toBe(1);
    const [outcome] = await local.controller.drainNode(node, 'test');
    expect(outcome).toMatchObject({ outcome: 'rolled-back', migration: { error: { step: 'handed-over' } } });
    expect(await runningCopies(local)).toEqual([node]);
    expect(await whoami(base)).toEqual([local.cluster.node(node).address]);
    expect(await counter(base)).toBe(2);
    expect(Object.keys(JSON.parse(await call(base, '/keys')) as object)).toHaveLength(KEYS);
    expect(await journal(base)).toEqual({ lines: KEYS, sameFile: true });
  });

  it.each(['left-rotation', 'handed-over', 'restored'] as const)(
    'a controller crash right after "%s" resumes on restart with exactly one instance running',
    async (crashStep) => {
      local = await startLocalMode(
        {
          cluster: { nodes: 2, services: [EXAMPLE_SERVICE.name] },
          afterStep: (r: MigrationRecord) => {
            if (r.step === crashStep) throw new Error(`simulated controller crash after ${crashStep}`);
          },
        },
        log,
      );
      const { base, node } = await withService(local);
      await counter(base);
      await expect(local.controller.drainNode(node, 'test')).rejects.toThrow(/simulated controller crash/);

      // A new controller over the same cluster, journal and state: what a restarted process would build.
      const sidecars = new Map(
        local.cluster.nodes.map((n) => [n.name, new GrpcSidecarApi({ socketPath: n.localSocket, timeoutMs: 30_000 })]),
      );
      try {
        const restarted = await connectController(local.cluster, sidecars, {}, log);
        const [migration] = restarted.migrations();
        expect(migration?.step).toBe('done');
        const copies = await runningCopies(local);
        expect(copies).toHaveLength(1);
        expect(copies[0]).not.toBe(node);
        expect(await counter(base)).toBe(2);
        expect(Object.keys(JSON.parse(await call(base, '/keys')) as object)).toHaveLength(KEYS);
      } finally {
        for (const s of sidecars.values()) s.close();
      }
    },
  );
});
