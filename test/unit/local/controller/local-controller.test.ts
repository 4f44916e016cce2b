import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NomadChainError } from '../../../../common/errors';
import { isFinished } from '../../../../local/migration/migration-record';
import { FAKE_SERVICE, fakeLocalController } from '../../../fakes/fake-local-controller';

const setup = (nodes = 3, capacity = 2): ReturnType<typeof fakeLocalController> =>
  fakeLocalController({ nodes, capacity, preemptible: true });

describe('LocalController', () => {
  it('places a service on a healthy node and puts it in rotation', async () => {
    const { controller, cluster, router } = await setup();
    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual([placed.node]);
    expect([...router.inRotation.values()].map((i) => i.node)).toEqual([placed.node]);
  });

  it('drains a node through the migration sequence and reports drain events', async () => {
    const { controller, cluster } = await setup();
    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    const [outcome] = await controller.drainNode(placed.node, 'test');
    expect(outcome?.outcome).toBe('moved');
    expect(cluster.running('web')).toHaveLength(1);
    expect(cluster.running('web')[0]?.nodeName).not.toBe(placed.node);
    const types = controller.events.since(0).map((e) => `${e.event.type}:${e.event.node}`);
    expect(types).toEqual(expect.arrayContaining([`drain-started:${placed.node}`, `drain-complete:${placed.node}`]));
    expect((await controller.nodes()).find((n) => n.name === placed.node)).toMatchObject({
      eligible: false,
      draining: true,
    });
  });

  it("removes a moved task's directory on its source once the move is done, and keeps the target's", async () => {
    const { controller, nodes } = await setup();
    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    const dirOf = (node: string, taskId: string): string =>
      join(nodes.find((n) => n.name === node)?.dataDir ?? '', 'allocs', taskId);
    expect(existsSync(dirOf(placed.node, placed.taskId))).toBe(true);
    const moved = await controller.migrateTask('web');
    expect(moved.outcome).toBe('moved');
    const now = controller.tasks().web;
    expect(existsSync(dirOf(placed.node, placed.taskId))).toBe(false);
    expect(existsSync(dirOf(now?.node ?? '', now?.taskId ?? ''))).toBe(true);
  });

  it("keeps the source's task directory when the move rolls back, and removes the one made on the target", async () => {
    const { controller, cluster, nodes } = await setup();
    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    cluster.sidecar(placed.node).failNext('migrateToPeer', new NomadChainError('NC_TRANSFER_PEER_UNREACHABLE', 'gone'));
    const moved = await controller.migrateTask('web');
    expect(moved.outcome).toBe('rolled-back');
    const dataDir = nodes.find((n) => n.name === placed.node)?.dataDir ?? '';
    expect(existsSync(join(dataDir, 'allocs', placed.taskId))).toBe(true);
    if (!('migration' in moved)) throw new Error(`no migration: ${JSON.stringify(moved)}`);
    const target = nodes.find((n) => n.name === moved.migration.target.node);
    expect(target).toBeDefined();
    expect(existsSync(join(target?.dataDir ?? '', 'allocs', moved.migration.target.taskId))).toBe(false);
  });

  it('reserves room for each chained task on other nodes, counted against their capacity, and releases it', async () => {
    const { controller } = await setup(2, 1);
    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    const other = placed.node === 'n1' ? 'n2' : 'n1';
    const reservation = await controller.reserve(placed.node, 'risk');
    expect(reservation).toMatchObject({ node: placed.node, targets: [other], tasks: 1 });
    expect((await controller.nodes()).find((n) => n.name === other)?.tasks).toBe(1);
    await expect(
      controller.runService({ ...FAKE_SERVICE, name: 'other' }, async () => undefined),
    ).rejects.toMatchObject({
      code: 'NC_CONTROLLER_NO_CAPACITY',
    });
    controller.release(reservation.id);
    expect((await controller.nodes()).find((n) => n.name === other)?.tasks).toBe(0);
  });

  it('counts a chained task caught by a pre-emption and cold-starts it elsewhere', async () => {
    const { controller, cluster, killed } = await setup();
    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    const outcome = await controller.preempt(placed.node);
    expect(killed).toEqual([placed.node]);
    expect(outcome.caught).toEqual(['web']);
    expect(outcome.restartedOn.web).toBeDefined();
    expect(outcome.restartedOn.web).not.toBe(placed.node);
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual([outcome.restartedOn.web]);
    expect(cluster.running('web')[0]?.restoredFromCheckpoint).toBe('');
    const left = controller.events.since(0).find((e) => e.event.type === 'node-left');
    expect(left?.event).toMatchObject({ node: placed.node, preempted: true });
    expect((await controller.nodes()).find((n) => n.name === placed.node)?.healthy).toBe(false);

    await controller.nodeReturned(placed.node);
    expect((await controller.nodes()).find((n) => n.name === placed.node)).toMatchObject({
      healthy: true,
      eligible: true,
    });
  });

  it('cold-starts a caught task on the next node when the first start fails, leaving no half-started copy', async () => {
    const tries: string[] = [];
    const { controller, cluster } = await fakeLocalController({
      nodes: 3,
      capacity: 2,
      preemptible: true,
      waitServing: async (instance) => {
        tries.push(instance.node);
        if (tries.length === 1) throw new Error(`${instance.address}:${instance.port} not serving`);
      },
    });
    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    const outcome = await controller.preempt(placed.node);
    expect(tries).toHaveLength(2);
    expect(new Set([placed.node, ...tries]).size).toBe(3);
    expect(outcome.restartedOn.web).toBe(tries[1]);
    expect(cluster.running('web').map((t) => t.nodeName)).toEqual([tries[1]]);
    expect(controller.tasks().web?.node).toBe(tries[1]);
  });

  it('does not count a cold start whose target was pre-empted meanwhile, and starts the task on a third node', async () => {
    const ref: { controller?: Awaited<ReturnType<typeof setup>>['controller'] } = {};
    const tries: string[] = [];
    const built = await fakeLocalController({
      nodes: 3,
      capacity: 2,
      preemptible: true,
      waitServing: async (instance) => {
        tries.push(instance.node);
        // The first target goes in a burst of pre-emptions after its pre-emption looked for what it caught.
        if (tries.length === 1) await ref.controller?.preempt(instance.node);
      },
    });
    const { controller } = built;
    ref.controller = controller;
    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    const outcome = await controller.preempt(placed.node);
    expect(tries).toHaveLength(2);
    expect(outcome.restartedOn.web).toBe(tries[1]);
    expect(built.killed).toEqual([placed.node, tries[0]]);
    expect(built.cluster.running('web').map((t) => t.nodeName)).toEqual([tries[1]]);
  });

  it('gives a caught task up, saying so, only when no node can start it', async () => {
    const { controller, cluster } = await fakeLocalController({
      nodes: 2,
      capacity: 2,
      preemptible: true,
      waitServing: async () => {
        throw new Error('not serving');
      },
    });
    const placed = await controller.runService(FAKE_SERVICE, async () => undefined);
    const outcome = await controller.preempt(placed.node);
    expect(outcome.caught).toEqual(['web']);
    expect(outcome.restartedOn).toEqual({});
    expect(cluster.running('web')).toEqual([]);
  });

  it('resumes the event index where a watcher left off', async () => {
    const { controller } = await setup();
    const last = controller.events.since(0).at(-1)?.index ?? 0;
    await controller.setEligibility('n1', false, 'test');
    await controller.setEligibility('n1', true, 'test');
    expect(controller.events.since(last)).toEqual([]);
    await controller.drainNode('n2', 'test');
    expect(controller.events.since(last).map((e) => e.event.type)).toEqual(['drain-started', 'drain-complete']);
  });

  /** Four chained services, all on n1 (the other nodes are fenced while they start). */
  async function fourOnN1(options: Partial<Parameters<typeof fakeLocalController>[0]>) {
    const built = await fakeLocalController({ nodes: 3, capacity: 4, ...options });
    await built.controller.setEligibility('n2', false, 'test');
    await built.controller.setEligibility('n3', false, 'test');
    for (const name of ['a', 'b', 'c', 'd'])
      await built.controller.runService({ ...FAKE_SERVICE, name }, async () => undefined);
    await built.controller.setEligibility('n2', true, 'test');
    await built.controller.setEligibility('n3', true, 'test');
    return built;
  }

  it('drains a node at most drainConcurrency tasks at a time', async () => {
    const limit = 2;
    let active = 0;
    let most = 0;
    let open: () => void = () => undefined;
    let gate = new Promise<void>((r) => (open = r));
    const { controller, cluster } = await fourOnN1({
      drainConcurrency: limit,
      afterStep: async (record) => {
        // A move is under way from leaving rotation until it is finished.
        if (isFinished(record)) active -= 1;
        if (record.step !== 'left-rotation') return;
        active += 1;
        most = Math.max(most, active);
        // Hold every move out of rotation until `limit` are under way: an unbounded drain starts more meanwhile.
        if (active >= limit) {
          open();
          gate = new Promise<void>((r) => (open = r));
        } else await gate;
      },
    });
    expect(Object.values(controller.tasks()).map((t) => t.node)).toEqual(['n1', 'n1', 'n1', 'n1']);
    const outcomes = await controller.drainNode('n1', 'test');
    expect(outcomes.map((o) => `${o.taskKey}:${o.outcome}`)).toEqual(['a:moved', 'b:moved', 'c:moved', 'd:moved']);
    expect(most).toBe(limit);
    for (const name of ['a', 'b', 'c', 'd']) expect(cluster.running(name)).toHaveLength(1);
  });

  it('counts moves under way against their targets, so a concurrent drain spreads its tasks', async () => {
    const { controller } = await fourOnN1({ drainConcurrency: 4 });
    await controller.drainNode('n1', 'test');
    const on = Object.values(controller.tasks()).map((t) => t.node);
    expect(on.filter((n) => n === 'n2')).toHaveLength(2);
    expect(on.filter((n) => n === 'n3')).toHaveLength(2);
  });

  it('refuses a drainConcurrency below 1', async () => {
    await expect(fakeLocalController({ nodes: 2, capacity: 1, drainConcurrency: 0 })).rejects.toMatchObject({
      code: 'NC_CONFIG_INVALID',
      field: 'drainConcurrency',
    });
  });
});
