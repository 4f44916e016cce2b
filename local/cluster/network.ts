import { resolveBinary } from '../../common/binaries';
import { run } from '../../common/exec';

/**
 * Network namespaces on one bridge: each simulated node is a namespace with its own address, reachable from
 * the root namespace (the bridge holds .1) and from every other node.
 */
export class ClusterNetwork {
  private readonly ip = resolveBinary('ip');

  constructor(
    readonly bridge: string,
    readonly subnetPrefix: string,
  ) {}

  get gateway(): string {
    return `${this.subnetPrefix}.1`;
  }

  addressOf(index: number): string {
    return `${this.subnetPrefix}.${index + 2}`;
  }

  async createBridge(): Promise<void> {
    await run([this.ip, 'link', 'add', this.bridge, 'type', 'bridge']);
    await run([this.ip, 'addr', 'add', `${this.gateway}/24`, 'dev', this.bridge]);
    await run([this.ip, 'link', 'set', this.bridge, 'up']);
  }

  async addNode(netns: string, veth: string, index: number): Promise<void> {
    const peer = `${veth}p`;
    await run([this.ip, 'netns', 'add', netns]);
    await run([this.ip, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', peer]);
    await run([this.ip, 'link', 'set', peer, 'netns', netns]);
    await run([this.ip, 'link', 'set', veth, 'master', this.bridge]);
    await run([this.ip, 'link', 'set', veth, 'up']);
    const inNs = [this.ip, 'netns', 'exec', netns, this.ip];
    await run([...inNs, 'link', 'set', 'lo', 'up']);
    await run([...inNs, 'link', 'set', peer, 'name', 'eth0']);
    await run([...inNs, 'addr', 'add', `${this.addressOf(index)}/24`, 'dev', 'eth0']);
    await run([...inNs, 'link', 'set', 'eth0', 'up']);
    await run([...inNs, 'route', 'add', 'default', 'via', this.gateway]);
  }

  /** Best effort: removes whatever of a node exists, so `down` also cleans what a killed run left half-made. */
  async removeNode(netns: string, veth: string): Promise<void> {
    await run([this.ip, 'link', 'del', veth], { allowFailure: true });
    await run([this.ip, 'netns', 'del', netns], { allowFailure: true });
  }

  async removeBridge(): Promise<void> {
    await run([this.ip, 'link', 'del', this.bridge], { allowFailure: true });
  }
}

/** A link made slow and lossy: what a congested or long-haul path between two nodes looks like. */
export interface LinkShape {
  /** The link's rate, as `tc` reads it ("20mbit"). */
  readonly rate: string;
  /** The share of packets lost, 0 to 1. */
  readonly loss: number;
}

// tc and ss come with iproute2, as ip does; they are looked up on PATH (common/binaries.ts names neither).
function inNetns(netnsPath: string, argv: readonly string[]): string[] {
  return [resolveBinary('nsenter'), `--net=${netnsPath}`, '--', ...argv];
}

/**
 * Shapes what a node sends to `destinations`: an HTB class at `shape.rate` for their packets (everything else
 * stays unshaped) and a random drop of `shape.loss` of them. This kernel has no netem (CONFIG_NET_SCH_NETEM
 * is not set), so there is no added delay beyond the queueing the rate makes. `unshapeLink` removes exactly this.
 */
export async function shapeLink(netnsPath: string, destinations: readonly string[], shape: LinkShape): Promise<void> {
  const tc = (args: readonly string[]): string[] => inNetns(netnsPath, ['tc', ...args]);
  await run(tc(['qdisc', 'add', 'dev', 'eth0', 'root', 'handle', '1:', 'htb', 'default', '1']));
  await run(tc(['class', 'add', 'dev', 'eth0', 'parent', '1:', 'classid', '1:1', 'htb', 'rate', '10gbit']));
  await run(tc(['class', 'add', 'dev', 'eth0', 'parent', '1:', 'classid', '1:2', 'htb', 'rate', shape.rate]));
  const filter = ['filter', 'add', 'dev', 'eth0', 'parent', '1:', 'protocol', 'ip', 'u32'];
  for (const to of destinations) {
    await run(tc([...filter, 'match', 'ip', 'dst', `${to}/32`, 'flowid', '1:2']));
    await run(inNetns(netnsPath, lossRule('-I', to, shape.loss)));
  }
}

/** Best effort: removes what `shapeLink` added, whatever of it exists. */
export async function unshapeLink(netnsPath: string, destinations: readonly string[], shape: LinkShape): Promise<void> {
  await run(inNetns(netnsPath, ['tc', 'qdisc', 'del', 'dev', 'eth0', 'root']), { allowFailure: true });
  for (const to of destinations) await run(inNetns(netnsPath, lossRule('-D', to, shape.loss)), { allowFailure: true });
}

/** What a shaped link carried: bytes through its rate-limited class and packets its loss rules dropped. */
export interface LinkStats {
  readonly shapedBytes: number;
  readonly droppedPackets: number;
}

/** The counters of what `shapeLink` added on one node: zero bytes means nothing crossed the slow link. */
export async function linkStats(netnsPath: string, destinations: readonly string[]): Promise<LinkStats> {
  const tc = await run(inNetns(netnsPath, ['tc', '-s', 'class', 'show', 'dev', 'eth0', 'classid', '1:2']));
  const rules = await run(inNetns(netnsPath, [resolveBinary('iptables'), '-w', '-L', 'OUTPUT', '-v', '-x', '-n']));
  // Columns: pkts bytes target prot opt in out source destination [match].
  const dropped = rules.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[2] === 'DROP' && destinations.includes(f[8] ?? '') && f.includes('statistic'))
    .reduce((sum, f) => sum + Number(f[0] ?? 0), 0);
  return { shapedBytes: Number(/Sent (\d+) bytes/.exec(tc.stdout)?.[1] ?? 0), droppedPackets: dropped };
}

function lossRule(action: '-I' | '-D', to: string, loss: number): string[] {
  return [
    resolveBinary('iptables'),
    '-w',
    action,
    'OUTPUT',
    '-d',
    to,
    '-m',
    'statistic',
    '--mode',
    'random',
    '--probability',
    String(loss),
    '-j',
    'DROP',
  ];
}

/** Where a node's new TCP connections to one address and port are sent instead. */
export interface Redirect {
  readonly address: string;
  readonly port: number;
  readonly to: { readonly address: string; readonly port: number };
}

/**
 * Sends a node's new connections to `address:port` to `to` instead (DNAT in the node's own OUTPUT), and cuts the
 * ones already open (`ss -K`), so none of the node's traffic there bypasses `to`. `removeRedirect` undoes it.
 */
export async function addRedirect(netnsPath: string, redirect: Redirect): Promise<void> {
  await run(inNetns(netnsPath, redirectRule('-I', redirect)));
  await run(inNetns(netnsPath, ['ss', '-K', 'dst', redirect.address, 'dport', '=', `:${redirect.port}`]));
}

/** Best effort: removes the rule `addRedirect` added. Connections made through it stay where they are. */
export async function removeRedirect(netnsPath: string, redirect: Redirect): Promise<void> {
  await run(inNetns(netnsPath, redirectRule('-D', redirect)), { allowFailure: true });
}

function redirectRule(action: '-I' | '-D', r: Redirect): string[] {
  return [
    resolveBinary('iptables'),
    '-w',
    '-t',
    'nat',
    action,
    'OUTPUT',
    '-p',
    'tcp',
    '-d',
    r.address,
    '--dport',
    String(r.port),
    '-j',
    'DNAT',
    '--to-destination',
    `${r.to.address}:${r.to.port}`,
  ];
}
