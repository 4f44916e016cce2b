import pino from 'pino';
import { LoadProbe } from '../../../local/demo/load-probe';
import { EXAMPLE_SERVICE, startLocalMode, type LocalMode } from '../../../local/local-mode';
import type { MigrationRecord } from '../../../local/migration/migration-record';
import { corruptStore, runKv, runningCopies } from './kv-service';

const log = pino({ level: process.env.NOMAD_CHAIN_TEST_LOG ?? 'silent' });

/** Sequential requests through HAProxy, from before the drain until after it: how many, and how many failed. */
async function drainUnderLoad(local: LocalMode) {
  const { placed, base } = await runKv(local);
  const probe = new LoadProbe(`${base}/counter`);
  probe.start();
  // The load is on before the drain begins and goes on after it, from whichever instance then serves.
  await probe.answered(10);
  const [outcome] = await local.controller.drainNode(placed.node, 'test: drain under load');
  await probe.answered(10);
  const load = await probe.stop();
  return { outcome, load, node: placed.node };
}

// Issue #12 item 4: requests arriving while the instance is frozen wait at the router and are served after.
describe('local mode: a drain under load through HAProxy fails no request (issue #12)', () => {
  let local: LocalMode;
  afterEach(async () => {
    await local?.stop(true);
  });

  it('moves the service while every request is answered with 2xx, the counter going on without a gap', async () => {
    local = await startLocalMode({ cluster: { nodes: 3, services: [EXAMPLE_SERVICE.name] } }, log);
    const { outcome, load, node } = await drainUnderLoad(local);
    expect(outcome).toMatchObject({ outcome: 'moved' });
    expect(load.requests).toBeGreaterThan(0);
    expect(load.failedRequests).toBe(0);
    expect(load.counterContinuous).toBe(true);
    const copies = await runningCopies(local);
    expect(copies).toHaveLength(1);
    expect(copies[0]).not.toBe(node);
  });

  it('rolls a failed restore back to the source while every request is answered with 2xx', async () => {
    local = await startLocalMode(
      {
        cluster: { nodes: 2, services: [EXAMPLE_SERVICE.name] },
        afterStep: async (r: MigrationRecord) => {
          if (r.step === 'handed-over') await corruptStore(local.cluster.node(r.target.node).dataDir);
        },
      },
      log,
    );
    const { outcome, load, node } = await drainUnderLoad(local);
    expect(outcome).toMatchObject({ outcome: 'rolled-back', migration: { error: { step: 'handed-over' } } });
    expect(load.requests).toBeGreaterThan(0);
    expect(load.failedRequests).toBe(0);
    expect(load.counterContinuous).toBe(true);
    expect(await runningCopies(local)).toEqual([node]);
  });
});
