/**
 * @jest-environment ./test/fixtures/forecaster/onnx-environment.js
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import pino from 'pino';
import { HttpNomadApi } from '../../../common/nomad-api';
import { NomadSchedulerActions } from '../../../forecaster/src/actions/nomad-scheduler-actions';
import { parseConfig } from '../../../forecaster/src/config';
import { loadFeatureSpec } from '../../../forecaster/src/features/feature-spec';
import { ForecasterService } from '../../../forecaster/src/forecaster-service';
import type { NodeRiskReport } from '../../../forecaster/src/forecaster';
import { TelemetryClient } from '../../../proto/gen/chain/v1/telemetry';
import type { TelemetryAck, TelemetryBatch } from '../../../proto/gen/chain/v1/telemetry';
import { FIXTURE, HttpStandIn, NOMAD_TOKEN } from '../../contract/http-standin';
import { FakeClock } from '../../fakes/fake-clock';
import { FEATURE_SPEC } from '../../fixtures/forecaster/python';
import { buildTestModel } from '../../fixtures/forecaster/test-model';

// The whole forecaster with real parts: gRPC telemetry ingest, onnxruntime-node scoring a scikit-learn model
// exported with skl2onnx, the Nomad adapter over the typed HTTP client, and a Nomad stand-in that decodes every
// request strictly into HashiCorp's nomad/api structs. Only time is simulated (the policy's minutes).
const SECOND = 1000;
const MINUTE = 60 * SECOND;

class Agent {
  private seq = 0;
  private readonly acks: TelemetryAck[] = [];
  private waiter: (() => void) | undefined;

  constructor(
    private readonly node: string,
    private readonly call: ClientDuplexStream<TelemetryBatch, TelemetryAck>,
  ) {
    call.on('data', (ack: TelemetryAck) => {
      this.acks.push(ack);
      this.waiter?.();
    });
  }

  /** Streams one sample every 15 s over (fromMs, toMs] with the given CPU, and waits for the ack. */
  async report(cpu: number, fromMs: number, toMs: number): Promise<void> {
    const samples = [];
    for (let t = fromMs + 15 * SECOND; t <= toMs; t += 15 * SECOND) {
      this.seq += 1;
      samples.push({
        seq: this.seq,
        timeUnixMs: t,
        cpuUtilisation: cpu,
        memory: { source: 1, someAvg10: 0, fullAvg10: 0, usedFraction: 0.4 },
        netRxBytesPerS: 1000,
        netTxBytesPerS: 1000,
        diskReadBytesPerS: 0,
        diskWriteBytesPerS: 4096,
        signals: [],
        events: [],
        signalsOnly: false,
      });
    }
    const want = this.seq;
    const acked = new Promise<void>((resolve) => {
      this.waiter = () => {
        if (this.acks.some((a) => a.ackedSeq >= want)) resolve();
      };
    });
    this.call.write({ node: this.node, nodePool: 'spot', nodeClass: 'gpu', samples });
    await acked;
  }

  close(): void {
    this.call.end();
  }
}

