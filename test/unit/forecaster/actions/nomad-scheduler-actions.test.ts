import pino from 'pino';
import { NomadApiError } from '../../../../common/nomad-api';
import type { Allocation, NodeListStub, SchedulerConfiguration } from '../../../../common/nomad-api';
import { NomadSchedulerActions } from '../../../../forecaster/src/actions/nomad-scheduler-actions';
import { FakeNomadApi } from '../../../fakes/fake-nomad-api';

const NODE_A = 'node-a-id';

function schedulerConfig(serviceEnabled: boolean): SchedulerConfiguration {
  return {
    SchedulerAlgorithm: 'binpack',
    PreemptionConfig: {
      SystemSchedulerEnabled: true,
      SysBatchSchedulerEnabled: false,
      BatchSchedulerEnabled: false,
      ServiceSchedulerEnabled: serviceEnabled,
    },
    MemoryOversubscriptionEnabled: false,
    RejectJobRegistration: false,
    PauseEvalBroker: false,
    CreateIndex: 5,
    ModifyIndex: 5,
  };
}

function chainedAlloc(id: string, priority: number | undefined): Allocation {
  return {
    ID: id,
    NodeID: NODE_A,
    NodeName: 'a',
    TaskGroup: 'g',
    DesiredStatus: 'run',
    ClientStatus: 'running',
    Job: {
      ID: `job-${id}`,
      Namespace: 'default',
      Datacenters: ['dc1'],
      ...(priority === undefined ? {} : { Priority: priority }),
      TaskGroups: [{ Name: 'g', Tasks: [{ Driver: 'chain', Resources: { CPU: 200, MemoryMB: 512 } }] }],
    },
  } as Allocation;
}

function setup(): { nomad: FakeNomadApi; actions: NomadSchedulerActions; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as never) });
  const nomad = new FakeNomadApi();
  nomad.nodes = [{ ID: NODE_A, Name: 'a' } as NodeListStub];
  nomad.allocs = [chainedAlloc('alloc-1', 50)];
  nomad.config = { SchedulerConfig: schedulerConfig(true) };
  return { nomad, actions: new NomadSchedulerActions(nomad.api, log), lines };
}

