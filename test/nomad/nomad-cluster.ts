import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  closeSync,
  constants,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { errorMessage } from '../../common/errors';
import { freePort } from '../../common/free-port';
import { HttpNomadApi } from '../../common/nomad-api';
import type { AllocationListStub, NodeListStub } from '../../common/nomad-api';
import { GrpcSidecarApi } from '../../common/sidecar-api/grpc-sidecar-api';

export { freePort };

const execFileAsync = promisify(execFile);
export const REPO = path.resolve(__dirname, '..', '..');
/**
 * Prefix of every name this tier creates (nodes, cgroups, temp dirs), so cleanup never touches others'; each
 * cluster adds its own random part so two clusters on one host (parallel runs) never share a node or cgroup.
 */
const PREFIX = 'ncb2';

const CACHE = process.env.NOMAD_CHAIN_CACHE ?? '/var/cache/nomad-chain';
/** The versions scripts/setup.sh builds (scripts/hashicorp-build/). */
export const NOMAD_VERSION = '1.6.3';
export const CONSUL_VERSION = '1.16.1';

/** An override (an operator's own build), else the set-up's cached build; a loud failure without either. */
function requireBin(env: string, name: string, version: string): string {
  const override = process.env[env];
  const bin = override !== undefined && override !== '' ? override : path.join(CACHE, 'bin', `${name}-${version}`);
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(
      override === undefined || override === ''
        ? `${name} ${version} is missing at ${bin}: npm run setup builds it (or set ${env} to another build)`
        : `${env}=${bin} is not an executable file`,
    );
  }
  return bin;
}

export function requireNomadBin(): string {
  return requireBin('NOMAD_BIN', 'nomad', NOMAD_VERSION);
}

export function requireConsulBin(): string {
  return requireBin('CONSUL_BIN', 'consul', CONSUL_VERSION);
}

/**
 * Nomad launches the plugin three times at every client start; from the TypeScript sources that took ~14 s,
 * past the server's 10 s heartbeat grace (a restarted client's allocations were marked lost). The tier
 * therefore runs the built plugin only, as production does, and the built sidecar of the system job (its
 * start from the sources took 7-8 s): `npm run test:nomad` builds both first.
 */
function requireBuilt(): void {
  for (const [entry, sources] of [
    ['plugin', 'plugin/src'],
    ['sidecar', 'sidecar/src'],
  ] as const) {
    const built = path.join(REPO, 'dist', entry, 'src', 'main.js');
    try {
      accessSync(built);
    } catch {
      throw new Error(`${built} is missing: run npm run build (npm run test:nomad does) before the real-Nomad tier`);
    }
    const stale = execFileSync(
      'sh',
      ['-c', `find ${sources} common proto/gen -name '*.ts' -newer "$1" | head -n 1`, 'sh', built],
      { cwd: REPO, encoding: 'utf8' },
    ).trim();
    if (stale !== '') throw new Error(`${built} is older than ${stale}: run npm run build before the real-Nomad tier`);
  }
}

/** Thrown by a waitFor probe to stop waiting at once: the awaited state can no longer come. */
export class GiveUp extends Error {}

export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      if (err instanceof GiveUp) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${errorMessage(last)}`}`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * A Nomad or Consul agent of the cluster. Its pid lives in a file, not in a ChildProcess: the tier's shared
 * cluster is started by Jest's global setup and stopped, restarted and torn down from other modules.
 */
interface Agent {
  readonly name: string;
  readonly configPath: string;
  readonly logPath: string;
  readonly pidPath: string;
}

/** Everything a test file needs to attach to a cluster another module started (JSON, see attach()). */
export interface NomadClusterDescriptor {
  readonly nomadBin: string;
  readonly consulBin: string;
  readonly dir: string;
  readonly serverHttpPort: number;
  readonly serverRpcPort: number;
  readonly pluginDir: string;
  readonly consulHttpPort: number;
  readonly server: Agent;
  readonly consulServer: Agent;
  readonly clients: readonly Omit<ClientNode, 'sidecar'>[];
  readonly sidecarMode: 'job' | 'process';
  readonly managementToken: string;
}

