import pino from 'pino';
import type { AgentService, RegisterOptions } from '../../../common/consul';
import type { Instance } from '../../../common/router';
import { ConsulHandover, nomadServicePrefix, standInId } from '../../../plugin/src/consul-handover';
import type { ConsulAgentApi } from '../../../plugin/src/consul-handover';
import { FakeClock } from '../../fakes/fake-clock';

const ALLOC = '6674225d-5775-b455-2526-ec80868f13f0';
const NOMAD_ID = `${nomadServicePrefix(ALLOC)}group-web-example-consul-http`;
const service: AgentService = {
  id: NOMAD_ID,
  service: 'example-consul',
  address: '127.0.0.1',
  port: 18082,
  tags: ['t'],
};

/** A Consul agent in memory: Nomad's check turns passing after `passAfterReads` reads of it. */
class FakeAgent implements ConsulAgentApi {
  readonly calls: string[] = [];
  readonly registered: { instance: Instance; options: RegisterOptions }[] = [];
  services: AgentService[] = [service];
  checkReads = 0;
  passAfterReads = 3;
  failServices: Error | undefined;

  async agentServices(filter: string): Promise<AgentService[]> {
    this.calls.push(`services ${filter}`);
    if (this.failServices !== undefined) throw this.failServices;
    return this.services;
  }

  async serviceCheckStatuses(serviceId: string): Promise<string[]> {
    this.calls.push(`checks ${serviceId}`);
    this.checkReads++;
    return [this.checkReads > this.passAfterReads ? 'passing' : 'critical'];
  }

  async register(instance: Instance, options: RegisterOptions): Promise<void> {
    this.calls.push(`register ${instance.id}`);
    this.registered.push({ instance, options });
  }

  async deregister(instance: Instance): Promise<void> {
    this.calls.push(`deregister ${instance.id}`);
  }
}

const silent = pino({ level: 'silent' });
let agent: FakeAgent;
let clock: FakeClock;
let probed: string[];

/** The restored port answers the first `answers` probes. */
function handover(answers = Number.POSITIVE_INFINITY, maxStandInMs = 30_000): ConsulHandover {
  return new ConsulHandover(
    agent,
    clock,
    silent,
    async (address, port) => {
      probed.push(`${address}:${port}`);
      return probed.length <= answers;
    },
    { pollMs: 100, maxStandInMs },
  );
}

beforeEach(() => {
  agent = new FakeAgent();
  clock = new FakeClock();
  probed = [];
});

test("a restored instance is listed passing under a stand-in until Nomad's own check passes", async () => {
  await handover().bridge(ALLOC, 'node-b');
  // Once before registering, then beside each read of Nomad's check until it passes.
  expect(probed).toEqual(['127.0.0.1:18082', '127.0.0.1:18082', '127.0.0.1:18082']);
  expect(agent.registered).toEqual([
    {
      instance: {
        service: 'example-consul',
        id: standInId(NOMAD_ID),
        address: '127.0.0.1',
        port: 18082,
        node: 'node-b',
      },
      options: {
        check: { kind: 'ttl', ttlMs: 30_000 },
        initialStatus: 'passing',
        deregisterCriticalAfterMs: 60_000,
        tags: ['t'],
        meta: { 'nomad-chain-stand-in-for': NOMAD_ID },
      },
    },
  ]);
  expect(standInId(NOMAD_ID).startsWith('_nomad-')).toBe(false);
  expect(agent.calls).toEqual([
    `services ID contains "${ALLOC}"`,
    `checks ${NOMAD_ID}`,
    `register ${standInId(NOMAD_ID)}`,
    `checks ${NOMAD_ID}`,
    `checks ${NOMAD_ID}`,
    `checks ${NOMAD_ID}`,
    `deregister ${standInId(NOMAD_ID)}`,
  ]);
});

test('only the allocation’s own Nomad services are bridged; one already passing is left alone', async () => {
  agent.services = [
    { ...service, id: `nomad-chain-restored-${NOMAD_ID}` },
    { ...service, id: `x-${ALLOC}` },
  ];
  await handover().bridge(ALLOC, 'node-b');
  expect(agent.registered).toEqual([]);

  agent.services = [service];
  agent.passAfterReads = 0;
  await handover().bridge(ALLOC, 'node-b');
  expect(agent.registered).toEqual([]);
  expect(probed).toEqual([]);
});

test('a port that does not answer, or no address, gets no stand-in', async () => {
  await handover(0).bridge(ALLOC, 'node-b');
  expect(agent.registered).toEqual([]);
  agent.services = [{ ...service, address: '' }];
  await handover().bridge(ALLOC, 'node-b');
  expect(agent.registered).toEqual([]);
});

test("the stand-in goes after maxStandInMs even if Nomad's check never passes", async () => {
  agent.passAfterReads = Number.POSITIVE_INFINITY;
  const started = clock.now();
  await handover(Number.POSITIVE_INFINITY, 1000).bridge(ALLOC, 'node-b');
  expect(agent.calls.at(-1)).toBe(`deregister ${standInId(NOMAD_ID)}`);
  expect(clock.now() - started).toBe(1000);
});

test('the stand-in goes as soon as the restored port stops answering', async () => {
  agent.passAfterReads = Number.POSITIVE_INFINITY;
  const started = clock.now();
  await handover(3).bridge(ALLOC, 'node-b');
  expect(agent.calls.at(-1)).toBe(`deregister ${standInId(NOMAD_ID)}`);
  expect(probed).toHaveLength(4);
  expect(clock.now() - started).toBe(200);
});

test('a Consul failure is logged, never thrown', async () => {
  agent.failServices = new Error('connection refused');
  await expect(handover().bridge(ALLOC, 'node-b')).resolves.toBeUndefined();
  expect(agent.registered).toEqual([]);
});
