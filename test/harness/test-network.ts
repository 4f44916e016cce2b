import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ClusterRegistry, subnetPrefix } from '../../local/cluster/registry';

export interface TestNode {
  readonly name: string;
  readonly netnsPath: string;
  readonly address: string;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Two or more network namespaces on a bridge of their own, named with a per-run prefix (`a1…`) so parallel
 * test runs and other users of this machine never collide. Its /24 is claimed from the local clusters' registry; the bridge
 * holds .1, so the root namespace reaches every node.
 */
export class TestNetwork {
  readonly nodes: TestNode[] = [];
  private readonly tag = randomBytes(3).toString('hex');
  private readonly bridge = `a1b${this.tag}`;
  // From the local clusters' own pool: a test's network and a cluster on one /24 make both unreachable.
  private readonly registry = new ClusterRegistry();
  private readonly subnet = this.registry.claimSubnet(this.tag);
  private readonly prefix = subnetPrefix(this.subnet);

  static create(count: number): TestNetwork {
    const net = new TestNetwork();
    try {
      ip('link', 'add', net.bridge, 'type', 'bridge');
      ip('addr', 'add', `${net.prefix}.1/24`, 'dev', net.bridge);
      ip('link', 'set', net.bridge, 'up');
      for (let i = 0; i < count; i++) net.addNode(i);
    } catch (err) {
      net.destroy();
      throw err;
    }
    return net;
  }

  get gateway(): string {
    return `${this.prefix}.1`;
  }

  private addNode(index: number): void {
    const name = `a1-${this.tag}-${index}`;
    const veth = `a1v${this.tag}${index}`;
    const address = `${this.prefix}.${index + 2}`;
    ip('netns', 'add', name);
    ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`);
    ip('link', 'set', `${veth}p`, 'netns', name);
    ip('link', 'set', veth, 'master', this.bridge);
    ip('link', 'set', veth, 'up');
    ip('-n', name, 'link', 'set', 'lo', 'up');
    ip('-n', name, 'link', 'set', `${veth}p`, 'name', 'eth0');
    ip('-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    ip('-n', name, 'link', 'set', 'eth0', 'up');
    ip('-n', name, 'route', 'add', 'default', 'via', this.gateway);
    this.nodes.push({ name, netnsPath: `/run/netns/${name}`, address });
  }

  node(index: number): TestNode {
    const node = this.nodes[index];
    if (!node) throw new Error(`no test node ${index}`);
    return node;
  }

  destroy(): void {
    for (let i = 0; i < 8; i++) {
      try {
        ip('link', 'del', `a1v${this.tag}${i}`);
      } catch {
        // not created
      }
      try {
        ip('netns', 'del', `a1-${this.tag}-${i}`);
      } catch {
        // not created
      }
    }
    try {
      ip('link', 'del', this.bridge);
    } catch {
      // not created
    }
    this.registry.releaseSubnet(this.subnet);
  }
}
