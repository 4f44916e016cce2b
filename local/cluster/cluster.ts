import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import { readdir, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import { resolveBinary } from '../../common/binaries';
import { run } from '../../common/exec';
import { freePort } from '../../common/free-port';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../../proto/gen/grpc/health/v1/health';
import { LocalClusterError } from './errors';
import { Haproxy } from '../router/haproxy';
import {
  ClusterNetwork,
  addRedirect,
  linkStats,
  removeRedirect,
  shapeLink,
  unshapeLink,
  type LinkShape,
  type LinkStats,
} from './network';
import { mountSmallDisk, smallDiskPath, unmountSmallDisks, type SmallDisk } from './small-disks';
import { makeWorkDir } from './work-dir';
import { ClusterRegistry, subnetPrefix, type ClusterRecord, type NodeRecord } from './registry';

const REPO = resolve(__dirname, '..', '..');
/** Port of every node's sidecar (State Transfer Protocol and health); each node has its own address. */
export const SIDECAR_PORT = 7450;
/** Port of every node's State Transfer Protocol server (the sidecar's default), where a buddy takes checkpoints. */
const TRANSFER_PORT = 7451;

export interface LocalClusterOptions {
  /** How many simulated nodes. @default 3 */
  readonly nodes?: number;
  /** Folder for logs, node data and HAProxy's files. @default a new folder under the OS temp dir */
  readonly runDir?: string;
  /** Services HAProxy fronts, each on its own loopback port. @default ["app"] */
  readonly services?: readonly string[];
  /** Extra environment for every sidecar. @default {} */
  readonly sidecarEnv?: Readonly<Record<string, string>>;
  /** The sidecar command (argv) started inside each node. @default the project's sidecar via scripts/register.js */
  readonly sidecarCommand?: readonly string[];
  /** How long to wait for each sidecar's health RPC. @default 30000 */
  readonly readyTimeoutMs?: number;
  /**
   * A port on the host's side of the bridge (`hostAddress`) where a forecaster takes telemetry: every sidecar
   * streams its node's telemetry there (and keeps reconnecting until it listens). @default none
   */
  readonly forecasterPort?: number;
  /**
   * Background checkpoints: every node checkpoints its running tasks this often (a duration, "5s") to its
   * buddy, the next node of the cluster (the last node's is the first). @default off
   */
  readonly backgroundCheckpointInterval?: string;
  /**
   * A small disk of its own (a tmpfs of this many bytes) for these directories of every node, so a test can
   * fill one as a real disk fills (see small-disks.ts). @default none: they live on the run dir's disk
   */
  readonly smallDisks?: Readonly<Partial<Record<SmallDisk, number>>>;
}

export interface LocalNode {
  readonly name: string;
  readonly netns: string;
  /** Path for `nsenter --net=` and for runc's network namespace. */
  readonly netnsPath: string;
  readonly address: string;
  readonly sidecarAddress: string;
  readonly dataDir: string;
  readonly localSocket: string;
  readonly logFile: string;
}

function alive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitHealthy(address: string, timeoutMs: number, logFile: string): Promise<void> {
  const client = new HealthClient(address, credentials.createInsecure());
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const serving = await new Promise<boolean>((resolveCheck) => {
        client.check({ service: '' }, new Metadata(), { deadline: Date.now() + 1000 }, (err, res) =>
          resolveCheck(err === null && res.status === HealthCheckResponse_ServingStatus.SERVING),
        );
      });
      if (serving) return;
      if (Date.now() > deadline) {
        throw new LocalClusterError(
          'NC_CLUSTER_SIDECAR_UNHEALTHY',
          `sidecar at ${address} not serving after ${timeoutMs} ms; see ${logFile}`,
          {
            context: { address, logFile },
          },
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    client.close();
  }
}

async function killAll(pids: readonly number[], graceMs: number): Promise<void> {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
}

/** Containers a node's sidecar left (runc state dirs under its data dir): deleted so no cgroup or mount stays. */
async function deleteContainers(dataDir: string): Promise<void> {
  if (!existsSync(dataDir)) return;
  let runc: string;
  try {
    runc = resolveBinary('runc');
  } catch {
    return;
  }
  const visit = async (dir: string, depth: number): Promise<void> => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const child = join(dir, entry.name);
      if (existsSync(join(child, 'state.json'))) {
        await run([runc, '--root', dir, 'delete', '--force', entry.name], { allowFailure: true });
      } else if (depth > 0) {
        await visit(child, depth - 1);
      }
    }
  };
  await visit(dataDir, 3);
}

