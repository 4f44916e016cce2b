import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { resolveBinary } from '../../common/binaries';
import { LocalClusterError } from './errors';

/** What a cluster left on the machine, recorded before it is made so `down` can undo a crashed run. */
export interface ClusterRecord {
  readonly id: string;
  readonly runDir: string;
  readonly bridge: string;
  readonly subnetIndex: number;
  readonly ownerPid: number;
  readonly createdAtUnixMs: number;
  nodes: NodeRecord[];
  haproxyPid: number;
  services: { name: string; port: number }[];
  /** The local controller's HTTP API, once local mode runs one. */
  controllerUrl?: string;
}

export interface NodeRecord {
  readonly name: string;
  readonly netns: string;
  readonly veth: string;
  readonly address: string;
  readonly dataDir: string;
  readonly localSocket: string;
  sidecarPid: number;
}

/** Subnets are 198.18.0.0/15 cut into /24s; each claim is a file created exclusively, so two runs never share one. */
export const SUBNET_COUNT = 512;

export function subnetPrefix(index: number): string {
  return `198.${18 + Math.floor(index / 256)}.${index % 256}`;
}

/** The IPv4 addresses the host's interfaces hold: a /24 any of them is in is routed already. */
export type HostAddresses = () => readonly string[];

export class ClusterRegistry {
  constructor(
    readonly dir = process.env.NOMAD_CHAIN_CLUSTER_REGISTRY ?? '/run/nomad-chain/clusters',
    private readonly hostAddresses: HostAddresses = readHostAddresses,
  ) {
    mkdirSync(join(this.dir, 'subnets'), { recursive: true });
  }

  /**
   * Claims a free subnet for a cluster (or a test's network), starting at a spot derived from its id to keep
   * retries short. A subnet some interface of this host already has an address in is skipped too, claimed or
   * not: a network left by a run that was killed still routes it, and a cluster there would be unreachable.
   */
  claimSubnet(id: string): number {
    const start = parseInt(id, 16) % SUBNET_COUNT;
    const taken = this.hostAddresses();
    for (let i = 0; i < SUBNET_COUNT; i++) {
      const index = (start + i) % SUBNET_COUNT;
      if (taken.some((address) => address.startsWith(`${subnetPrefix(index)}.`))) continue;
      try {
        closeSync(openSync(join(this.dir, 'subnets', String(index)), 'wx'));
        writeFileSync(join(this.dir, 'subnets', String(index)), id);
        return index;
      } catch {
        continue;
      }
    }
    throw new LocalClusterError(
      'NC_CLUSTER_NO_SUBNET',
      `no free /24 in 198.18.0.0/15 for ${id}: every one is claimed in ${join(this.dir, 'subnets')} or on a host interface; ` +
        '`npm run cluster -- down` removes the clusters of runs that were killed',
      { context: { id, registry: this.dir } },
    );
  }

  releaseSubnet(index: number): void {
    rmSync(join(this.dir, 'subnets', String(index)), { force: true });
  }

  save(record: ClusterRecord): void {
    writeFileSync(join(this.dir, `${record.id}.json`), `${JSON.stringify(record, null, 2)}\n`);
  }

  remove(id: string): void {
    rmSync(join(this.dir, `${id}.json`), { force: true });
  }

  list(): ClusterRecord[] {
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as ClusterRecord)
      .sort((a, b) => a.createdAtUnixMs - b.createdAtUnixMs);
  }
}

/** Every IPv4 address on an interface of this host's network namespace, up or down (Node's own list skips down ones). */
function readHostAddresses(): string[] {
  const out = execFileSync(resolveBinary('ip'), ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
  return [...out.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1] ?? '');
}
