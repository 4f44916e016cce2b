import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import type { NomadCluster } from './nomad-cluster';
import { REPO, waitFor } from './nomad-cluster';

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
