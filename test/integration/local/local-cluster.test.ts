import { existsSync, readdirSync } from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { LocalCluster } from '../../../local/cluster/cluster';
import { ClusterRegistry } from '../../../local/cluster/registry';
import { run } from '../../../common/exec';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../../../proto/gen/grpc/health/v1/health';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function check(address: string): Promise<HealthCheckResponse_ServingStatus> {
  const client = new HealthClient(address, credentials.createInsecure());
  return new Promise((resolve, reject) =>
    client.check({ service: 'sidecar' }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res.status);
    }),
  );
}

describe('local cluster (issue #3)', () => {
  const registry = new ClusterRegistry();
  let cluster: LocalCluster;

  beforeAll(async () => {
    cluster = await LocalCluster.up({ nodes: 3 }, registry);
  });

  afterAll(async () => {
    await cluster?.down(true);
  });

  it('brings up N nodes, each with its own address and a serving sidecar', async () => {
    expect(cluster.nodes.map((n) => n.name)).toEqual(['node1', 'node2', 'node3']);
    expect(new Set(cluster.nodes.map((n) => n.address)).size).toBe(3);
    for (const node of cluster.nodes) {
      expect(existsSync(node.netnsPath)).toBe(true);
      expect(await check(node.sidecarAddress)).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
  });

  it("answers a node's health RPC from inside another node's namespace", async () => {
    const [a, b] = cluster.nodes;
    if (a === undefined || b === undefined) throw new Error('need two nodes');
    const script = `
      const grpc = require('@grpc/grpc-js');
      require('${require.resolve('../../../scripts/register.js')}');
      const { HealthClient } = require('${require.resolve('../../../proto/gen/grpc/health/v1/health.ts')}');
      new HealthClient('${b.sidecarAddress}', grpc.credentials.createInsecure())
        .check({ service: 'sidecar' }, (err, res) => { console.log(err ? 'error ' + err.message : 'status ' + res.status); process.exit(0); });`;
    const result = await cluster.exec(a.name, [process.execPath, '-e', script]);
    expect(result.stdout.trim()).toBe(`status ${HealthCheckResponse_ServingStatus.SERVING}`);
    // The source really was node1: its namespace sees only its own address.
    const addrs = await cluster.exec(a.name, ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(addrs.stdout).toContain(a.address);
    expect(addrs.stdout).not.toContain(b.address);
  });

  it('lets a process in one node reach another node by its address', async () => {
    const [a, , c] = cluster.nodes;
    if (a === undefined || c === undefined) throw new Error('need three nodes');
    const probe = `require('net').connect(7450, '${c.address}').on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(1); });`;
    const result = await cluster.exec(a.name, [process.execPath, '-e', probe]);
    expect(result.stdout.trim()).toBe('connected');
  });

  it('leaves no namespace, link, process or registry entry after down', async () => {
    const second = await LocalCluster.up({ nodes: 2 }, registry);
    const record = registry.list().find((r) => r.id === second.id);
    if (record === undefined) throw new Error('cluster not recorded');
    const pids = [...record.nodes.map((n) => n.sidecarPid), record.haproxyPid];
    expect(pids.every(alive)).toBe(true);
    await second.down(true);
    expect(pids.some(alive)).toBe(false);
    const namespaces = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
    expect(namespaces.filter((n) => n.startsWith(`nc-${second.id}-`))).toEqual([]);
    const links = await run(['ip', '-o', 'link', 'show']);
    expect(links.stdout).not.toContain(`ncb-${second.id}`);
    expect(links.stdout).not.toContain(`ncv${second.id}`);
    expect(registry.list().map((r) => r.id)).not.toContain(second.id);
    expect(existsSync(second.runDir)).toBe(false);
  });
});
