import { FAKE_SERVICE, fakeLocalController } from '../../../fakes/fake-local-controller';
import type { FakeSidecarCluster } from '../../../fakes/fake-sidecar-api';

/** Three nodes of capacity 2; the service lands on n1, so a reservation for n1 takes n2 (emptiest, by name). */
async function setup() {
  const { controller, cluster } = await fakeLocalController({ nodes: 3, capacity: 2, tmpPrefix: 'nc-prestage-' });
  const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
  expect(placed.node).toBe('n1');
  return { controller, cluster };
}

const prestaged = (cluster: FakeSidecarCluster, node: string) =>
  [...cluster.sidecar(node).staged.values()].filter((c) => c.handoverKey.startsWith('prestage/'));

describe('LocalController pre-staging (issue #6)', () => {
  it('copies each chained task, still running, to the node its reservation holds room on', async () => {
    const { controller, cluster } = await setup();
    const reservation = await controller.reserve('n1', 'risk');
    expect(reservation.assignments).toEqual({ web: 'n2' });

    const report = await controller.prestage('n1', reservation.id);
    expect(report.staged).toEqual([
      expect.objectContaining({ taskKey: 'web', target: 'n2', outcome: 'staged', wireBytes: 1024 }),
    ]);
    expect(prestaged(cluster, 'n2').map((c) => c.handoverKey)).toEqual(['prestage/web-1']);
    // Still exactly one running copy, on the source; the pre-staged one is not a task.
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual(['n1']);
  });

  it("drains to the reserved target even when placement would pick another node, then deletes the copy and the slot's double count", async () => {
    const { controller, cluster } = await setup();
    const reservation = await controller.reserve('n1', 'risk');
    await controller.prestage('n1', reservation.id);
    // n2 counts the reserved slot, n3 is empty: plain placement would choose n3.
    const before = Object.fromEntries((await controller.nodes()).map((n) => [n.name, n.tasks]));
    expect(before).toMatchObject({ n2: 1, n3: 0 });

    const [outcome] = await controller.drainNode('n1', 'risk');
    expect(outcome).toMatchObject({ outcome: 'moved' });
    expect(controller.tasks().web?.node).toBe('n2');
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual(['n2']);
    expect(prestaged(cluster, 'n2')).toEqual([]);
    const after = Object.fromEntries((await controller.nodes()).map((n) => [n.name, n.tasks]));
    expect(after).toMatchObject({ n1: 0, n2: 1, n3: 0 });
  });

  it('a failed pre-stage is reported per task and the drain still moves the task', async () => {
    const { controller, cluster } = await setup();
    const reservation = await controller.reserve('n1', 'risk');
    cluster.sidecar('n1').failNext('prestageTask');
    const report = await controller.prestage('n1', reservation.id);
    expect(report.staged).toEqual([
      expect.objectContaining({ taskKey: 'web', outcome: 'failed', code: 'NC_FAKE_FAILURE' }),
    ]);
    expect(prestaged(cluster, 'n2')).toEqual([]);

    const [outcome] = await controller.drainNode('n1', 'risk');
    expect(outcome).toMatchObject({ outcome: 'moved' });
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual(['n2']);
  });

  it('skips a reserved target that went down, and the drain places the task on a healthy node instead', async () => {
    const { controller, cluster } = await setup();
    const reservation = await controller.reserve('n1', 'risk');
    cluster.sidecar('n2').dead = true;
    const report = await controller.prestage('n1', reservation.id);
    expect(report.staged).toEqual([
      expect.objectContaining({
        taskKey: 'web',
        target: 'n2',
        outcome: 'failed',
        code: 'NC_PRESTAGE_TARGET_UNAVAILABLE',
      }),
    ]);
    const [outcome] = await controller.drainNode('n1', 'risk');
    expect(outcome).toMatchObject({ outcome: 'moved' });
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual(['n3']);
  });

  it('never pre-stages a task that has already moved: it is no longer on the fenced node', async () => {
    const { controller, cluster } = await setup();
    const reservation = await controller.reserve('n1', 'risk');
    await controller.drainNode('n1', 'risk');
    const report = await controller.prestage('n1', reservation.id);
    expect(report.staged).toEqual([]);
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual(['n2']);
  });

  it('refuses a reservation it does not hold for that node', async () => {
    const { controller } = await setup();
    const reservation = await controller.reserve('n1', 'risk');
    await expect(controller.prestage('n1', 'reservation-99')).rejects.toMatchObject({
      code: 'NC_CONTROLLER_NO_RESERVATION',
    });
    await expect(controller.prestage('n2', reservation.id)).rejects.toMatchObject({
      code: 'NC_CONTROLLER_NO_RESERVATION',
    });
  });

  it('deletes the pre-staged copies when the reservation is given back (risk fell before the drain)', async () => {
    const { controller, cluster } = await setup();
    const reservation = await controller.reserve('n1', 'risk');
    await controller.prestage('n1', reservation.id);
    expect(prestaged(cluster, 'n2')).toHaveLength(1);
    controller.release(reservation.id);
    await new Promise((r) => setImmediate(r));
    expect(prestaged(cluster, 'n2')).toEqual([]);
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual(['n1']);
  });
});
