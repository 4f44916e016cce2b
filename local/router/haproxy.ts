import { spawn } from 'node:child_process';
import { openSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { resolveBinary } from '../../common/binaries';
import { LocalClusterError } from '../cluster/errors';

/** How many server slots each service's backend has: instances are placed into free slots at run time. */
export const SLOTS_PER_SERVICE = 8;

/**
 * How long a request waits at the router for an instance while its service is held (its last instance left
 * rotation to be handed over): a frozen instance looks to a client like a slow server, bounded by the same
 * `timeout server`. Past it, HAProxy answers 503 as it would without the hold.
 */
export const HOLD_MS = 30_000;

/** How often a held request looks again for a usable server: the most a hold adds to the freeze. */
const HOLD_POLL_MS = 10;

/**
 * A request action: waits while `backend` has no usable server, at most `limit_ms`. HAProxy 2.6 has no
 * native wait for a server: with none usable (maint, drain, weight 0) it answers 503 at once, and its
 * queue (`maxconn`, `timeout queue`) only holds requests for a server that is up and full.
 */
const HOLD_LUA = `core.register_action("hold_for_server", { "http-req" }, function(txn, backend, limit_ms)
  local function now_ms()
    local t = core.now()
    return t.sec * 1000 + t.usec / 1000
  end
  local deadline = now_ms() + tonumber(limit_ms)
  while txn.f:nbsrv(backend) == 0 and now_ms() < deadline do
    core.msleep(${HOLD_POLL_MS})
  end
end, 2)
`;

/** The runtime map naming the backends whose requests wait for an instance instead of a 503. */
export function holdMapPath(runDir: string): string {
  return join(runDir, 'hold.map');
}

export interface HaproxyServiceSpec {
  readonly name: string;
  readonly port: number;
}

export interface HaproxyServer {
  readonly backend: string;
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** HAProxy's admin-state bits; 0x01 is the maintenance the runtime API sets and clears. */
  readonly adminState: number;
  /** 0 stopped, 1 starting, 2 running, 3 stopping. */
  readonly operationalState: number;
  readonly inRotation: boolean;
}

export function haproxyConfig(runDir: string, services: readonly HaproxyServiceSpec[]): string {
  const lines = [
    'global',
    `  stats socket ${join(runDir, 'haproxy.sock')} mode 600 level admin`,
    '  log stderr format short local0 info',
    `  lua-load ${join(runDir, 'hold.lua')}`,
    '',
    'defaults',
    '  mode http',
    '  log global',
    '  option httplog',
    '  timeout connect 2s',
    '  timeout client 30s',
    '  timeout server 30s',
    // A frozen server must not hold a request forever; a retry goes to the restored instance.
    '  retries 3',
    '  option redispatch',
    '',
  ];
  for (const service of services) {
    lines.push(
      `frontend fe_${service.name}`,
      `  bind 127.0.0.1:${service.port}`,
      // Held (a hand-over in progress) and no usable server: wait for the restored instance.
      `  http-request lua.hold_for_server be_${service.name} ${HOLD_MS} if { str(be_${service.name}),map(${holdMapPath(runDir)}) -m found } { nbsrv(be_${service.name}) eq 0 }`,
      `  default_backend be_${service.name}`,
      '',
    );
    lines.push(`backend be_${service.name}`);
    for (let slot = 1; slot <= SLOTS_PER_SERVICE; slot++) {
      lines.push(`  server s${slot} 127.0.0.1:1 disabled`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/** Sends one command to HAProxy's runtime API (stats socket) and returns its answer. */
export function runtimeCommand(socketPath: string, command: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.end(`${command}\n`));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (cause) => {
      clearTimeout(timer);
      reject(
        new LocalClusterError('NC_HAPROXY_RUNTIME', `haproxy runtime API: ${cause.message}`, {
          cause,
          context: { command },
        }),
      );
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString());
    });
  });
}

/** A running HAProxy whose backends change through the runtime API, never by a restart. */
export class Haproxy {
  constructor(
    readonly runDir: string,
    readonly services: readonly HaproxyServiceSpec[],
  ) {}

  get socketPath(): string {
    return join(this.runDir, 'haproxy.sock');
  }

