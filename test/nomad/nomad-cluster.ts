import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  accessSync,
  constants,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { errorMessage } from '../../common/errors';
import { HttpNomadApi } from '../../common/nomad-api';
import type { NodeListStub } from '../../common/nomad-api';

const execFileAsync = promisify(execFile);
export const REPO = path.resolve(__dirname, '..', '..');
/** Prefix of every name this tier creates (nodes, cgroups, temp dirs), so cleanup never touches others'. */
const PREFIX = 'ncb2';

/** NOMAD_BIN, or a loud failure: this tier exists to run against a real Nomad. */
export function requireNomadBin(): string {
  const bin = process.env.NOMAD_BIN;
  if (bin === undefined || bin === '') {
    throw new Error(
      'NOMAD_BIN is not set: the real-Nomad tier (npm run test:nomad) needs a Nomad binary, e.g. v1.6.5 built ' +
        'from github.com/hashicorp/nomad at tag v1.6.5. It is not part of npm test.',
    );
  }
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(`NOMAD_BIN=${bin} is not an executable file`);
  }
  return bin;
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
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

interface Agent {
  readonly name: string;
  readonly configPath: string;
  readonly logPath: string;
  process?: ChildProcess;
}

export interface ClientNode {
  readonly name: string;
  readonly httpPort: number;
  readonly sidecarDir: string;
  readonly agent: Agent;
  sidecar?: ChildProcess;
}

/**
 * One Nomad server and N clients on loopback, each client with the `chain` plugin in its plugin_dir and its
 * own sidecar, all under one temp dir. Logs stay there for the report.
 */
export class NomadCluster {
  readonly api: HttpNomadApi;
  readonly env: NodeJS.ProcessEnv;

  private constructor(
    readonly nomadBin: string,
    readonly dir: string,
    readonly serverHttpPort: number,
    private readonly server: Agent,
    readonly clients: ClientNode[],
  ) {
    this.api = new HttpNomadApi({ address: `http://127.0.0.1:${serverHttpPort}`, timeoutMs: 30_000 });
    this.env = { ...process.env, NOMAD_ADDR: `http://127.0.0.1:${serverHttpPort}` };
  }

  static async create(nomadBin: string, clientCount: number): Promise<NomadCluster> {
    const dir = mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-nomad-`));
    const [http, rpc, serf] = [await freePort(), await freePort(), await freePort()];
    const serverConfig = path.join(dir, 'server.hcl');
    writeFileSync(
      serverConfig,
      `name = "${PREFIX}-server"
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
`,
    );
    const pluginDir = path.join(dir, 'plugins');
    mkdirSync(pluginDir);
    symlinkSync(path.join(REPO, 'plugin', 'bin', 'chain'), path.join(pluginDir, 'chain'));
    const clients: ClientNode[] = [];
    for (let i = 1; i <= clientCount; i++) {
      const name = `${PREFIX}-c${i}`;
      const httpPort = await freePort();
      const sidecarDir = path.join(dir, name, 'sidecar');
      mkdirSync(sidecarDir, { recursive: true });
      const configPath = path.join(dir, `${name}.hcl`);
      writeFileSync(
        configPath,
        `name = "${name}"
data_dir = "${dir}/${name}/nomad"
bind_addr = "127.0.0.1"
plugin_dir = "${pluginDir}"
disable_update_check = true
log_level = "DEBUG"
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
ports {
  http = ${httpPort}
}
client {
  enabled           = true
  servers           = ["127.0.0.1:${rpc}"]
  network_interface = "lo"
  cgroup_parent     = "${name}"
  max_kill_timeout  = "2m"
}
plugin "chain" {
  config {
    sidecar_socket     = "${sidecarDir}/sidecar.sock"
    nomad_address      = "http://127.0.0.1:${httpPort}"
    checkpoint_wait    = "30s"
    fingerprint_period = "5s"
  }
}
`,
      );
      clients.push({ name, httpPort, sidecarDir, agent: { name, configPath, logPath: path.join(dir, `${name}.log`) } });
    }
    const server = { name: `${PREFIX}-server`, configPath: serverConfig, logPath: path.join(dir, 'server.log') };
    return new NomadCluster(nomadBin, dir, http, server, clients);
  }

  async start(): Promise<void> {
    this.launch(this.server);
    await waitFor('a Nomad leader', 60_000, async () => {
      const res = await fetch(`http://127.0.0.1:${this.serverHttpPort}/v1/status/leader`);
      const leader = (await res.json()) as string;
      return leader === '' ? undefined : leader;
    });
    // The sidecars' State Transfer Protocol runs over mutual TLS: one CA, one certificate per node.
    await execFileAsync('bash', [
      path.join(REPO, 'scripts', 'gen-certs.sh'),
      path.join(this.dir, 'tls'),
      ...this.clients.map((c) => c.name),
    ]);
    for (const client of this.clients) {
      await this.startSidecar(client);
      this.launch(client.agent);
    }
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

  private launch(agent: Agent): void {
    const log = createWriteStream(agent.logPath, { flags: 'a' });
    const child = spawn(this.nomadBin, ['agent', `-config=${agent.configPath}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    agent.process = child;
  }

  /** Stops a client agent with SIGINT (Nomad's graceful stop: driver plugins are killed, tasks are not). */
  async stopClient(client: ClientNode, signal: NodeJS.Signals = 'SIGINT'): Promise<void> {
    await stopProcess(client.agent.process, signal);
  }

  /** GET on a client agent's own HTTP API (client endpoints answer from that client's state). */
  async clientGet(client: ClientNode, path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`http://127.0.0.1:${client.httpPort}${path}`);
    return { status: res.status, body: await res.text() };
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
    for (const client of this.clients) await stopProcess(client.agent.process, 'SIGINT');
    await stopProcess(this.server.process, 'SIGINT');
    for (const client of this.clients) await stopProcess(client.sidecar, 'SIGTERM');
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
    for (const client of this.clients) rmSync(path.join(this.dir, client.name), { recursive: true, force: true });
  }

  /**
   * End of a test file: stop(), then remove the tasks a job stop could not reach (they still live in runc
   * under a sidecar's data dir), then cleanup(); says where the logs stay.
   */
  async teardown(): Promise<void> {
    await this.stop();
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

async function stopProcess(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}
