import pino from 'pino';
import type { Allocation } from '../../../../common/nomad-api';
import { NomadSchedulerActions } from '../../../../forecaster/src/actions/nomad-scheduler-actions';
import { FakeNomadApi } from '../../../fakes/fake-nomad-api';
import type { CheckpointPrestager } from '../../../../forecaster/src/actions/nomad-scheduler-actions';
import { SidecarPrestager } from '../../../../forecaster/src/actions/sidecar-prestager';
import type {
  PeerPrestageCaller,
  PrestageOutcome,
  PrestageTask,
} from '../../../../forecaster/src/actions/sidecar-prestager';
import { PeerError } from '../../../../common/grpc/status-codec';
import type { PrestageAllocTaskRequest } from '../../../../proto/gen/chain/v1/prestage';
import type { PrestageTaskResponse } from '../../../../proto/gen/chain/v1/sidecar';

function alloc(id: string, group: string, tasks: { Name: string; Driver: string }[]): Allocation {
  return {
    ID: id,
    NodeID: 'id-a',
    NodeName: 'a',
    TaskGroup: group,
    DesiredStatus: 'run',
    ClientStatus: 'running',
    Job: { ID: `job-${id}`, Namespace: 'default', Priority: 50, TaskGroups: [{ Name: group, Tasks: tasks }] },
  } as unknown as Allocation;
}

class RecordingPrestager implements CheckpointPrestager {
  readonly asked: PrestageTask[][] = [];
  failTask: string | undefined;

  prestage(tasks: readonly PrestageTask[]): Promise<PrestageOutcome[]> {
    this.asked.push([...tasks]);
    return Promise.resolve(
      tasks.map((t): PrestageOutcome =>
        t.taskName === this.failTask
          ? { ...t, outcome: 'failed', code: 'NC_TASK_NOT_FOUND', error: 'gone' }
          : {
              ...t,
              outcome: 'staged',
              checkpointId: `ck-${t.taskName}`,
              checkpointBytes: 1000,
              wireBytes: 400,
              dumpMs: 5,
              shipMs: 6,
            },
      ),
    );
  }
}

function setup() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as never) });
  const nomad = new FakeNomadApi();
  nomad.allocs = [
    alloc('alloc-1', 'web', [
      { Name: 'kv', Driver: 'chain' },
      { Name: 'log-shipper', Driver: 'exec' },
    ]),
    alloc('alloc-2', 'db', [{ Name: 'store', Driver: 'chain' }]),
  ];
  // The placeholders appear after two looks.
  nomad.placedAfter = 2;
  nomad.addresses = { 'id-a': '10.0.0.1:7451', 'id-b': '10.0.0.2:7451' };
  const prestager = new RecordingPrestager();
  const actions = new NomadSchedulerActions(nomad.api, log, {
    prestager,
    placementWaitMs: 5_000,
    placementPollMs: 1,
  });
  return { nomad, prestager, actions, lines };
}

