import pino from 'pino';
import type { Event, NomadApi } from '../../../common/nomad-api';
import { NomadSchedulerEvents } from '../../../forecaster/src/events/nomad-scheduler-events';
import { FakeClock } from '../../fakes/fake-clock';

const nodeEvent = (type: string, node: Record<string, unknown>, index = 1): Event => ({
  Topic: 'Node',
  Type: type,
  Key: typeof node.ID === 'string' ? node.ID : 'id-1',
  FilterKeys: null,
  Index: index,
  Payload: {
    Node: {
      ID: 'id-1',
      Name: 'client-a',
      NodePool: 'spot',
      NodeClass: 'gpu',
      Status: 'ready',
      DrainStrategy: null,
      LastDrain: null,
      ...node,
    },
  },
});

describe('NomadSchedulerEvents.translate', () => {
  const clock = new FakeClock(5_000);
  const events = (): NomadSchedulerEvents => new NomadSchedulerEvents({} as NomadApi, clock, pino({ level: 'silent' }));

  it('turns registration, drain start, drain completion and a vanishing node into scheduler events', () => {
    const e = events();
    expect(e.translate(nodeEvent('NodeRegistration', {}))).toEqual([
      { type: 'node-joined', node: 'client-a', pool: 'spot', nodeClass: 'gpu', timeMs: 5000 },
    ]);
    // An eligibility change alone (also type NodeDrain in Nomad) says nothing new.
    expect(e.translate(nodeEvent('NodeDrain', { SchedulingEligibility: 'ineligible' }))).toEqual([]);
    expect(
      e.translate(
        nodeEvent('NodeDrain', {
          DrainStrategy: { Deadline: 1 },
          LastDrain: { Status: 'draining', Meta: { 'nomad_chain.reason': 'risk high' } },
        }),
      ),
    ).toEqual([{ type: 'drain-started', node: 'client-a', timeMs: 5000, detail: 'risk high' }]);
    expect(e.translate(nodeEvent('NodeDrain', { DrainStrategy: null, LastDrain: { Status: 'complete' } }))).toEqual([
      { type: 'drain-complete', node: 'client-a', timeMs: 5000 },
    ]);
    // Drained, then down: an orderly departure, not a pre-emption.
    expect(
      e.translate(
        nodeEvent('NodeStreamEvent', {
          Status: 'down',
          StatusDescription: 'node heartbeat missed',
          LastDrain: { Status: 'complete' },
        }),
      ),
    ).toEqual([
      { type: 'node-left', node: 'client-a', preempted: false, timeMs: 5000, detail: 'node heartbeat missed' },
    ]);
  });

  it('counts a node that goes down without a drain as pre-empted, and a canceled drain as canceled', () => {
    const e = events();
    e.translate(nodeEvent('NodeRegistration', { Name: 'b' }));
    e.translate(nodeEvent('NodeDrain', { Name: 'b', DrainStrategy: { Deadline: 1 } }));
    expect(
      e.translate(nodeEvent('NodeDrain', { Name: 'b', DrainStrategy: null, LastDrain: { Status: 'canceled' } })),
    ).toEqual([{ type: 'drain-canceled', node: 'b', timeMs: 5000 }]);
    expect(
      e.translate(nodeEvent('NodeStreamEvent', { Name: 'b', Status: 'down', StatusDescription: 'missed heartbeats' })),
    ).toEqual([{ type: 'node-left', node: 'b', preempted: true, timeMs: 5000, detail: 'missed heartbeats' }]);
    expect(e.translate(nodeEvent('NodeDeregistration', { Name: 'b' }))).toEqual([
      { type: 'node-left', node: 'b', preempted: false, timeMs: 5000, detail: 'deregistered' },
    ]);
    expect(e.translate({ ...nodeEvent('AllocationUpdated', {}), Topic: 'Allocation' })).toEqual([]);
  });

  it('follows the stream from the index after the last one it delivered', async () => {
    const asked: (number | undefined)[] = [];
    const api = {
      async *events(options: { index?: number }) {
        asked.push(options.index);
        yield { Index: 41, Events: [nodeEvent('NodeRegistration', {}, 41)] };
      },
    } as unknown as NomadApi;
    const e = new NomadSchedulerEvents(api, clock, pino({ level: 'silent' }));
    const seen: string[] = [];
    await e.follow((ev) => seen.push(ev.type), new AbortController().signal);
    await e.follow((ev) => seen.push(ev.type), new AbortController().signal);
    expect(asked).toEqual([undefined, 42]);
    expect(e.index).toBe(41);
    expect(seen).toEqual(['node-joined']);
  });
});