export interface ClientNode {
  readonly name: string;
  readonly httpPort: number;
  /** HTTP port of this client's own Consul agent. */
  readonly consulHttpPort: number;
  readonly consul: Agent;
  readonly sidecarDir: string;
  readonly agent: Agent;
  /** The sidecar process, when the cluster spawns it (`sidecar: 'process'`). */
  sidecar?: ChildProcess;
}

export interface NomadClusterOptions {
  /**
   * How each client gets its sidecar: 'job' = the documented system job jobs/chain-sidecar.nomad.hcl (built
   * sidecar, raw_exec), as production runs it; 'process' = a process this harness spawns from the sources, for
   * tests that replace it with their own (forecaster-harness). @default 'job'
   */
  readonly sidecar?: 'job' | 'process';
}

/** The system job that runs every client's sidecar. */
export const SIDECAR_JOB = 'chain-sidecar';

/**
 * One Nomad server and N clients on loopback, each client with the `chain` plugin in its plugin_dir and its
 * own sidecar, and a Consul server with one Consul client agent per Nomad client (two Nomad clients sharing
 * one agent deregister each other's services: each syncs the agent to its own allocations). All under one
 * temp dir; logs stay there for the report.
 */
export class NomadCluster {
  /**
   * Nomad's CLI environment: NOMAD_ADDR (https), NOMAD_CACERT, NODE_EXTRA_CA_CERTS (for Node programs), and
   * NOMAD_TOKEN (the management token) once start() bootstrapped ACLs.
   */
  readonly env: NodeJS.ProcessEnv;
  private managementToken = '';
  private serverApi: HttpNomadApi;

  private constructor(
    readonly nomadBin: string,
    readonly consulBin: string,
    readonly dir: string,
    readonly serverHttpPort: number,
    private readonly serverRpcPort: number,
    private readonly pluginDir: string,
    readonly consulHttpPort: number,
    private readonly server: Agent,
    private readonly consulServer: Agent,
    readonly clients: ClientNode[],
    readonly sidecarMode: 'job' | 'process',
  ) {
    this.serverApi = this.apiFor(serverHttpPort, undefined);
    this.env = {
      ...process.env,
      NOMAD_ADDR: `https://127.0.0.1:${serverHttpPort}`,
      NOMAD_CACERT: this.nomadCaFile,
      // Node programs of the tier (the forecaster) trust the agents' CA without a setting of their own.
      NODE_EXTRA_CA_CERTS: this.nomadCaFile,
    };
    delete this.env.NOMAD_TOKEN;
  }

  /** The CA of the Nomad agents' certificates (HTTP and RPC run over TLS, as production clusters do). */
  get nomadCaFile(): string {
    return path.join(this.dir, 'nomad-tls', 'ca.crt');
  }

  /** What attach() needs to reach this cluster from another module, once start() bootstrapped ACLs. */
  describe(): NomadClusterDescriptor {
    return {
      nomadBin: this.nomadBin,
      consulBin: this.consulBin,
      dir: this.dir,
      serverHttpPort: this.serverHttpPort,
      serverRpcPort: this.serverRpcPort,
      pluginDir: this.pluginDir,
      consulHttpPort: this.consulHttpPort,
      server: this.server,
      consulServer: this.consulServer,
      clients: this.clients.map(({ sidecar: _sidecar, ...client }) => client),
      sidecarMode: this.sidecarMode,
      managementToken: this.managementToken,
    };
  }

  /** The cluster a descriptor describes, running as another module left it. */
  static attach(d: NomadClusterDescriptor): NomadCluster {
    const cluster = new NomadCluster(
      d.nomadBin,
      d.consulBin,
      d.dir,
      d.serverHttpPort,
      d.serverRpcPort,
      d.pluginDir,
      d.consulHttpPort,
      d.server,
      d.consulServer,
      d.clients.map((c) => ({ ...c })),
      d.sidecarMode,
    );
    cluster.useManagementToken(d.managementToken);
    return cluster;
  }