describe('predictive drain through the Nomad adapter', () => {
  let root: string;
  let standIn: HttpStandIn;
  let service: ForecasterService;
  let client: InstanceType<typeof TelemetryClient>;
  let nomad: HttpNomadApi;
  const clock = new FakeClock(1_764_000_000_000);
  let a: Agent;
  let b: Agent;

  const risk = async (node: string): Promise<NodeRiskReport> => {
    const res = await fetch(`http://127.0.0.1:${service.httpPort}/v1/risk/${node}`);
    expect(res.status).toBe(200);
    return (await res.json()) as NodeRiskReport;
  };
  const tick = async (): Promise<void> => {
    await service.forecaster.tick();
    await service.forecaster.settle();
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'nc-c2-drain-'));
    const [, standInStarted] = await Promise.all([buildTestModel(join(root, 'model')), HttpStandIn.start()]);
    standIn = standInStarted;
    const log = pino({ level: 'silent' });
    nomad = new HttpNomadApi({ address: standIn.nomadAddress, token: NOMAD_TOKEN, timeoutMs: 20_000 });
    const config = parseConfig({
      modelDir: join(root, 'model'),
      telemetryAddress: '127.0.0.1',
      telemetryPort: 0,
      httpAddress: '127.0.0.1',
      httpPort: 0,
      modelPoll: 0,
      staleAfter: '1h',
      policy: {
        enterThreshold: 0.7,
        exitThreshold: 0.4,
        drainAfter: '2m',
        drainDeadline: '15m',
        cooldown: '10m',
        maxConcurrentDrains: 2,
        minHealthyNodes: 0,
      },
    });
    service = await ForecasterService.create({
      config,
      spec: loadFeatureSpec(FEATURE_SPEC),
      clock,
      log,
      actions: new NomadSchedulerActions(nomad, log),
    });
    client = new TelemetryClient(`127.0.0.1:${service.telemetryPort}`, credentials.createInsecure());
    a = new Agent('client-a', client.stream());
    b = new Agent('client-b', client.stream());
  });

  afterAll(async () => {
    a?.close();
    b?.close();
    client?.close();
    await service?.stop();
    await standIn?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('fences, reserves and drains a node whose risk stays high, and undoes a fence when risk falls first', async () => {
    // Quiet start: both nodes report low CPU; nobody is fenced.
    const t0 = clock.now();
    await Promise.all([a.report(0.1, t0 - 6 * MINUTE, t0), b.report(0.1, t0 - 6 * MINUTE, t0)]);
    await tick();
    expect((await risk('client-a')).risk).toBeLessThan(0.3);
    expect((await risk('client-b')).phase).toBe('healthy');

    // Five minutes of high CPU on both: risk crosses the threshold, both are fenced and capacity is reserved.
    clock.advance(5 * MINUTE);
    await Promise.all([a.report(0.95, t0, clock.now()), b.report(0.95, t0, clock.now())]);
    await tick();
    const fencedA = await risk('client-a');
    const fencedB = await risk('client-b');
    expect(fencedA.risk).toBeGreaterThan(0.7);
    expect(fencedA.phase).toBe('fenced');
    expect(fencedB.phase).toBe('fenced');
    expect(fencedB.decisions.map((d) => d.action)).toEqual(['fence']);
    expect(fencedB.decisions[0]?.reasons[0]).toMatch(
      /^risk 0\.\d+ >= pre-warn threshold 0\.700 \(pool spot, class gpu\)$/,
    );
    expect((await nomad.getNode(FIXTURE.nodeA)).value.SchedulingEligibility).toBe('ineligible');
    expect((await nomad.getNode(FIXTURE.nodeB)).value.SchedulingEligibility).toBe('ineligible');
    // client-b has a chained (pending) allocation: a low-priority placeholder job holds room for it elsewhere.
    expect(fencedB.reservation).toMatchObject({ id: 'nomad-chain-reserve-client-b', node: 'client-b', tasks: 1 });
    const registered = (await standIn.report()).requests.filter((r) => r.method === 'PUT' && r.path === '/v1/jobs');
    expect(registered).toHaveLength(1);
    const job = (JSON.parse(registered[0]?.body ?? '{}') as { Job: Record<string, unknown> }).Job;
    expect(job).toMatchObject({ ID: 'nomad-chain-reserve-client-b', Priority: 1, Type: 'service' });
    expect(job.Constraints).toEqual([{ LTarget: '${node.unique.id}', RTarget: FIXTURE.nodeB, Operand: '!=' }]);

    // client-b calms down before its drain starts; client-a stays hot past drainAfter.
    const t1 = clock.now();
    clock.advance(6 * MINUTE);
    await Promise.all([a.report(0.95, t1, clock.now()), b.report(0.05, t1, clock.now())]);
    await tick();

    const drained = await risk('client-a');
    expect(drained.phase).toBe('draining');
    expect(drained.decisions.map((d) => d.action)).toEqual(['fence', 'drain']);
    expect(drained.decisions[1]?.reasons.join('; ')).toMatch(/>= drain threshold 0\.700 after 360 s fenced/);
    const nodeA = (await nomad.getNode(FIXTURE.nodeA)).value;
    expect(nodeA.DrainStrategy?.Deadline).toBe(15 * MINUTE * 1_000_000);
    expect(nodeA.LastDrain?.Meta?.['nomad_chain.decision']).toBe(String(drained.decisions[1]?.id));
    expect(nodeA.LastDrain?.Meta?.['nomad_chain.reason']).toMatch(
      /forecaster decision \d+: risk .* >= drain threshold/,
    );

    const undone = await risk('client-b');
    expect(undone.phase).toBe('healthy');
    expect(undone.decisions.map((d) => d.action)).toEqual(['fence', 'undo']);
    expect(undone.decisions[1]?.reasons[0]).toMatch(/fell below exit threshold 0\.400 before the drain started/);
    expect(undone.reservation).toBeNull();
    expect((await nomad.getNode(FIXTURE.nodeB)).value.SchedulingEligibility).toBe('eligible');
    const requests = (await standIn.report()).requests;
    expect(
      requests.some(
        (r) =>
          r.method === 'DELETE' && r.path === '/v1/job/nomad-chain-reserve-client-b' && r.query.includes('purge=true'),
      ),
    ).toBe(true);

    // The whole story is on /v1/risk and /metrics, and every Nomad call decoded into nomad/api structs.
    const all = (await (await fetch(`http://127.0.0.1:${service.httpPort}/v1/risk`)).json()) as {
      nodes: NodeRiskReport[];
    };
    expect(all.nodes.map((n) => [n.node, n.phase])).toEqual([
      ['client-a', 'draining'],
      ['client-b', 'healthy'],
    ]);
    const metrics = await (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^nc_forecaster_node_risk\{node="client-a",pool="spot"\} 0\.\d+$/m);
    expect(metrics).toMatch(/^nc_forecaster_actions_total\{action="undo"\} 1$/m);
    expect(metrics).toMatch(/^nc_forecaster_nodes_scored 2$/m);
    expect((await standIn.report()).failures).toEqual([]);
  });

  it('refuses a corrupt model written into modelDir and keeps serving; takes a good one', async () => {
    const serving = service.model.card.version;
    const modelDir = join(root, 'model');
    const bytes = readFileSync(join(modelDir, 'model.onnx'));
    writeFileSync(join(modelDir, 'model.onnx'), bytes.subarray(0, 100));
    await expect(service.loadModel()).rejects.toMatchObject({ code: 'NC_MODEL_CORRUPT' });
    expect(service.model.card.version).toBe(serving);
    await tick();
    expect(service.forecaster.stats.scoreFailures).toBe(0);
    let metrics = await (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^nc_forecaster_model_refusals_total 1$/m);
    expect(metrics).toContain(`nc_forecaster_model_info{version="${serving}"`);

    await buildTestModel(modelDir, 'test-2');
    await service.loadModel();
    expect(service.model.card.version).toBe('test-2');
    metrics = await (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text();
    expect(metrics).toContain('nc_forecaster_model_info{version="test-2"');
  });
});