/** Starts a node's sidecar inside the node's network namespace, detached (it outlives the CLI that started it). */
function spawnSidecar(
  node: NodeRecord,
  clusterId: string,
  runDir: string,
  options: Pick<LocalClusterOptions, 'sidecarCommand' | 'sidecarEnv' | 'backgroundCheckpointInterval'>,
  buddyAddress: string,
): number {
  const tlsDir = join(runDir, 'tls');
  const command = options.sidecarCommand ?? [
    process.execPath,
    '-r',
    join(REPO, 'scripts/register.js'),
    join(REPO, 'sidecar/src/main.ts'),
  ];
  const log = openSync(join(runDir, 'logs', `${node.name}-sidecar.log`), 'a');
  const child = spawn(resolveBinary('nsenter'), [`--net=/run/netns/${node.netns}`, '--', ...command], {
    detached: true,
    stdio: ['ignore', log, log],
    cwd: REPO,
    env: {
      ...process.env,
      ...options.sidecarEnv,
      ...(options.backgroundCheckpointInterval !== undefined && buddyAddress !== node.address
        ? {
            NOMAD_CHAIN_BACKGROUND_INTERVAL: options.backgroundCheckpointInterval,
            NOMAD_CHAIN_TRANSFER_PORT: String(TRANSFER_PORT),
            NOMAD_CHAIN_BACKGROUND_BUDDY: `${buddyAddress}:${TRANSFER_PORT}`,
          }
        : {}),
      NOMAD_CHAIN_NODE_NAME: node.name,
      // Task cgroups named per cluster: two clusters on one machine (tests, helpers) both run a task "kv-1" on a
      // "node1", and a cgroup shared between them is frozen by one's dump while the other starts in it.
      NOMAD_CHAIN_CGROUP_PARENT: cgroupParentOf(clusterId, node.name),
      NOMAD_CHAIN_LISTEN_ADDRESS: node.address,
      NOMAD_CHAIN_LISTEN_PORT: String(SIDECAR_PORT),
      NOMAD_CHAIN_DATA_DIR: node.dataDir,
      NOMAD_CHAIN_LOCAL_SOCKET: node.localSocket,
      NOMAD_CHAIN_TASK_NETNS: `/run/netns/${node.netns}`,
      NOMAD_CHAIN_TLS_CA: join(tlsDir, 'ca.crt'),
      NOMAD_CHAIN_TLS_CERT: join(tlsDir, `${node.name}.crt`),
      NOMAD_CHAIN_TLS_KEY: join(tlsDir, `${node.name}.key`),
      // A lazy restore's pages come from the source node over the bridge; runc locks the target's namespace
      // while it restores, so the lazy-pages daemon runs in the host's namespace (named: /proc/1 is not ours).
      NOMAD_CHAIN_LAZY_PAGES_NETNS: `/run/netns/${hostNetnsName(clusterId)}`,
    },
  });
  child.unref();
  closeSync(log);
  return child.pid ?? 0;
}

/** A cluster's task cgroups' parents (`cgroupParent` of each node's sidecar): runc removes only each task's own. */
export function cgroupParentOf(clusterId: string, node: string): string {
  return `/nomad-chain/${clusterId}/${node}`;
}

