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
