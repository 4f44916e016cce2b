import type { ChildProcess } from 'node:child_process';
import { LocalCluster } from '../../../local/cluster/cluster';
import { httpGet, NAMED_HTTP_SERVER, startInNamespace } from '../../harness/programs';

describe('HAProxy driven through its runtime API (issue #3)', () => {
  let cluster: LocalCluster;
  const servers: ChildProcess[] = [];

  beforeAll(async () => {
    cluster = await LocalCluster.up({ nodes: 2, services: ['app'] });
  });

  afterAll(async () => {
    for (const s of servers) s.kill('SIGKILL');
    await cluster?.down(true);
  });

  it('sends requests to node A, then after a backend switch to node B, without restarting HAProxy', async () => {
    const [a, b] = cluster.nodes;
    if (a === undefined || b === undefined) throw new Error('need two nodes');
    for (const node of [a, b]) {
      servers.push(
        await startInNamespace(node.netnsPath, [
          process.execPath,
          '-e',
          NAMED_HTTP_SERVER,
          node.name,
          '8080',
          node.address,
        ]),
      );
    }
    const url = `http://127.0.0.1:${cluster.haproxy.portOf('app')}/`;
    const pidBefore = await cluster.haproxy.pid();
    expect(pidBefore).toBeGreaterThan(0);

    await expect(httpGet(url)).resolves.toMatchObject({ status: 503 });

    await cluster.haproxy.setServer('app', 1, a.address, 8080);
    expect((await httpGet(url)).body).toBe('node1 1');
    expect((await httpGet(url)).body).toBe('node1 2');

    await cluster.haproxy.drainServer('app', 1);
    await cluster.haproxy.setServer('app', 2, b.address, 8080);
    expect((await httpGet(url)).body).toBe('node2 1');

    const state = await cluster.haproxy.servers('app');
    expect(state.find((s) => s.name === 's1')).toMatchObject({ address: a.address, inRotation: false });
    expect(state.find((s) => s.name === 's2')).toMatchObject({ address: b.address, port: 8080, inRotation: true });
    expect(await cluster.haproxy.pid()).toBe(pidBefore);
  });
});
