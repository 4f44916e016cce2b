import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Nomad's default min_dynamic_port: the first port it may give a task's network block on a client. */
const NOMAD_MIN_DYNAMIC_PORT = 20_000;

/** Every port handed out in this process: callers ask for several before anything binds one. */
const handedOut = new Set<number>();

/**
 * Where the kernel picks the local port of an outgoing connection: a port probed free there can be taken by
 * any connection on the machine before its agent binds it (seen: a Consul client's serf port "address
 * already in use", the real-Nomad tier's cluster never formed).
 */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low !== undefined && high !== undefined && Number.isInteger(low) && Number.isInteger(high)) return [low, high];
  } catch {
    // Not Linux, or no procfs: assume the kernel's default.
  }
  return [32_768, 60_999];
}

function bindsTcp(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

function bindsUdp(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, host, () => socket.close(() => resolve(true)));
  });
}

/**
 * A port free on `host` for both TCP and UDP (gossip binds both), outside the kernel's ephemeral range and
 * Nomad's dynamic ports, and
 * never handed out before by this process. Probing closes the socket, so the port is free, not held: below
 * the ephemeral range only another program choosing it on purpose can take it first.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [ephemeralLow, ephemeralHigh] = ephemeralRange();
  // From 10000 (clear of well-known services' defaults) up to Nomad's dynamic ports (20000-32000 unless a
  // client sets min_dynamic_port), which Nomad hands its tasks on the same host; and below the ephemeral range.
  // A port given to an agent here and to a task by Nomad ended with a sidecar's transfer port refused (CI).
  const [low, high] =
    ephemeralLow > 10_000 ? [10_000, Math.min(NOMAD_MIN_DYNAMIC_PORT, ephemeralLow)] : [ephemeralHigh + 1, 65_536];
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (handedOut.has(port)) continue;
    if (!(await bindsTcp(port, host)) || !(await bindsUdp(port, host))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port between ${low} and ${high - 1} on ${host}`);
}
