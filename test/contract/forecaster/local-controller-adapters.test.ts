import pino from 'pino';
import { SystemClock } from '../../../common/clock';
import { LocalControllerActions } from '../../../forecaster/src/actions/local-controller-actions';
import { LocalControllerEvents } from '../../../forecaster/src/events/local-controller-events';
import type { SchedulerEvent } from '../../../forecaster/src/events/scheduler-events';
import type { LocalController } from '../../../local/controller/local-controller';
import {
  FAKE_SERVICE,
  servedFakeLocalController,
  type ServedFakeLocalController,
} from '../../fakes/fake-local-controller';

// The forecaster's local-mode adapters against the real controller and its real HTTP API on 127.0.0.1:0
// (sidecars and router behind it are the controller's own fakes: this checks the forecaster ↔ controller contract).
const log = pino({ level: 'silent' });

describe('forecaster ↔ local controller API', () => {
  let served: ServedFakeLocalController | undefined;
  let controller: LocalController;
  let address: string;

  beforeAll(async () => {
    served = await servedFakeLocalController({ nodes: 3, capacity: 1, tmpPrefix: 'nc-c2-controller-' });
    ({ controller, address } = served);
  });

  afterAll(() => served?.close());

  it('follows the event stream from its start, then resumes after the last index without repeats', async () => {
    const events = new LocalControllerEvents({ address, backoffMinMs: 20 }, new SystemClock(), log);
    const seen: SchedulerEvent[] = [];
    const abort = new AbortController();
    const following = events.follow((e) => seen.push(e), abort.signal);
    await waitFor(() => seen.length >= 3);
    expect(seen.slice(0, 3).map((e) => [e.type, e.node])).toEqual([
      ['node-joined', 'n1'],
      ['node-joined', 'n2'],
      ['node-joined', 'n3'],
    ]);
    abort.abort();
    await following;

    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    await controller.drainNode(placed.node, 'contract test');
    const again = new AbortController();
    const resumed = events.follow((e) => seen.push(e), again.signal);
    await waitFor(() => seen.some((e) => e.type === 'drain-complete'));
    again.abort();
    await resumed;
    expect(seen.slice(3).map((e) => [e.type, e.node])).toEqual([
      ['drain-started', placed.node],
      ['drain-complete', placed.node],
    ]);
    expect(seen.filter((e) => e.type === 'node-joined')).toHaveLength(3);
  });

  it('fences, reserves, releases and unfences through the API; a reservation without room for every task fails', async () => {
    const actions = new LocalControllerActions({ address });
    const nodes = async () => Object.fromEntries((await controller.nodes()).map((n) => [n.name, n]));
    const target = (await controller.nodes()).find((n) => n.tasks === 1 && n.eligible)?.name as string;
    expect(target).toBeDefined();

    await actions.fence(target, 'risk 0.9');
    expect((await nodes())[target]?.eligible).toBe(false);
    const reservation = await actions.reserve(target, 'risk 0.9');
    expect(reservation).toMatchObject({ node: target, tasks: 1 });
    expect(reservation.targets).toHaveLength(1);
    expect(controller.reservationsHeld().map((r) => r.id)).toEqual([reservation.id]);
    await actions.release(reservation);
    expect(controller.reservationsHeld()).toEqual([]);
    await actions.unfence(target, 'risk fell');
    expect((await nodes())[target]?.eligible).toBe(true);

    // Fill every other node: a second service lands on the remaining free node, leaving no room anywhere.
    await controller.runService({ ...FAKE_SERVICE, name: 'other' }, async () => undefined);
    await expect(actions.reserve(target, 'risk 0.9')).rejects.toMatchObject({ code: 'NC_SCHEDULER_ACTION_FAILED' });
    expect(controller.reservationsHeld()).toEqual([]);
    await expect(actions.fence('no-such-node', 'x')).rejects.toMatchObject({ code: 'NC_SCHEDULER_ACTION_FAILED' });
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
