import { TaskSpec } from '../../../../proto/gen/chain/v1/sidecar';
import { ociConfig } from '../../../../sidecar/src/runtime/bundle';
import { containerIdFor } from '../../../../sidecar/src/runtime/task-runtime';

type Mount = { destination: string; source: string; options?: string[] };

describe('OCI bundle', () => {
  const input = {
    cgroupsPath: '/nomad-chain/n1/t',
    defaultNetworkNamespace: '/run/netns/node1',
    criuConfigFile: '/d/criu.conf',
    hostname: 'web',
  };

  it('builds a read-only host root with the fixed directories bound and the node namespace joined', () => {
    const spec = TaskSpec.fromPartial({
      argv: ['/bin/sh'],
      env: { A: '1' },
      allocDir: '/data/alloc',
      localDir: '/data/local',
      secretsDir: '/data/secrets',
      memoryLimitBytes: 1024 * 1024,
      binds: { '/host/x': '/x' },
    });
    const config = ociConfig({ spec, ...input }, '/d/rootfs') as {
      root: { readonly: boolean };
      mounts: Mount[];
      process: { env: string[]; cwd: string };
      annotations: Record<string, string>;
      linux: { namespaces: { type: string; path?: string }[]; resources: { memory?: { limit: number } } };
    };
    expect(config.root.readonly).toBe(true);
    const byDest = new Map(config.mounts.map((m) => [m.destination, m]));
    expect(byDest.get('/alloc')).toMatchObject({
      source: '/data/alloc',
      options: expect.arrayContaining(['rw']) as unknown,
    });
    expect(byDest.get('/secrets')?.options).toEqual(expect.arrayContaining(['ro', 'noexec', 'nosuid', 'nodev']));
    expect(byDest.get('/usr')?.options).toContain('ro');
    expect(byDest.get('/x')?.source).toBe('/host/x');
    expect(config.process.env).toEqual(expect.arrayContaining(['A=1', expect.stringMatching(/^PATH=/) as unknown]));
    expect(config.process.cwd).toBe('/');
    expect(config.annotations['org.criu.config']).toBe('/d/criu.conf');
    expect(config.linux.namespaces).toContainEqual({ type: 'network', path: '/run/netns/node1' });
    expect(config.linux.namespaces.map((n) => n.type)).toEqual(expect.arrayContaining(['pid', 'mount']));
    expect(config.linux.resources.memory).toEqual({ limit: 1024 * 1024 });
  });

  it("lets a task's own namespace win and shares the sidecar's when there is none", () => {
    const own = ociConfig(
      { spec: TaskSpec.fromPartial({ argv: ['/x'], networkNamespace: '/run/netns/t' }), ...input },
      '/r',
    ) as {
      linux: { namespaces: { type: string; path?: string }[] };
    };
    expect(own.linux.namespaces).toContainEqual({ type: 'network', path: '/run/netns/t' });
    const none = ociConfig(
      { spec: TaskSpec.fromPartial({ argv: ['/x'] }), ...input, defaultNetworkNamespace: '' },
      '/r',
    ) as {
      linux: { namespaces: { type: string }[] };
    };
    expect(none.linux.namespaces.map((n) => n.type)).not.toContain('network');
  });

  it('runs the task in its own user namespace with the same mapping for uids and gids', () => {
    const config = ociConfig(
      {
        spec: TaskSpec.fromPartial({ argv: ['/x'] }),
        ...input,
        idMapping: { hostId: 100000, size: 65536 },
        user: { uid: 70, gid: 70, additionalGids: [4] },
      },
      '/r',
    ) as {
      mounts: Mount[];
      process: { user: unknown; capabilities: Record<string, string[]> };
      linux: { namespaces: { type: string }[]; uidMappings: unknown; gidMappings: unknown };
    };
    expect(config.linux.namespaces.map((n) => n.type)).toContain('user');
    expect(config.linux.uidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    expect(config.linux.gidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    expect(config.process.user).toEqual({ uid: 70, gid: 70, additionalGids: [4] });
    // A non-root user starts without capabilities; the bounding set still limits what it could regain.
    expect(config.process.capabilities.effective).toEqual([]);
    expect(config.process.capabilities.bounding).toContain('CAP_CHOWN');
    // No host /sys bound whole: its locked cgroup mounts would fail CRIU's restore.
    const sys = config.mounts.filter((m) => m.destination === '/sys' || m.destination.startsWith('/sys/'));
    expect(sys.find((m) => m.destination === '/sys')).toMatchObject({ source: 'sysfs-dirs' });
    expect(sys.map((m) => m.destination)).toContain('/sys/devices');
    for (const m of sys.slice(1)) expect(m.options).toEqual(expect.arrayContaining(['bind', 'ro']) as unknown);
  });

  it('keeps root with its capabilities and the host /sys without a user namespace', () => {
    const config = ociConfig({ spec: TaskSpec.fromPartial({ argv: ['/x'] }), ...input }, '/r') as {
      mounts: Mount[];
      process: { user: unknown; capabilities: Record<string, string[]> };
      linux: { namespaces: { type: string }[]; uidMappings?: unknown };
    };
    expect(config.linux.namespaces.map((n) => n.type)).not.toContain('user');
    expect(config.linux.uidMappings).toBeUndefined();
    expect(config.process.user).toEqual({ uid: 0, gid: 0, additionalGids: [] });
    expect(config.process.capabilities.effective).toContain('CAP_CHOWN');
    expect(config.mounts.find((m) => m.destination === '/sys')?.options).toContain('rbind');
  });

  it('derives container ids runc accepts, distinct per task id', () => {
    const a = containerIdFor('9f1c-alloc/web');
    expect(a).toMatch(/^[\w.+-]+$/);
    expect(containerIdFor('9f1c-alloc/web')).toBe(a);
    expect(containerIdFor('9f1c-alloc_web')).not.toBe(a);
  });
});