/**
 * Removes the parent cgroups of a cluster's tasks, in every hierarchy, with the empty cgroups left below them
 * (a task's shim's); best effort: a cgroup something still runs in is not empty and stays.
 */
async function removeCgroupParents(record: ClusterRecord): Promise<void> {
  const removeTree = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) if (entry.isDirectory()) await removeTree(join(dir, entry.name));
    await rmdir(dir).catch(() => undefined);
  };
  for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => []))
    await removeTree(join('/sys/fs/cgroup', hierarchy, 'nomad-chain', record.id));
}

/** The cluster's name for the host's own network namespace (`ip netns attach`), unique per cluster. */
export function hostNetnsName(clusterId: string): string {
  return `nc-${clusterId}-host`;
}

/** Every process inside a node's network namespace: its sidecar and its tasks. */
async function processesIn(netns: string): Promise<number[]> {
  const out = await run([resolveBinary('ip'), 'netns', 'pids', netns], { allowFailure: true });
  return out.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^\d+$/.test(l))
    .map(Number);
}

/** Takes down everything a cluster record names; safe on a half-made or crashed cluster. */
export async function destroyCluster(record: ClusterRecord, registry: ClusterRegistry): Promise<void> {
  const inNamespaces: number[] = [];
  for (const node of record.nodes) inNamespaces.push(...(await processesIn(node.netns)));
  await killAll([...record.nodes.map((n) => n.sidecarPid), record.haproxyPid, ...inNamespaces], 3000);
  for (const node of record.nodes) await deleteContainers(node.dataDir);
  await unmountSmallDisks(record.id);
  await removeCgroupParents(record);
  const network = new ClusterNetwork(record.bridge, subnetPrefix(record.subnetIndex));
  for (const node of record.nodes) await network.removeNode(node.netns, node.veth);
  await network.removeBridge();
  await run([resolveBinary('ip'), 'netns', 'del', hostNetnsName(record.id)], { allowFailure: true });
  registry.releaseSubnet(record.subnetIndex);
  registry.remove(record.id);
}

/**
 * N simulated nodes on this machine, each a network namespace with its own address running a real sidecar,
 * and one HAProxy on loopback in front. Everything it makes is recorded first, so `down` undoes a crashed run.
 */
export class LocalCluster {
  private constructor(
    readonly id: string,
    readonly runDir: string,
    readonly nodes: readonly LocalNode[],
    readonly haproxy: Haproxy,
    private readonly record: ClusterRecord,
    private readonly registry: ClusterRegistry,
    /** The host's address on the cluster's bridge: what the nodes reach the host's own services on. */
    readonly hostAddress: string,
    /** Environment every sidecar of this cluster starts with, restarted ones too. */
    private readonly sidecarEnv: Readonly<Record<string, string>>,
    private readonly backgroundCheckpointInterval: string | undefined,
  ) {}

  get logDir(): string {
    return join(this.runDir, 'logs');
  }

  node(name: string): LocalNode {
    const node = this.nodes.find((n) => n.name === name);
    if (node === undefined)
      throw new LocalClusterError('NC_CLUSTER_NO_NODE', `no node ${JSON.stringify(name)} in cluster ${this.id}`, {
        context: { node: name },
      });
    return node;
  }