describe('NomadSchedulerActions.reserve and service-job preemption', () => {
  it('registers a priority-1 placeholder when service-job preemption is on', async () => {
    const { nomad, actions } = setup();
    const reservation = await actions.reserve('a', 'risk high');
    expect(reservation).toEqual({ id: 'nomad-chain-reserve-a', node: 'a', targets: ['b'], tasks: 1 });
    expect(nomad.registered).toHaveLength(1);
    expect(nomad.registered[0]).toMatchObject({ Priority: 1, Type: 'service' });
  });

  it('places no placeholder when preemption is off (it would block the replacement) and says why', async () => {
    const { nomad, actions, lines } = setup();
    nomad.config = { SchedulerConfig: schedulerConfig(false) };
    const reservation = await actions.reserve('a', 'risk high');
    expect(reservation).toMatchObject({ id: '', node: 'a', targets: [], tasks: 0 });
    expect(reservation.skipped).toContain('-preempt-service-scheduler=true');
    expect(nomad.registered).toEqual([]);
    expect(lines.find((l) => l.msg === 'capacity not reserved')).toMatchObject({ level: 40, node: 'a', tasks: 1 });
  });

  it('treats an unreadable configuration (token without operator:read) as off', async () => {
    const { nomad, actions } = setup();
    nomad.config = new NomadApiError('NC_NOMAD_API_ACL_DENIED', 'Nomad refused the call', { status: 403 });
    const reservation = await actions.reserve('a', 'risk high');
    expect(reservation.skipped).toMatch(/operator:read/);
    expect(nomad.registered).toEqual([]);
  });

  it('treats a missing configuration as off', async () => {
    const { nomad, actions } = setup();
    nomad.config = { SchedulerConfig: null };
    expect((await actions.reserve('a', 'risk high')).skipped).toMatch(/no scheduler configuration/);
    expect(nomad.registered).toEqual([]);
  });

  it('fails the reserve, with the scheduler-action code, when Nomad is unreachable', async () => {
    const { nomad, actions } = setup();
    nomad.config = new NomadApiError('NC_NOMAD_API_UNREACHABLE', 'Nomad API unreachable');
    const err = await actions.reserve('a', 'risk high').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NC_SCHEDULER_ACTION_FAILED', recoverable: true });
    expect(nomad.registered).toEqual([]);
  });

  it("says in a failed action's message what Nomad answered", async () => {
    const { nomad, actions } = setup();
    nomad.config = new NomadApiError('NC_NOMAD_API_STATUS', 'Nomad API refused the call', {
      status: 500,
      context: { detail: 'error looking up ACL token' },
    });
    const err = (await actions.reserve('a', 'risk high').catch((e: unknown) => e)) as { message: string };
    expect(err.message).toBe('reserve on a failed: Nomad API refused the call (Nomad: "error looking up ACL token")');
  });

  it('reserves only for jobs at least 10 priorities above the placeholder (Nomad preempts no closer)', async () => {
    const { nomad, actions, lines } = setup();
    nomad.allocs = [
      chainedAlloc('alloc-low', 10),
      chainedAlloc('alloc-11', 11),
      chainedAlloc('alloc-default', undefined),
    ];
    const reservation = await actions.reserve('a', 'risk high');
    expect(reservation.tasks).toBe(2);
    const groups = (nomad.registered[0]?.TaskGroups ?? []) as { Meta: Record<string, string> }[];
    expect(groups.map((g) => g.Meta['nomad_chain.for_alloc'])).toEqual(['alloc-11', 'alloc-default']);
    expect(lines.find((l) => l.msg === 'priority too low to reserve for')).toMatchObject({ allocs: ['alloc-low'] });

    nomad.allocs = [chainedAlloc('alloc-low', 10)];
    const none = await actions.reserve('a', 'risk high');
    expect(none).toMatchObject({ id: '', tasks: 0 });
    expect(none.skipped).toMatch(/less than 10 above the placeholders' \(1\)/);
    expect(nomad.registered).toHaveLength(1);
  });

  it('does not read the configuration for a node without chained tasks', async () => {
    const { nomad, actions } = setup();
    nomad.allocs = [];
    nomad.config = new Error('must not be read');
    expect(await actions.reserve('a', 'risk high')).toEqual({ id: '', node: 'a', targets: [], tasks: 0 });
  });
});

describe('NomadSchedulerActions.checkPreemption', () => {
  it('logs info when on, a warning with the fix when off, and never throws', async () => {
    const { nomad, actions, lines } = setup();
    await actions.checkPreemption();
    expect(lines.at(-1)).toMatchObject({
      level: 30,
      msg: 'service-job preemption is on: placeholders will reserve capacity',
    });
    nomad.config = { SchedulerConfig: schedulerConfig(false) };
    await actions.checkPreemption();
    expect(lines.at(-1)).toMatchObject({
      level: 40,
      msg: 'placeholders disabled',
      fix: 'nomad operator scheduler set-config -preempt-service-scheduler=true',
    });
    nomad.config = new NomadApiError('NC_NOMAD_API_UNREACHABLE', 'Nomad API unreachable');
    await actions.checkPreemption();
    expect(lines.at(-1)).toMatchObject({ level: 40, msg: 'scheduler configuration not checked' });
  });
});

describe('NomadSchedulerActions.checkAccess', () => {
  it("stops the start on a refused token with the ACL code, Nomad's reason and the policy to use", async () => {
    const { nomad, actions } = setup();
    await expect(actions.checkAccess()).resolves.toBeUndefined();
    nomad.nodes = new NomadApiError('NC_NOMAD_API_ACL_DENIED', 'Nomad refused the call: the ACL token is unknown', {
      status: 403,
      context: { detail: 'ACL token not found' },
    });
    const err = (await actions.checkAccess().catch((e: unknown) => e)) as { code: string; message: string };
    expect(err.code).toBe('NC_NOMAD_API_ACL_DENIED');
    expect(err.message).toContain('"ACL token not found"');
    expect(err.message).toContain('jobs/forecaster.policy.hcl');
  });

  it('lets other failures through unchanged', async () => {
    const { nomad, actions } = setup();
    nomad.nodes = new NomadApiError('NC_NOMAD_API_UNREACHABLE', 'Nomad API unreachable');
    await expect(actions.checkAccess()).rejects.toMatchObject({ code: 'NC_NOMAD_API_UNREACHABLE' });
  });
});
