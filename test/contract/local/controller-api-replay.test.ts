import { LocalControllerActions } from '../../../forecaster/src/actions/local-controller-actions';
import type { LocalController } from '../../../local/controller/local-controller';
import { servedFakeLocalController, type ServedFakeLocalController } from '../../fakes/fake-local-controller';

// A trace replay's names through the real controller API on 127.0.0.1:0, driven by the forecaster's own
// local-mode adapter: aliased trace nodes act on their local node, virtual and departed ones do nothing.
describe('controller API with replay aliases and virtual nodes', () => {
  let served: ServedFakeLocalController | undefined;
  let controller: LocalController;
  let address: string;

  beforeAll(async () => {
    served = await servedFakeLocalController({
      nodes: 2,
      capacity: 2,
      tmpPrefix: 'nc-replay-api-',
      announceNodes: false,
    });
    ({ controller, address } = served);
  });

  afterAll(() => served?.close());

  it('acts on the local node behind an alias and lists it under the alias', async () => {
    controller.alias('trace-a', 'n1');
    const actions = new LocalControllerActions({ address });
    await actions.fence('trace-a', 'risk');
    const nodes = (await (await fetch(`${address}/v1/nodes`)).json()) as { name: string; eligible: boolean }[];
    expect(nodes.map((n) => [n.name, n.eligible])).toEqual([
      ['trace-a', false],
      ['n2', true],
    ]);
    expect(controller.events.since(0).map((e) => [e.event.type, e.event.node])).toEqual([]);
    await actions.drain('trace-a', { deadlineMs: 1000, reason: 'risk', decisionId: 1 });
    expect(controller.events.since(0).map((e) => [e.event.type, e.event.node])).toEqual([
      ['drain-started', 'trace-a'],
      ['drain-complete', 'trace-a'],
    ]);
  });

  it('answers every action on a virtual or departed trace node as a no-op that says so', async () => {
    controller.virtualJoined('trace-v');
    const actions = new LocalControllerActions({ address });
    const reservation = await actions.reserve('trace-v', 'risk');
    expect(reservation).toEqual({ id: '', node: 'trace-v', targets: [], tasks: 0 });
    await actions.fence('trace-v', 'risk');
    await actions.drain('trace-v', { deadlineMs: 1000, reason: 'risk', decisionId: 1 });
    const answer = (await (
      await fetch(`${address}/v1/node/trace-v/eligibility`, {
        method: 'POST',
        body: JSON.stringify({ Eligibility: 'eligible' }),
      })
    ).json()) as { virtual: boolean; detail: string };
    expect(answer).toMatchObject({ virtual: true, detail: expect.stringContaining('did nothing') as string });
    controller.unalias('trace-a');
    await actions.unfence('trace-a', 'gone');
    expect((await controller.nodes()).find((n) => n.name === 'n1')?.eligible).toBe(false);
    expect(controller.events.since(0).some((e) => e.event.type === 'drain-started' && e.event.node === 'trace-v')).toBe(
      false,
    );
  });
});