  static async up(options: LocalClusterOptions = {}, registry = new ClusterRegistry()): Promise<LocalCluster> {
    const count = options.nodes ?? 3;
    if (!Number.isInteger(count) || count < 1 || count > 64) {
      throw new LocalClusterError('NC_CONFIG_INVALID', `invalid configuration: nodes: expected 1 to 64, got ${count}`, {
        context: { field: 'nodes' },
      });
    }
    const id = randomBytes(2).toString('hex');
    const runDir = options.runDir ?? makeWorkDir(`nomad-chain-${id}-`);
    mkdirSync(join(runDir, 'logs'), { recursive: true });
    const subnetIndex = registry.claimSubnet(id);
    const network = new ClusterNetwork(`ncb-${id}`, subnetPrefix(subnetIndex));
    const sidecarEnv = {
      ...options.sidecarEnv,
      ...(options.forecasterPort === undefined
        ? {}
        : { NOMAD_CHAIN_FORECASTER_ADDRESS: `${network.gateway}:${options.forecasterPort}` }),
    };
    const record: ClusterRecord = {
      id,
      runDir,
      bridge: network.bridge,
      subnetIndex,
      ownerPid: process.pid,
      createdAtUnixMs: Date.now(),
      nodes: [],
      haproxyPid: 0,
      services: [],
    };
    registry.save(record);
    try {
      await network.createBridge();
      await run([resolveBinary('ip'), 'netns', 'attach', hostNetnsName(id), String(process.pid)]);
      const tlsDir = join(runDir, 'tls');
      // Each node gets its own certificate from a per-cluster CA: sidecars authenticate each other (mTLS).
      await run([
        'bash',
        join(REPO, 'scripts/gen-certs.sh'),
        tlsDir,
        ...Array.from({ length: count }, (_, i) => `node${i + 1}=${network.addressOf(i)}`),
      ]);
      const nodes: LocalNode[] = [];
      for (let i = 0; i < count; i++) {
        const name = `node${i + 1}`;
        const dataDir = join(runDir, 'nodes', name);
        mkdirSync(dataDir, { recursive: true });
        for (const [disk, bytes] of Object.entries(options.smallDisks ?? {}))
          await mountSmallDisk(id, dataDir, disk as SmallDisk, bytes);
        const nodeRecord: NodeRecord = {
          name,
          netns: `nc-${id}-${name}`,
          veth: `ncv${id}n${i + 1}`,
          address: network.addressOf(i),
          dataDir,
          localSocket: join(dataDir, 'sidecar.sock'),
          sidecarPid: 0,
        };
        record.nodes.push(nodeRecord);
        registry.save(record);
        await network.addNode(nodeRecord.netns, nodeRecord.veth, i);
        const logFile = join(runDir, 'logs', `${name}-sidecar.log`);
        nodeRecord.sidecarPid = spawnSidecar(
          nodeRecord,
          id,
          runDir,
          { ...options, sidecarEnv },
          network.addressOf((i + 1) % count),
        );
        registry.save(record);
        nodes.push({
          name,
          netns: nodeRecord.netns,
          netnsPath: `/run/netns/${nodeRecord.netns}`,
          address: nodeRecord.address,
          sidecarAddress: `${nodeRecord.address}:${SIDECAR_PORT}`,
          dataDir,
          localSocket: nodeRecord.localSocket,
          logFile,
        });
      }
      const services: ClusterRecord['services'] = [];
      for (const name of options.services ?? ['app']) {
        // Never one port twice (freePort remembers what it handed out): HAProxy would bind it twice
        // (SO_REUSEPORT) and split one port's requests between two services.
        services.push({ name, port: await freePort() });
      }
      record.services = services;
      const { haproxy, pid } = await Haproxy.start(runDir, services, join(runDir, 'logs', 'haproxy.log'));
      record.haproxyPid = pid;
      registry.save(record);
      await Promise.all(nodes.map((n) => waitHealthy(n.sidecarAddress, options.readyTimeoutMs ?? 30_000, n.logFile)));
      return new LocalCluster(
        id,
        runDir,
        nodes,
        haproxy,
        record,
        registry,
        network.gateway,
        sidecarEnv,
        options.backgroundCheckpointInterval,
      );
    } catch (err) {
      await destroyCluster(record, registry);
      throw err;
    }
  }

  /**
   * What a cloud pre-emption does to a node: everything on it dies at once, with no chance to hand over.
   * The namespace and address stay, so the node can come back.
   */
  async killNode(name: string): Promise<void> {
    const node = this.recordOf(name);
    await killAll(await processesIn(node.netns), 0);
    await deleteContainers(node.dataDir);
    node.sidecarPid = 0;
    this.registry.save(this.record);
  }

