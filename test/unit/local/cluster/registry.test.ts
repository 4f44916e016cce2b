import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterRegistry, SUBNET_COUNT, subnetPrefix } from '../../../../local/cluster/registry';

describe('cluster registry: claiming a /24', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'nc-registry-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts at the spot the id names and files the claim under the id', () => {
    const registry = new ClusterRegistry(dir, () => []);
    const index = registry.claimSubnet('1f');
    expect(index).toBe(0x1f);
    expect(readFileSync(join(dir, 'subnets', String(index)), 'utf8')).toBe('1f');
  });

  it('skips a /24 an interface of the host already has an address in, though no claim names it', () => {
    // A killed run's network still routes 198.18.31.0/24 and 198.18.32.0/24; a cluster there is unreachable.
    const registry = new ClusterRegistry(dir, () => [
      '127.0.0.1',
      `${subnetPrefix(0x1f)}.1`,
      `${subnetPrefix(0x20)}.7`,
    ]);
    expect(registry.claimSubnet('1f')).toBe(0x21);
  });

  it('does not take 198.18.1.0/24 for an address in 198.18.10.0/24', () => {
    const registry = new ClusterRegistry(dir, () => [`${subnetPrefix(10)}.2`]);
    expect(registry.claimSubnet('1')).toBe(1);
  });

  it('never gives two claims the same /24, and gives one back once released', () => {
    const registry = new ClusterRegistry(dir, () => []);
    const first = registry.claimSubnet('a');
    const second = registry.claimSubnet('a');
    expect(second).not.toBe(first);
    registry.releaseSubnet(first);
    expect(registry.claimSubnet('a')).toBe(first);
  });

  it('wraps around past the last /24', () => {
    const registry = new ClusterRegistry(dir, () => [`${subnetPrefix(SUBNET_COUNT - 1)}.1`]);
    expect(registry.claimSubnet((SUBNET_COUNT - 1).toString(16))).toBe(0);
  });

  it('refuses with a coded error naming the registry when every /24 is taken, and files nothing', () => {
    const routed = Array.from({ length: SUBNET_COUNT }, (_, i) => `${subnetPrefix(i)}.1`);
    const registry = new ClusterRegistry(dir, () => routed);
    expect(() => registry.claimSubnet('2a')).toThrow(
      expect.objectContaining({ code: 'NC_CLUSTER_NO_SUBNET', context: { id: '2a', registry: dir } }) as Error,
    );
    expect(readdirSync(join(dir, 'subnets'))).toEqual([]);
  });
});