describe('NomadSchedulerActions.prestage (issue #12, item 3)', () => {
  it("waits for the placeholders, then asks for each chained task's copy from its node's sidecar to its placeholder's node", async () => {
    const { nomad, prestager, actions, lines } = setup();
    const reservation = await actions.reserve('a', 'risk high');
    await actions.prestage('a', reservation);
    expect(nomad.looks).toBeGreaterThan(nomad.placedAfter);
    const route = { sourceNode: 'a', sourceAddress: '10.0.0.1:7451', targetNode: 'b', targetAddress: '10.0.0.2:7451' };
    // Only the chain driver's tasks: the exec side task of alloc-1 has nothing to pre-stage.
    expect(prestager.asked).toEqual([
      [
        { allocId: 'alloc-1', taskName: 'kv', ...route },
        { allocId: 'alloc-2', taskName: 'store', ...route },
      ],
    ]);
    expect(lines.find((l) => l.msg === 'checkpoints pre-staged')).toMatchObject({
      node: 'a',
      reservation: 'nomad-chain-reserve-a',
      wireBytes: 800,
      failed: 0,
      unplaced: [],
    });
  });

  it('tries every task and then fails naming how many were copied', async () => {
    const { prestager, actions } = setup();
    prestager.failTask = 'kv';
    const reservation = await actions.reserve('a', 'risk high');
    const err = await actions.prestage('a', reservation).catch((e: unknown) => e);
    expect(prestager.asked[0]?.map((t) => t.taskName)).toEqual(['kv', 'store']);
    expect(err).toMatchObject({ code: 'NC_SCHEDULER_ACTION_FAILED', message: 'pre-staged 1 of 2 chained tasks on a' });
  });

  it('pre-stages what was placed when the wait ends, and fails naming the allocation left without a placeholder', async () => {
    const { nomad, prestager } = setup();
    nomad.placedAfter = 0;
    nomad.placeOnly = 1;
    const quick = new NomadSchedulerActions(nomad.api, pino({ level: 'silent' }), {
      prestager,
      placementWaitMs: 0,
    });
    const reservation = await quick.reserve('a', 'risk high');
    const err = await quick.prestage('a', reservation).catch((e: unknown) => e);
    expect(prestager.asked[0]?.map((t) => t.allocId)).toEqual(['alloc-1']);
    expect(err).toMatchObject({ code: 'NC_SCHEDULER_ACTION_FAILED', context: { unplaced: 'alloc-2' } });
  });

  it('does nothing without a prestager, or for a reservation that holds no task', async () => {
    const { nomad, prestager, actions } = setup();
    await actions.prestage('a', { id: '', node: 'a', targets: [], tasks: 0 });
    const bare = new NomadSchedulerActions(nomad.api, pino({ level: 'silent' }));
    await bare.prestage('a', await bare.reserve('a', 'risk high'));
    expect(prestager.asked).toEqual([]);
  });
});

class FakeCaller implements PeerPrestageCaller {
  readonly calls: { address: string; request: PrestageAllocTaskRequest }[] = [];
  answer: PrestageTaskResponse | Error = {
    checkpoint: { checkpointId: 'ck', sizeBytes: 9000 } as never,
    wireBytes: 3000,
    dumpMs: 40,
    shipMs: 50,
  };

  prestageAllocTask(address: string, request: PrestageAllocTaskRequest): Promise<PrestageTaskResponse> {
    this.calls.push({ address, request });
    return this.answer instanceof Error ? Promise.reject(this.answer) : Promise.resolve(this.answer);
  }
  close(): void {}
}

const TASK: PrestageTask = {
  allocId: 'alloc-1',
  taskName: 'kv',
  sourceNode: 'a',
  sourceAddress: '10.0.0.1:7451',
  targetNode: 'b',
  targetAddress: '10.0.0.2:7451',
};

describe('SidecarPrestager', () => {
  it("asks the source's sidecar, naming the task as Nomad does, and reports what was sent", async () => {
    const caller = new FakeCaller();
    const [outcome] = await new SidecarPrestager(caller, pino({ level: 'silent' })).prestage([TASK]);
    expect(caller.calls).toEqual([
      { address: '10.0.0.1:7451', request: { allocId: 'alloc-1', taskName: 'kv', peerAddress: '10.0.0.2:7451' } },
    ]);
    expect(outcome).toMatchObject({
      outcome: 'staged',
      checkpointId: 'ck',
      checkpointBytes: 9000,
      wireBytes: 3000,
      dumpMs: 40,
      shipMs: 50,
    });
  });

  it("reports the sidecar's own code when it refused, and goes on with the next task", async () => {
    const caller = new FakeCaller();
    caller.answer = new PeerError('NC_TASK_NOT_FOUND', 'no running task kv', 5);
    const outcomes = await new SidecarPrestager(caller, pino({ level: 'silent' })).prestage([
      TASK,
      { ...TASK, taskName: 'other' },
    ]);
    expect(outcomes.map((o) => (o.outcome === 'failed' ? o.code : o.outcome))).toEqual([
      'NC_TASK_NOT_FOUND',
      'NC_TASK_NOT_FOUND',
    ]);
    expect(caller.calls).toHaveLength(2);
  });

  it('skips a task whose target has no transfer address, without calling', async () => {
    const caller = new FakeCaller();
    const [outcome] = await new SidecarPrestager(caller, pino({ level: 'silent' })).prestage([
      { ...TASK, targetAddress: '' },
    ]);
    expect(outcome).toMatchObject({ outcome: 'failed', code: 'NC_PRESTAGE_TARGET_UNAVAILABLE' });
    expect(caller.calls).toEqual([]);
  });
});