  /** The server's HTTP API with the management token (after start()). */
  get api(): HttpNomadApi {
    return this.serverApi;
  }

  /** An HTTP API client of an agent of this cluster with the given token. */
  apiFor(httpPort: number, token: string | undefined): HttpNomadApi {
    return new HttpNomadApi({
      address: `https://127.0.0.1:${httpPort}`,
      token,
      tls: { ca: readFileSync(this.nomadCaFile) },
      timeoutMs: 30_000,
    });
  }

  static async create(clientCount: number, options: NomadClusterOptions = {}): Promise<NomadCluster> {
    const nomadBin = requireNomadBin();
    const consulBin = requireConsulBin();
    requireBuilt();
    const dir = mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-nomad-`));
    // Like /var/lib on a host: tasks run as their own user in their own user namespace, and runc mounts their
    // root from under this dir, which mkdtemp's 0700 would hide from them.
    chmodSync(dir, 0o755);
    const nomadTls = path.join(dir, 'nomad-tls');
    // Nomad's agents verify each other by role: server.<region>.nomad and client.<region>.nomad.
    await execFileAsync(
      'bash',
      [path.join(REPO, 'scripts', 'gen-certs.sh'), nomadTls, 'server.global.nomad', 'client.global.nomad'],
      { env: { ...process.env, GEN_CERTS_CA_NAME: 'nomad-chain test Nomad CA' } },
    );
    const prefix = `${PREFIX}${randomBytes(2).toString('hex')}`;
    const consulServerSerf = await freePort();
    const consulServer = await writeConsulConfig(dir, `${prefix}-consul-server`, consulServerSerf, true);
    const [http, rpc, serf] = [await freePort(), await freePort(), await freePort()];
    const serverConfig = path.join(dir, 'server.hcl');
    writeFileSync(
      serverConfig,
      `name = "${prefix}-server"
data_dir = "${dir}/server"
bind_addr = "127.0.0.1"
disable_update_check = true
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
ports {
  http = ${http}
  rpc  = ${rpc}
  serf = ${serf}
}
server {
  enabled          = true
  bootstrap_expect = 1
}
acl {
  enabled = true
}
${nomadTlsBlock(nomadTls, 'server')}
consul {
  address          = "127.0.0.1:${consulServer.httpPort}"
  server_auto_join = false
}
`,
    );
    const pluginDir = path.join(dir, 'plugins');
    mkdirSync(pluginDir);
    symlinkSync(path.join(REPO, 'plugin', 'bin', 'chain'), path.join(pluginDir, 'chain'));
    const clients: ClientNode[] = [];
    for (let i = 1; i <= clientCount; i++) {
      const name = `${prefix}-c${i}`;
      const httpPort = await freePort();
      const sidecarDir = path.join(dir, name, 'sidecar');
      mkdirSync(sidecarDir, { recursive: true });
      const consul = await writeConsulConfig(dir, `${name}-consul`, consulServerSerf, false);
      const configPath = path.join(dir, `${name}.hcl`);
      clients.push({
        name,
        httpPort,
        consulHttpPort: consul.httpPort,
        consul: consul.agent,
        sidecarDir,
        agent: agentFiles(dir, name, configPath),
      });
    }
    const server = { ...agentFiles(dir, 'server', serverConfig), name: `${prefix}-server` };
    return new NomadCluster(
      nomadBin,
      consulBin,
      dir,
      http,
      rpc,
      pluginDir,
      consulServer.httpPort,
      server,
      consulServer.agent,
      clients,
      options.sidecar ?? 'job',
    );
  }

  async start(): Promise<void> {
    this.launchConsul(this.consulServer);
    await waitFor('a Consul leader', 60_000, async () => {
      const res = await fetch(`http://127.0.0.1:${this.consulHttpPort}/v1/status/leader`);
      const leader = (await res.json()) as string;
      return leader === '' ? undefined : leader;
    });
    for (const client of this.clients) this.launchConsul(client.consul);
    await waitFor('every Consul client agent in the cluster', 60_000, async () => {
      const res = await fetch(`http://127.0.0.1:${this.consulHttpPort}/v1/catalog/nodes`);
      const nodes = (await res.json()) as { Node: string }[];
      return this.clients.every((c) => nodes.some((n) => n.Node === c.consul.name)) ? true : undefined;
    });
    this.launch(this.server);
    await waitFor('a Nomad leader', 60_000, async () => {
      const { status, body } = await this.nomadGet('/v1/status/leader');
      const leader = status === 200 ? (JSON.parse(body) as string) : '';
      return leader === '' ? undefined : leader;
    });
    await this.bootstrapAcl();
    const pluginToken = await this.createToken(
      'chain-plugin',
      readFileSync(path.join(REPO, 'jobs', 'chain-plugin.policy.hcl'), 'utf8'),
    );
    for (const client of this.clients) this.writeClientConfig(client, pluginToken);
    // The sidecars' State Transfer Protocol runs over mutual TLS: one CA, one certificate per node.
    await execFileAsync('bash', [
      path.join(REPO, 'scripts', 'gen-certs.sh'),
      path.join(this.dir, 'tls'),
      ...this.clients.map((c) => c.name),
    ]);
    if (this.sidecarMode === 'process') {
      for (const client of this.clients) {
        await this.startSidecar(client);
        this.launch(client.agent);
      }
      return;
    }
    for (const client of this.clients) this.launch(client.agent);
    await waitFor('every client ready with raw_exec', 120_000, async () => {
      const { value } = await this.api.listNodes();
      const ready = value.filter(
        (n) => this.clients.some((c) => c.name === n.Name) && n.Status === 'ready' && n.Drivers?.raw_exec?.Healthy,
      );
      return ready.length === this.clients.length ? true : undefined;
    });
    await this.runSidecarJob();
    await this.waitForSidecars();
  }

  /**
   * Runs (or re-runs, which replaces every sidecar allocation when a variable changed) the sidecar system job
   * with this cluster's paths; `vars` adds or overrides job variables. Returns once Nomad accepted it.
   */
  async runSidecarJob(vars: Readonly<Record<string, string>> = {}): Promise<void> {
    await this.runJob(SIDECAR_JOB, {
      repo_dir: REPO,
      // Interpolated by each client: every node has its own data dir, as the plugin's sidecar_socket says.
      data_dir: `${this.dir}/\${node.unique.name}/sidecar`,
      tls_dir: path.join(this.dir, 'tls'),
      grpc_port: '0',
      transfer_port: '0',
      log_level: 'debug',
      ...vars,
    });
  }

  /** `nomad job run -detach` of `jobs/<job>.nomad.hcl` with `vars` as its -var flags; returns once Nomad took it. */
  async runJob(job: string, vars: Readonly<Record<string, string | number | boolean>> = {}): Promise<void> {
    const flags = Object.entries(vars).flatMap(([k, v]) => ['-var', `${k}=${v}`]);
    await this.nomad(['job', 'run', '-detach', ...flags, path.join(REPO, 'jobs', `${job}.nomad.hcl`)]);
  }

  /** The running allocation of the sidecar job on each client, by client name. */
  async sidecarAllocations(): Promise<Map<string, AllocationListStub>> {
    const { value } = await this.api.listAllocations({ filter: `JobID == "${SIDECAR_JOB}"` });
    const running = new Map<string, AllocationListStub>();
    for (const alloc of value) {
      if (alloc.ClientStatus === 'running' && alloc.DesiredStatus === 'run') running.set(alloc.NodeName, alloc);
    }
    return running;
  }

  /**
   * Waits until every client has a running sidecar allocation, other than those in `except` (the ones a restart
   * replaces), whose sidecar answers on its local socket.
   */
  async waitForSidecars(except: ReadonlySet<string> = new Set()): Promise<Map<string, AllocationListStub>> {
    return waitFor('a serving sidecar on every client', 180_000, async () => {
      const allocs = await this.sidecarAllocations();
      const missing = this.clients.filter((c) => {
        const alloc = allocs.get(c.name);
        return alloc === undefined || except.has(alloc.ID);
      });
      if (missing.length > 0) throw new Error(`no new running sidecar on ${missing.map((c) => c.name).join(', ')}`);
      for (const client of this.clients) {
        const sidecar = new GrpcSidecarApi({
          socketPath: path.join(client.sidecarDir, 'sidecar.sock'),
          timeoutMs: 5000,
        });
        try {
          await sidecar.features();
        } finally {
          sidecar.close();
        }
      }
      return allocs;
    });
  }

  /**
   * Production clusters run with ACLs: one bootstrap (retried while the new leader settles), whose management
   * token the CLI (env) and `api` use from then on.
   */
  private async bootstrapAcl(): Promise<void> {
    const { stdout } = await waitFor('the ACL bootstrap', 60_000, () => this.nomad(['acl', 'bootstrap', '-json']));
    this.useManagementToken((JSON.parse(stdout) as { SecretID: string }).SecretID);
  }

  private useManagementToken(token: string): void {
    this.managementToken = token;
    this.env.NOMAD_TOKEN = token;
    this.serverApi = this.apiFor(this.serverHttpPort, token);
  }

  /** Writes `rules` as ACL policy `name` and returns the secret of a new client token of that policy only. */
  async createToken(name: string, rules: string): Promise<string> {
    const aclDir = path.join(this.dir, 'acl');
    mkdirSync(aclDir, { recursive: true });
    const file = path.join(aclDir, `${name}.policy.hcl`);
    writeFileSync(file, rules);
    await this.nomad(['acl', 'policy', 'apply', '-description', `nomad-chain test: ${name}`, name, file]);
    const { stdout } = await this.nomad(['acl', 'token', 'create', '-name', name, '-policy', name, '-json']);
    return (JSON.parse(stdout) as { SecretID: string }).SecretID;
  }

  private writeClientConfig(client: ClientNode, pluginToken: string): void {
    writeFileSync(
      client.agent.configPath,
      `name = "${client.name}"
data_dir = "${this.dir}/${client.name}/nomad"
bind_addr = "127.0.0.1"
plugin_dir = "${this.pluginDir}"
disable_update_check = true
log_level = "DEBUG"
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
ports {
  http = ${client.httpPort}
}
acl {
  enabled = true
}
${nomadTlsBlock(path.join(this.dir, 'nomad-tls'), 'client')}
client {
  enabled           = true
  servers           = ["127.0.0.1:${this.serverRpcPort}"]
  network_interface = "lo"
  cgroup_parent     = "${client.name}"
  max_kill_timeout  = "2m"
}
consul {
  address          = "127.0.0.1:${client.consulHttpPort}"
  client_auto_join = false
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
plugin "chain" {
  config {
    sidecar_socket     = "${client.sidecarDir}/sidecar.sock"
    nomad_address      = "https://127.0.0.1:${client.httpPort}"
    nomad_ca_file      = "${this.nomadCaFile}"
    nomad_token        = "${pluginToken}"
    consul_address     = "http://127.0.0.1:${client.consulHttpPort}"
    checkpoint_wait    = "30s"
    fingerprint_period = "5s"
  }
}
`,
    );
  }

  /**
   * GET on an agent's HTTP API (the server's, or a client's own: client endpoints answer from that client's
   * state) with the management token; the body as text (some endpoints, like `/v1/client/fs/cat`, are not JSON).
   */
  async nomadGet(urlPath: string, client?: ClientNode): Promise<{ status: number; body: string }> {
    const port = client === undefined ? this.serverHttpPort : client.httpPort;
    const ca = readFileSync(this.nomadCaFile);
    const headers = this.managementToken === '' ? {} : { 'X-Nomad-Token': this.managementToken };
    return new Promise((resolve, reject) => {
      const req = https.get(`https://127.0.0.1:${port}${urlPath}`, { ca, headers, timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${urlPath}: no answer within 30 s`)));
      req.on('error', reject);
    });
  }

  /** GET on the Consul server's HTTP API. */
  async consulGet<T>(urlPath: string): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${this.consulHttpPort}${urlPath}`);
    if (!res.ok) throw new Error(`Consul GET ${urlPath}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  /** Starts a client's sidecar and resolves once its local socket exists. */
  async startSidecar(client: ClientNode): Promise<void> {
    const log = createWriteStream(path.join(this.dir, `${client.name}-sidecar.log`), { flags: 'a' });
    const tls = path.join(this.dir, 'tls');
    const transferPort = await freePort();
    const child = spawn(
      process.execPath,
      ['-r', path.join(REPO, 'scripts', 'register.js'), path.join(REPO, 'sidecar', 'src', 'main.ts')],
      {
        env: {
          ...process.env,
          NOMAD_CHAIN_NODE_NAME: client.name,
          NOMAD_CHAIN_LISTEN_ADDRESS: '127.0.0.1',
          NOMAD_CHAIN_LISTEN_PORT: String(await freePort()),
          NOMAD_CHAIN_TRANSFER_PORT: String(transferPort),
          NOMAD_CHAIN_ADVERTISE_ADDRESS: `127.0.0.1:${transferPort}`,
          NOMAD_CHAIN_TLS_CA: path.join(tls, 'ca.crt'),
          NOMAD_CHAIN_TLS_CERT: path.join(tls, `${client.name}.crt`),
          NOMAD_CHAIN_TLS_KEY: path.join(tls, `${client.name}.key`),
          NOMAD_CHAIN_DATA_DIR: client.sidecarDir,
          NOMAD_CHAIN_CGROUP_PARENT: `/${PREFIX}/${client.name}`,
          NOMAD_CHAIN_LOG_LEVEL: 'debug',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    client.sidecar = child;
    await waitFor(`${client.name}'s sidecar socket`, 60_000, async () => {
      if (child.exitCode !== null) {
        throw new Error(`sidecar exited ${child.exitCode}: ${this.tail(`${client.name}-sidecar.log`)}`);
      }
      try {
        accessSync(path.join(client.sidecarDir, 'sidecar.sock'));
        return true;
      } catch {
        return undefined;
      }
    });
  }

  private launchConsul(agent: Agent): void {
    launchAgent(agent, this.consulBin, ['agent', `-config-file=${agent.configPath}`]);
  }

  private launch(agent: Agent): void {
    launchAgent(agent, this.nomadBin, ['agent', `-config=${agent.configPath}`]);
  }

  /** Stops a client agent with SIGINT (Nomad's graceful stop: driver plugins are killed, tasks are not). */
  async stopClient(client: ClientNode, signal: NodeJS.Signals = 'SIGINT'): Promise<void> {
    await stopAgent(client.agent, signal);
  }

  /** GET on a client agent's own HTTP API (client endpoints answer from that client's state). */
  async clientGet(client: ClientNode, urlPath: string): Promise<{ status: number; body: string }> {
    return this.nomadGet(urlPath, client);
  }

  restartClient(client: ClientNode): void {
    this.launch(client.agent);
  }

  /** Waits until every client is ready with the chain driver detected and healthy. */
  async waitForHealthyChainDriver(timeoutMs: number): Promise<NodeListStub[]> {
    return waitFor('every client ready with a healthy chain driver', timeoutMs, async () => {
      const { value } = await this.api.listNodes();
      const ours = value.filter((n) => this.clients.some((c) => c.name === n.Name));
      const healthy = ours.filter(
        (n) => n.Status === 'ready' && n.Drivers?.chain?.Detected === true && n.Drivers.chain.Healthy,
      );
      if (healthy.length === this.clients.length) return healthy;
      const states = ours.map((n) => `${n.Name}: ${n.Status}, chain ${JSON.stringify(n.Drivers?.chain ?? null)}`);
      throw new Error(states.length === 0 ? 'no client registered yet' : states.join('; '));
    });
  }

  async nomad(args: readonly string[], timeoutMs = 120_000): Promise<{ stdout: string; stderr: string }> {
    return execFileAsync(this.nomadBin, args, { env: this.env, cwd: REPO, timeout: timeoutMs, maxBuffer: 16 << 20 });
  }

  tail(file: string, lines = 40): string {
    try {
      return readFileSync(path.join(this.dir, file), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    // Nomad's clients leave their tasks running when they stop, the sidecar job's too: stop it first (in
    // 'process' mode too, where forecaster-harness runs it beside the spawned sidecars).
    if (this.managementToken !== '') {
      await this.nomad(['job', 'stop', '-purge', SIDECAR_JOB]).catch(() => undefined);
      // Until each sidecar task has exited: a client stopped before that leaves its raw_exec executor behind.
      await waitFor('the sidecar job to stop', 60_000, async () => {
        const { value } = await this.api.listAllocations({ filter: `JobID == "${SIDECAR_JOB}"` });
        return value.every((a) => a.ClientStatus !== 'running' && a.ClientStatus !== 'pending') ? true : undefined;
      }).catch(() => undefined);
    }
    for (const client of this.clients) await stopAgent(client.agent, 'SIGINT');
    await stopAgent(this.server, 'SIGINT');
    for (const client of this.clients) await stopProcess(client.sidecar, 'SIGTERM');
    for (const client of this.clients) await stopAgent(client.consul, 'SIGINT');
    await stopAgent(this.consulServer, 'SIGINT');
  }

  /**
   * A sidecar job whose stop did not finish (a failed test) outlives the Nomad clients: ends the processes whose
   * data dir is under this cluster's dir, and no other.
   */
  private killStraySidecars(): void {
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      let environ: string;
      try {
        environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      } catch {
        continue;
      }
      if (environ.split('\0').some((kv) => kv.startsWith(`NOMAD_CHAIN_DATA_DIR=${this.dir}/`))) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
    }
  }

  /**
   * After stop(): unmounts what Nomad left mounted in allocation dirs it never garbage-collected (secrets
   * and private tmpfs), and removes agent and sidecar state, keeping the logs and configs for the report.
   */
  async cleanup(): Promise<void> {
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[1] ?? '')
      .filter((mount) => mount.startsWith(`${this.dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const mount of mounts) await execFileAsync('umount', [mount]);
    rmSync(path.join(this.dir, 'server'), { recursive: true, force: true });
    rmSync(path.join(this.dir, 'consul'), { recursive: true, force: true });
    for (const client of this.clients) rmSync(path.join(this.dir, client.name), { recursive: true, force: true });
    // The sidecars' cgroup parents (the job's default /nomad-chain/<node>, the spawned sidecar's /ncb2/<node>),
    // empty once their tasks are gone; a non-empty one stays for the report.
    for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
      for (const client of this.clients) {
        for (const parent of ['nomad-chain', PREFIX]) {
          try {
            rmdirSync(path.join('/sys/fs/cgroup', hierarchy, parent, client.name));
          } catch {
            // Absent, or still holding a task's cgroup.
          }
        }
      }
    }
  }

  /**
   * End of a test file: stop(), then remove the tasks a job stop could not reach (they still live in runc
   * under a sidecar's data dir), then cleanup(); says where the logs stay.
   */
  async teardown(): Promise<void> {
    await this.stop();
    this.killStraySidecars();
    for (const client of this.clients) {
      const root = path.join(client.sidecarDir, 'runc');
      let ids: string[] = [];
      try {
        ids = readdirSync(root);
      } catch {
        continue;
      }
      for (const id of ids)
        await execFileAsync('runc', ['--root', root, 'delete', '--force', id]).catch(() => undefined);
    }
    await this.cleanup();
    process.stdout.write(`real-Nomad tier logs: ${this.dir}\n`);
  }
}

/**
 * TLS between the agents and on their HTTP APIs, as Nomad's production guide has it. verify_https_client stays
 * off: HTTP callers are authenticated by their ACL token (the plugin, the forecaster and the CLI need only the
 * CA), and Consul's checks of the agents' HTTP endpoints cannot present a client certificate.
 */
function nomadTlsBlock(tlsDir: string, role: 'server' | 'client'): string {
  return `tls {
  http                   = true
  rpc                    = true
  ca_file                = "${tlsDir}/ca.crt"
  cert_file              = "${tlsDir}/${role}.global.nomad.crt"
  key_file               = "${tlsDir}/${role}.global.nomad.key"
  verify_server_hostname = true
  verify_https_client    = false
}`;
}

/**
 * A Consul agent's config on loopback with OS-chosen ports; DNS, WAN and gRPC are off (nothing here uses
 * them, and their fixed defaults would collide with other agents on this host).
 */
async function writeConsulConfig(
  dir: string,
  name: string,
  serverSerfPort: number,
  server: boolean,
): Promise<{ agent: Agent; httpPort: number }> {
  const httpPort = await freePort();
  const serfLan = server ? serverSerfPort : await freePort();
  const configPath = path.join(dir, `${name}.hcl`);
  writeFileSync(
    configPath,
    `node_name = "${name}"
datacenter = "dc1"
data_dir = "${dir}/consul/${name}"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
advertise_addr = "127.0.0.1"
disable_update_check = true
log_level = "DEBUG"
${server ? 'server = true\nbootstrap_expect = 1' : `retry_join = ["127.0.0.1:${serverSerfPort}"]`}
ports {
  server   = ${await freePort()}
  http     = ${httpPort}
  dns      = -1
  serf_lan = ${serfLan}
  serf_wan = -1
  grpc     = -1
  grpc_tls = -1
}
`,
  );
  return { agent: agentFiles(dir, name, configPath), httpPort };
}

function agentFiles(dir: string, fileName: string, configPath: string): Agent {
  return {
    name: fileName,
    configPath,
    logPath: path.join(dir, `${fileName}.log`),
    pidPath: path.join(dir, `${fileName}.pid`),
  };
}

/**
 * Starts an agent writing straight into its log file and records its pid: neither its output nor its stop
 * depends on the module (or Jest test file) that started it, and it does not hold Jest's event loop open.
 */
function launchAgent(agent: Agent, bin: string, args: readonly string[]): void {
  const log = openSync(agent.logPath, 'a');
  try {
    const child = spawn(bin, args, { stdio: ['ignore', log, log] });
    if (child.pid === undefined) throw new Error(`${bin} ${args.join(' ')} did not start`);
    writeFileSync(agent.pidPath, String(child.pid));
    child.unref();
  } finally {
    closeSync(log);
  }
}

/** Whether a pid is gone or a zombie (exited, not yet reaped by the Node process that spawned it). */
function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Stops the agent its pid file names (SIGKILL after 30 s), if it runs; the pid file goes with it. */
async function stopAgent(agent: Agent, signal: NodeJS.Signals): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(agent.pidPath, 'utf8'));
  } catch {
    return;
  }
  const send = (sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig);
    } catch {
      // Exited meanwhile.
    }
  };
  if (!exited(pid)) send(signal);
  const killAt = Date.now() + 30_000;
  let killed = false;
  while (!exited(pid)) {
    if (!killed && Date.now() > killAt) {
      send('SIGKILL');
      killed = true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  rmSync(agent.pidPath, { force: true });
}

async function stopProcess(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}
