import { LocalControllerActions } from '../../../forecaster/src/actions/local-controller-actions';
import type { LocalController } from '../../../local/controller/local-controller';
import {
  FAKE_SERVICE,
  servedFakeLocalController,
  type ServedFakeLocalController,
} from '../../fakes/fake-local-controller';
import type { FakeSidecarCluster } from '../../fakes/fake-sidecar-api';

// The forecaster's pre-stage action against the real controller and its real HTTP API on 127.0.0.1:0 (the
// sidecars behind it are fakes: this checks the forecaster ↔ controller contract of POST /v1/node/:id/prestage).
describe('forecaster ↔ local controller: pre-staging (issue #6)', () => {
  let served: ServedFakeLocalController | undefined;
  let cluster: FakeSidecarCluster;
  let controller: LocalController;
  let actions: LocalControllerActions;
  let address: string;

  beforeEach(async () => {
    served = await servedFakeLocalController({ nodes: 2, capacity: 1, tmpPrefix: 'nc-prestage-api-' });
    ({ controller, cluster, address } = served);
    actions = new LocalControllerActions({ address });
    await controller.runService(FAKE_SERVICE, async () => undefined);
  });

  afterEach(() => served?.close());

  const prestagedOn = (node: string) =>
    [...cluster.sidecar(node).staged.values()].filter((c) => c.handoverKey.startsWith('prestage/'));

  it('fence, reserve, pre-stage, drain: the copy lands on the reserved node and the task follows it there', async () => {
    await actions.fence('n1', 'risk 0.9');
    const reservation = await actions.reserve('n1', 'risk 0.9');
    expect(reservation.targets).toEqual(['n2']);
    await actions.prestage('n1', reservation);
    expect(prestagedOn('n2')).toHaveLength(1);
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual(['n1']);

    await actions.drain('n1', { deadlineMs: 60_000, reason: 'risk 0.9', decisionId: 1 });
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual(['n2']);
    expect(prestagedOn('n2')).toEqual([]);
    await actions.release(reservation);
    expect(controller.reservationsHeld()).toEqual([]);
  });

  it('a task not copied fails the action with the task named; the drain after it still moves the task', async () => {
    const reservation = await actions.reserve('n1', 'risk 0.9');
    cluster.sidecar('n1').failNext('prestageTask');
    await expect(actions.prestage('n1', reservation)).rejects.toMatchObject({
      code: 'NC_SCHEDULER_ACTION_FAILED',
      message: expect.stringMatching(/web: prestageTask failed/) as unknown,
    });
    await actions.drain('n1', { deadlineMs: 60_000, reason: 'risk 0.9', decisionId: 2 });
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual(['n2']);
  });

  it('answers 404 for a reservation the controller does not hold, and 400 without one', async () => {
    const stale = { id: 'reservation-42', node: 'n1', targets: ['n2'], tasks: 1 };
    await expect(actions.prestage('n1', stale)).rejects.toMatchObject({
      code: 'NC_SCHEDULER_ACTION_FAILED',
      context: { status: 404 },
    });
    const res = await fetch(`${address}/v1/node/n1/prestage`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(400);
  });

  it('does nothing for a node with no chained task (an empty reservation)', async () => {
    await actions.prestage('n2', { id: '', node: 'n2', targets: [], tasks: 0 });
    expect(prestagedOn('n1')).toEqual([]);
  });
});