  /** What a crashed sidecar leaves behind: its process dies at once (SIGKILL); its tasks keep running. */
  async killSidecar(name: string): Promise<void> {
    const node = this.recordOf(name);
    if (node.sidecarPid !== 0 && alive(node.sidecarPid)) {
      process.kill(node.sidecarPid, 'SIGKILL');
      while (alive(node.sidecarPid)) await new Promise((r) => setTimeout(r, 20));
    }
    node.sidecarPid = 0;
    this.registry.save(this.record);
  }

  /**
   * Drops (never refuses) every packet between two nodes, both ways, as a broken link would: peers see
   * silence until their own timeouts. `heal` removes exactly these rules.
   */
  async partition(a: string, b: string): Promise<void> {
    await this.linkRules('-I', a, b);
  }

  async heal(a: string, b: string): Promise<void> {
    await this.linkRules('-D', a, b);
  }

  private async linkRules(action: '-I' | '-D', a: string, b: string): Promise<void> {
    for (const [self, other] of [
      [a, b],
      [b, a],
    ] as const) {
      const peer = this.node(other).address;
      for (const [chain, side] of [
        ['INPUT', '-s'],
        ['OUTPUT', '-d'],
      ] as const) {
        // Adding must work (a partition that is not there proves nothing); removing is best effort.
        await run(
          [
            resolveBinary('nsenter'),
            `--net=${this.node(self).netnsPath}`,
            '--',
            resolveBinary('iptables'),
            '-w',
            action,
            chain,
            side,
            peer,
            '-j',
            'DROP',
          ],
          { timeoutMs: 30_000, allowFailure: action === '-D' },
        );
      }
    }
  }

  /**
   * Makes the links of two nodes slow and lossy (see `shapeLink`): what each sends to the other, and to the
   * host's side of the bridge, where a test's proxy between them listens. `unshape` removes exactly that, best
   * effort, so it also cleans a half-made shape.
   */
  async shape(a: string, b: string, shape: LinkShape): Promise<void> {
    await shapeLink(this.node(a).netnsPath, [this.node(b).address, this.hostAddress], shape);
    await shapeLink(this.node(b).netnsPath, [this.node(a).address, this.hostAddress], shape);
  }

  async unshape(a: string, b: string, shape: LinkShape): Promise<void> {
    await unshapeLink(this.node(a).netnsPath, [this.node(b).address, this.hostAddress], shape);
    await unshapeLink(this.node(b).netnsPath, [this.node(a).address, this.hostAddress], shape);
  }

  /** What the shaped links of two nodes carried and dropped, both ways together. */
  async shapedLinkStats(a: string, b: string): Promise<LinkStats> {
    const ab = await linkStats(this.node(a).netnsPath, [this.node(b).address, this.hostAddress]);
    const ba = await linkStats(this.node(b).netnsPath, [this.node(a).address, this.hostAddress]);
    return { shapedBytes: ab.shapedBytes + ba.shapedBytes, droppedPackets: ab.droppedPackets + ba.droppedPackets };
  }

  /**
   * Sends node `from`'s connections to node `to`'s State Transfer Protocol port through `via` (a proxy on the
   * host's side of the bridge, `hostAddress`): what a test puts between two sidecars. `unredirect` undoes it.
   */
  async redirectTransfer(from: string, to: string, via: { address: string; port: number }): Promise<void> {
    await addRedirect(this.node(from).netnsPath, { address: this.node(to).address, port: TRANSFER_PORT, to: via });
  }

  async unredirectTransfer(from: string, to: string, via: { address: string; port: number }): Promise<void> {
    await removeRedirect(this.node(from).netnsPath, { address: this.node(to).address, port: TRANSFER_PORT, to: via });
  }

  /** Where a node's small disk is mounted (`smallDisks`): what a test fills. */
  diskPath(node: string, disk: SmallDisk): string {
    return smallDiskPath(this.node(node).dataDir, disk);
  }