  /** Starts HAProxy detached (it outlives the CLI that started it); resolves its pid once the socket answers. */
  static async start(
    runDir: string,
    services: readonly HaproxyServiceSpec[],
    logFile: string,
  ): Promise<{ haproxy: Haproxy; pid: number }> {
    const configPath = join(runDir, 'haproxy.cfg');
    writeFileSync(join(runDir, 'hold.lua'), HOLD_LUA);
    writeFileSync(holdMapPath(runDir), '');
    writeFileSync(configPath, haproxyConfig(runDir, services));
    const log = openSync(logFile, 'a');
    const child = spawn(resolveBinary('haproxy'), ['-db', '-f', configPath], {
      detached: true,
      stdio: ['ignore', log, log],
    });
    child.unref();
    const haproxy = new Haproxy(runDir, services);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) {
        throw new LocalClusterError('NC_HAPROXY_START', `haproxy exited with ${child.exitCode}; see ${logFile}`, {
          context: { logFile },
        });
      }
      try {
        await runtimeCommand(haproxy.socketPath, 'show info', 1000);
        return { haproxy, pid: child.pid ?? 0 };
      } catch (err) {
        if (Date.now() > deadline) {
          throw new LocalClusterError('NC_HAPROXY_START', `haproxy did not open its runtime socket; see ${logFile}`, {
            cause: err,
            context: { logFile },
          });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  portOf(service: string): number {
    const spec = this.services.find((s) => s.name === service);
    if (spec === undefined)
      throw new LocalClusterError('NC_HAPROXY_RUNTIME', `no service ${JSON.stringify(service)} in HAProxy`, {
        context: { service },
      });
    return spec.port;
  }

  /** HAProxy's own pid, from `show info`: proves a change went through the runtime API, not a restart. */
  async pid(): Promise<number> {
    const match = /^Pid: (\d+)$/m.exec(await this.command('show info'));
    return Number(match?.[1] ?? 0);
  }

  command(command: string): Promise<string> {
    return runtimeCommand(this.socketPath, command);
  }

  private async checked(command: string, alsoFine?: RegExp): Promise<void> {
    const answer = (await this.command(command)).trim();
    // The runtime API answers an empty line on success, or a sentence on failure.
    if (
      answer !== '' &&
      !/^(done|Server .* state changed|IP changed|no need to change)/i.test(answer) &&
      alsoFine?.test(answer) !== true
    ) {
      throw new LocalClusterError('NC_HAPROXY_RUNTIME', `haproxy refused "${command}": ${answer}`, {
        context: { command },
      });
    }
  }

  /** Points a slot at an instance and puts it in rotation. */
  async setServer(service: string, slot: number, address: string, port: number): Promise<void> {
    await this.checked(`set server be_${service}/s${slot} addr ${address} port ${port}`);
    await this.checked(`set server be_${service}/s${slot} state ready`);
  }

  /** Takes a slot out of rotation: HAProxy closes its idle connections to it (needed before a CRIU dump). */
  async drainServer(service: string, slot: number): Promise<void> {
    await this.checked(`set server be_${service}/s${slot} state maint`);
  }

  /**
   * From now until `release`, a request finding no usable server of the service waits for one (at most
   * `HOLD_MS`) instead of a 503 at once.
   */
  async hold(service: string): Promise<void> {
    await this.checked(`del map ${holdMapPath(this.runDir)} be_${service}`, /^Key not found/i);
    await this.checked(`add map ${holdMapPath(this.runDir)} be_${service} 1`);
  }

  /** Ends a hold: held requests already go on as soon as a server is usable; new ones no longer wait. */
  async release(service: string): Promise<void> {
    await this.checked(`del map ${holdMapPath(this.runDir)} be_${service}`, /^Key not found/i);
  }

  /** Connections HAProxy holds to a slot, in use or idle (`show servers conn`); 0 once maint closed them. */
  async connections(service: string, slot: number): Promise<number> {
    const answer = await this.command(`show servers conn be_${service}`);
    for (const line of answer.split('\n')) {
      // be/srv ids addr port - purge_delay used_cur used_max need_est unsafe_nb safe_nb idle_lim idle_cur ...
      const f = line.trim().split(/\s+/);
      if (f[0] === `be_${service}/s${slot}`) return Number(f[6] ?? 0) + Number(f[12] ?? 0);
    }
    return 0;
  }

  async servers(service: string): Promise<HaproxyServer[]> {
    const answer = await this.command(`show servers state be_${service}`);
    const rows: HaproxyServer[] = [];
    for (const line of answer.split('\n')) {
      const f = line.trim().split(/\s+/);
      // Data rows: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... srv_port at 18.
      if (f.length < 19 || !/^\d+$/.test(f[0] ?? '')) continue;
      rows.push({
        backend: f[1] ?? '',
        name: f[3] ?? '',
        address: f[4] ?? '',
        operationalState: Number(f[5]),
        adminState: Number(f[6]),
        port: Number(f[18]),
        inRotation: (Number(f[6]) & 0x01) === 0 && Number(f[5]) === 2,
      });
    }
    return rows;
  }
}
