import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import type { Allocation } from '../../common/nomad-api';
import { buildTestModel, type TestModel } from '../fixtures/forecaster/test-model';
import { httpGet } from '../harness/programs';
import { JobAllocations } from './job-allocations';
import { NomadCluster, REPO, SIDECAR_JOB, freePort, waitFor } from './nomad-cluster';

/**
 * The cloud's side of an interruption notice, which no test host has: EC2's instance metadata service (IMDSv2)
 * as the sidecar's AwsImdsSource asks it, one per node. Until `interrupt` it answers 404 (no notice) like
 * EC2; afterwards the spot instance-action document.
 */
export class FakeImds {
  private action: { action: string; time: string } | undefined;
  readonly polls = { token: 0, instanceAction: 0 };
  private readonly server: Server = createServer((req, res) => this.answer(req, res));
  endpoint = '';

  static async start(): Promise<FakeImds> {
    const imds = new FakeImds();
    await new Promise<void>((resolve) => imds.server.listen(0, '127.0.0.1', resolve));
    imds.endpoint = `http://127.0.0.1:${(imds.server.address() as AddressInfo).port}`;
    return imds;
  }

  /** From now on the node has a spot interruption notice: terminated at `atMs`. */
  interrupt(atMs: number): void {
    this.action = { action: 'terminate', time: new Date(atMs).toISOString().replace(/\.\d{3}Z$/, 'Z') };
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private answer(req: IncomingMessage, res: ServerResponse): void {
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      this.polls.token += 1;
      res.writeHead(200).end('fake-imds-token');
    } else if (req.method === 'GET' && req.url === '/latest/meta-data/spot/instance-action') {
      this.polls.instanceAction += 1;
      if (this.action === undefined) res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(this.action));
    } else {
      res.writeHead(404).end();
    }
  }
}

/**
 * Re-runs the sidecar system job (before any chained task runs) as an operator wires telemetry: the job's
 * forecaster_address, and a config file per node (config_file holds ${node.unique.name}, which each client
 * interpolates) that samples every second and asks that node's own metadata service for notices. Resolves once
 * every node's new sidecar serves and has asked its metadata service.
 */
export async function runSidecarsWithTelemetry(
  cluster: NomadCluster,
  forecasterAddress: string,
  imds: ReadonlyMap<string, FakeImds>,
): Promise<void> {
  for (const client of cluster.clients) {
    const source = imds.get(client.name);
    if (source === undefined) throw new Error(`no metadata service for ${client.name}`);
    writeFileSync(
      path.join(cluster.dir, `${client.name}-sidecar.json`),
      JSON.stringify({
        telemetry: { interval: '1s', reconnectMax: '2s', sources: { aws: { endpoint: source.endpoint } } },
      }),
    );
  }
  const replaced = new Set([...(await cluster.sidecarAllocations()).values()].map((a) => a.ID));
  await cluster.runSidecarJob({
    forecaster_address: forecasterAddress,
    config_file: `${cluster.dir}/\${node.unique.name}-sidecar.json`,
  });
  await cluster.waitForSidecars(replaced);
  await waitFor('every sidecar to ask its metadata service', 60_000, async () =>
    [...imds.values()].every((source) => source.polls.instanceAction > 0) ? true : undefined,
  );
}

export interface ForecasterRun {
  readonly child: ChildProcess;
  /** Every JSON line it logged so far. */
  readonly lines: Record<string, unknown>[];
  readonly stderr: string[];
  readonly exited: Promise<number | null>;
}

/** Runs the forecaster's own main.ts (Nomad mode) with `env` added and `config` as its --config file. */
export function runForecaster(
  cluster: NomadCluster,
  name: string,
  env: Readonly<Record<string, string>>,
  config: Record<string, unknown>,
): ForecasterRun {
  const configPath = path.join(cluster.dir, `${name}.json`);
  writeFileSync(configPath, JSON.stringify(config));
  const base = { ...process.env };
  delete base.NOMAD_TOKEN;
  const child = spawn(
    process.execPath,
    [
      '-r',
      path.join(REPO, 'scripts', 'register.js'),
      path.join(REPO, 'forecaster', 'src', 'main.ts'),
      '--config',
      configPath,
    ],
    { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log = createWriteStream(path.join(cluster.dir, `${name}.log`), { flags: 'a' });
  const lines: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    log.write(`${line}\n`);
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      lines.push({ msg: line });
    }
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr.push(chunk.toString());
    log.write(chunk);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, lines, stderr, exited };
}

export async function stopForecaster(run: ForecasterRun): Promise<void> {
  if (run.child.exitCode !== null || run.child.signalCode !== null) return;
  run.child.kill('SIGTERM');
  await run.exited;
}