  /** The State Transfer Protocol port of a node's sidecar: where a test's proxy forwards to. */
  get transferPort(): number {
    return TRANSFER_PORT;
  }

  /** Brings a killed node (or a killed sidecar) back: a fresh sidecar in the same namespace, resolved once it serves. */
  async restartNode(
    name: string,
    options: Pick<LocalClusterOptions, 'sidecarCommand' | 'sidecarEnv' | 'readyTimeoutMs'> = {},
  ): Promise<void> {
    const node = this.recordOf(name);
    const nodes = this.record.nodes;
    const buddy = nodes[(nodes.indexOf(node) + 1) % nodes.length] ?? node;
    node.sidecarPid = spawnSidecar(
      node,
      this.id,
      this.runDir,
      {
        ...options,
        sidecarEnv: { ...this.sidecarEnv, ...options.sidecarEnv },
        ...(this.backgroundCheckpointInterval !== undefined
          ? { backgroundCheckpointInterval: this.backgroundCheckpointInterval }
          : {}),
      },
      buddy.address,
    );
    this.registry.save(this.record);
    await waitHealthy(this.node(name).sidecarAddress, options.readyTimeoutMs ?? 30_000, this.node(name).logFile);
  }

  /** The pid of a node's sidecar (0 while it is down): where its resource use can be read in /proc. */
  sidecarPid(name: string): number {
    return this.recordOf(name).sidecarPid;
  }

  private recordOf(name: string): NodeRecord {
    const node = this.record.nodes.find((n) => n.name === name);
    if (node === undefined)
      throw new LocalClusterError('NC_CLUSTER_NO_NODE', `no node ${JSON.stringify(name)} in cluster ${this.id}`, {
        context: { node: name },
      });
    return node;
  }

  /** Records where local mode's controller listens, so `npm run cluster -- drain` can find it. */
  setControllerUrl(url: string): void {
    this.record.controllerUrl = url;
    this.registry.save(this.record);
  }

  /** Runs a command inside a node's network namespace (and only that: the mount namespace stays the host's). */
  exec(node: string, argv: readonly string[], timeoutMs = 30_000): ReturnType<typeof run> {
    return run([resolveBinary('nsenter'), `--net=${this.node(node).netnsPath}`, '--', ...argv], {
      timeoutMs,
      allowFailure: true,
    });
  }

  /** Stops every process, namespace and link the cluster made. Logs stay in runDir unless `removeRunDir`. */
  async down(removeRunDir = false): Promise<void> {
    await destroyCluster(this.record, this.registry);
    if (removeRunDir) rmSync(this.runDir, { recursive: true, force: true });
  }
}

/**
 * Clusters whose owning process is gone: those `npm run cluster -- up` left running on purpose and those a
 * killed run left behind. A cluster a live test run owns is never one of them, so runs never collide.
 */
export function isOrphaned(record: ClusterRecord): boolean {
  return !alive(record.ownerPid);
}

export function describe(record: ClusterRecord): string {
  const lines = [`cluster ${record.id}  run dir ${record.runDir}  bridge ${record.bridge}`];
  for (const n of record.nodes) {
    lines.push(
      `  ${n.name.padEnd(8)} ${n.address.padEnd(15)} netns ${n.netns.padEnd(18)} sidecar ${alive(n.sidecarPid) ? `running (pid ${n.sidecarPid})` : 'dead'}`,
    );
  }
  for (const s of record.services)
    lines.push(
      `  service ${s.name.padEnd(8)} http://127.0.0.1:${s.port}  (haproxy ${alive(record.haproxyPid) ? 'running' : 'dead'})`,
    );
  if (record.controllerUrl !== undefined) lines.push(`  controller ${record.controllerUrl}`);
  lines.push(`  logs    ${join(record.runDir, 'logs')}`);
  return lines.join('\n');
}