/**
 * A certificate of the cluster's sidecar CA for the forecaster (scripts/gen-certs.sh reuses the CA in the
 * cluster's tls dir), as an operator issues one: the sidecars' transfer ports hear only peers that CA signed.
 * Returns the forecaster's env for it.
 */
export async function forecasterSidecarTls(cluster: NomadCluster, name: string): Promise<Record<string, string>> {
  const dir = path.join(cluster.dir, 'tls');
  await promisify(execFile)('bash', [path.join(REPO, 'scripts', 'gen-certs.sh'), dir, name]);
  return {
    NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_CA: path.join(dir, 'ca.crt'),
    NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_CERT: path.join(dir, `${name}.crt`),
    NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_KEY: path.join(dir, `${name}.key`),
  };
}

/** The journal job's status page: lines written so far, and when its process started. */
export interface JournalStatus {
  seq: number;
  started: number;
}

/** Where reservation placeholders go: one job per fenced node. */
export const RESERVE_PREFIX = 'nomad-chain-reserve-';

/** A two-client cluster whose sidecars stream telemetry, with jobs/example-journal running and writing. */
export interface JournalCluster {
  readonly cluster: NomadCluster;
  readonly model: TestModel;
  /** host:port the sidecars stream telemetry to: where the forecaster must listen. */
  readonly telemetryAddress: string;
  readonly imds: ReadonlyMap<string, FakeImds>;
  readonly journal: JobAllocations;
  /** The journal's HTTP port on every client. */
  readonly port: number;
  /** The journal's first allocation, running and past 20 lines. */
  readonly first: Allocation;
  status(): Promise<JournalStatus>;
}

/**
 * What the forecaster tests start from: the cluster (sidecars as processes, re-run with telemetry to a
 * forecaster address and each node's stand-in metadata service), the exec driver healthy for placeholders, a
 * test model, and the journal job running.
 */
export async function startJournalCluster(): Promise<JournalCluster> {
  const cluster = await NomadCluster.create(2, { sidecar: 'process' });
  const imds = new Map<string, FakeImds>();
  try {
    return await journalOn(cluster, imds);
  } catch (err) {
    // Nothing else holds the cluster yet: what started must stop here.
    await cluster.teardown().catch(() => undefined);
    for (const source of imds.values()) await source.close();
    throw err;
  }
}

async function journalOn(cluster: NomadCluster, imds: Map<string, FakeImds>): Promise<JournalCluster> {
  await cluster.start();
  await cluster.waitForHealthyChainDriver(300_000);
  // Placeholders run under Nomad's exec driver (the forecaster's default placeholder task).
  await waitFor('the exec driver healthy on both clients', 120_000, async () => {
    const { value } = await cluster.api.listNodes();
    return value.every((n) => n.Drivers?.exec?.Healthy === true) ? true : undefined;
  });
  const model = await buildTestModel(path.join(cluster.dir, 'forecaster-model'));
  const telemetryAddress = `127.0.0.1:${await freePort()}`;
  for (const client of cluster.clients) imds.set(client.name, await FakeImds.start());
  await runSidecarsWithTelemetry(cluster, telemetryAddress, imds);
  await cluster.waitForHealthyChainDriver(300_000);
  const port = await freePort();
  await cluster.runJob('example-journal', { port });
  const journal = new JobAllocations(cluster, 'example-journal', 'journal');
  const status = async (): Promise<JournalStatus> =>
    JSON.parse((await httpGet(`http://127.0.0.1:${port}/`, 10_000)).body) as JournalStatus;
  const first = await journal.running();
  await waitFor('the journal to pass 20 lines', 120_000, async () => ((await status()).seq >= 20 ? true : undefined));
  return { cluster, model, telemetryAddress, imds, journal, port, first, status };
}

/** Stops the forecasters, the journal and any placeholder, waits for every allocation to stop, tears down. */
export async function stopJournalCluster(
  journal: JournalCluster | undefined,
  runs: readonly ForecasterRun[],
): Promise<void> {
  for (const run of runs) await stopForecaster(run);
  if (journal === undefined) return;
  const { cluster } = journal;
  await cluster.nomad(['job', 'stop', '-purge', journal.journal.job]).catch(() => undefined);
  for (const c of cluster.clients) {
    await cluster.api.deregisterJob(`${RESERVE_PREFIX}${c.name}`, { purge: true }).catch(() => undefined);
  }
  // The sidecars' allocations run on until teardown: waiting for those too only ever ran out the 120 s.
  await waitFor('every test allocation to stop', 120_000, async () => {
    const { value } = await cluster.api.listAllocations();
    const tests = value.filter((a) => a.JobID !== SIDECAR_JOB);
    return tests.every((a) => a.ClientStatus !== 'running' && a.ClientStatus !== 'pending') ? true : undefined;
  }).catch(() => undefined);
  await cluster.teardown();
  for (const source of journal.imds.values()) await source.close();
}
