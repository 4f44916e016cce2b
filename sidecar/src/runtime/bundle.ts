import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { criuTlsOptions, type CriuTls } from '../checkpoint/criu';
import type { TaskUser } from './task-user';
import { ROOT_USER } from './task-user';
import type { IdMapping } from './user-namespace';

/** Fixed in-container paths every task sees, whatever node it runs on. */
export const ALLOC_PATH = '/alloc';
export const LOCAL_PATH = '/local';
export const SECRETS_PATH = '/secrets';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// Docker's default set: enough for ordinary servers, nothing that reaches outside the container.
const CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export interface BundleInput {
  readonly spec: TaskSpec;
  /** runc's cgroup path for the task, unique on the machine. */
  readonly cgroupsPath: string;
  /** Network namespace the task joins when its spec names none (the node's), or '' for the sidecar's own. */
  readonly defaultNetworkNamespace: string;
  /** CRIU options file that runc passes to every dump and restore of this container. */
  readonly criuConfigFile: string;
  readonly hostname: string;
  /** When set, the task's lazy dumps serve their pages over CRIU's TLS. */
  readonly criuTls?: CriuTls;
  /** The task's own user namespace; without one, root in the task is root on the node. */
  readonly idMapping?: IdMapping;
  /** Who the first process runs as (ids inside the user namespace). @default root */
  readonly user?: TaskUser;
}

/**
 * A root built from the host: `/` itself cannot be a runc root here (pivot_root: device or resource busy),
 * so a small directory holds mount points and the usual /bin-style symlinks, with /usr and /etc bound
 * read-only over it.
 */
export async function buildHostRootfs(dir: string): Promise<void> {
  for (const sub of ['proc', 'dev', 'sys', 'tmp', 'run', 'usr', 'etc', 'alloc', 'local', 'secrets', 'var', 'root']) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  // runc gives a tmpfs the mode of the directory it is mounted on, whatever its mode= option says: a /tmp of
  // 0755 refused every user but root (a database server running as its own user could not write its temp files).
  await chmod(join(dir, 'tmp'), 0o1777);
  for (const link of ['bin', 'lib', 'lib64', 'sbin']) {
    await symlink(`usr/${link}`, join(dir, link)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
}

/**
 * The parts of the host's /sys that a task in its own user namespace can have and CRIU can restore. A new
 * sysfs needs a network namespace owned by the task's user namespace, which the node's is not; and the host's
 * /sys cannot be bound whole, because the mounts beneath it (/sys/fs/cgroup…) are locked in the task's mount
 * namespace: runc's recursive bind works, but CRIU's restore binds each mount alone, which the kernel then
 * refuses ("mnt-v2: Failed to open_tree /sys: Invalid argument"). So /sys is a small tmpfs with read-only
 * binds of the subtrees that never hold a mount; the host's cgroup tree stays out of sight. The list is
 * fixed, not probed, because a restore needs the same mounts as the dump on whichever node it runs.
 */
export const USER_NAMESPACE_SYS_DIRS = ['block', 'bus', 'class', 'dev', 'devices'];

function sysMounts(userNamespace: boolean): Record<string, unknown>[] {
  if (!userNamespace) {
    return [
      { destination: '/sys', type: 'none', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] },
    ];
  }
  return [
    { destination: '/sys', type: 'tmpfs', source: 'sysfs-dirs', options: ['nosuid', 'noexec', 'nodev', 'mode=755'] },
    ...USER_NAMESPACE_SYS_DIRS.map((dir) => ({
      destination: `/sys/${dir}`,
      type: 'bind',
      source: `/sys/${dir}`,
      options: ['bind', 'rprivate', 'nosuid', 'noexec', 'nodev', 'ro'],
    })),
  ];
}

function bind(
  source: string,
  destination: string,
  readonly: boolean,
  flags: readonly string[] = [],
): Record<string, unknown> {
  return { destination, type: 'bind', source, options: ['rbind', 'rprivate', ...flags, readonly ? 'ro' : 'rw'] };
}

/**
 * Nomad mounts a task's secrets dir as a noexec tmpfs. Inside the task's user namespace that flag is locked: the
 * read-only remount of the bind must repeat it or the kernel refuses it ("mount … /secrets: operation not
 * permitted", seen on the real-Nomad tier), so the bind asks for every restrictive flag such a dir may have.
 */
const SECRETS_FLAGS = ['nosuid', 'nodev', 'noexec'];

/** The OCI runtime config (config.json) of one task. */
export function ociConfig(input: BundleInput, rootfs: string): Record<string, unknown> {
  const { spec } = input;
  const hostRoot = spec.rootfs === '';
  const mounts: Record<string, unknown>[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755'] },
  ];
  mounts.push(...sysMounts(input.idMapping !== undefined));
  if (hostRoot) mounts.push(bind('/usr', '/usr', true), bind('/etc', '/etc', true));
  if (spec.allocDir !== '') mounts.push(bind(spec.allocDir, ALLOC_PATH, false));
  if (spec.localDir !== '') mounts.push(bind(spec.localDir, LOCAL_PATH, false));
  if (spec.secretsDir !== '') mounts.push(bind(spec.secretsDir, SECRETS_PATH, true, SECRETS_FLAGS));
  for (const [source, destination] of Object.entries(spec.binds).sort()) mounts.push(bind(source, destination, false));

  const namespaces: Record<string, string>[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  const netns = spec.networkNamespace !== '' ? spec.networkNamespace : input.defaultNetworkNamespace;
  if (netns !== '') namespaces.push({ type: 'network', path: netns });

  const resources: Record<string, unknown> = { devices: [{ allow: false, access: 'rwm' }] };
  if (spec.memoryLimitBytes > 0) resources.memory = { limit: spec.memoryLimitBytes };
  if (spec.cpuShares > 0) resources.cpu = { shares: spec.cpuShares };

  const user = input.user ?? ROOT_USER;
  const mapping = input.idMapping;
  if (mapping !== undefined) namespaces.push({ type: 'user' });
  const idMappings =
    mapping === undefined
      ? {}
      : {
          uidMappings: [{ containerID: 0, hostID: mapping.hostId, size: mapping.size }],
          gidMappings: [{ containerID: 0, hostID: mapping.hostId, size: mapping.size }],
        };
  // A process started as another user gets no capabilities, as on any Linux host (and in Docker): a server
  // that drops to www-data must not keep CAP_DAC_OVERRIDE. The bounding set still caps what it could regain.
  const granted = user.uid === 0 ? CAPABILITIES : [];

  const env = Object.entries(spec.env).map(([key, value]) => `${key}=${value}`);
  if (!Object.hasOwn(spec.env, 'PATH')) env.unshift(DEFAULT_PATH);

  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: user.uid, gid: user.gid, additionalGids: [...user.additionalGids] },
      args: spec.argv,
      env,
      cwd: spec.cwd === '' ? '/' : spec.cwd,
      capabilities: {
        bounding: CAPABILITIES,
        effective: granted,
        permitted: granted,
        ambient: granted,
      },
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: hostRoot },
    hostname: input.hostname,
    mounts,
    annotations: { 'org.criu.config': input.criuConfigFile },
    linux: {
      namespaces,
      ...idMappings,
      cgroupsPath: input.cgroupsPath,
      resources,
      maskedPaths: [
        '/proc/acpi',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/sched_debug',
        '/sys/firmware',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/**
 * CRIU options for every dump and restore of a task. `tcp-close`: open connections would otherwise fail the
 * dump, and `--tcp-established` cannot restore on another address; clients reconnect through the router.
 */
export const CRIU_TASK_OPTIONS = ['tcp-close', 'file-locks'];

/** Writes a bundle directory (config.json, rootfs, CRIU options) and returns its path. */
export async function writeBundle(dir: string, input: BundleInput): Promise<string> {
  await mkdir(dir, { recursive: true });
  let rootfs = input.spec.rootfs;
  if (rootfs === '') {
    rootfs = join(dir, 'rootfs');
    await buildHostRootfs(rootfs);
    // runc would make these itself, but not as root in a user namespace: this root belongs to the node's root.
    for (const destination of Object.values(input.spec.binds))
      await mkdir(join(rootfs, destination), { recursive: true });
  }
  const tlsLines = input.criuTls === undefined ? [] : criuTlsOptions(input.criuTls).map((option) => option.join(' '));
  await writeFile(input.criuConfigFile, `${[...CRIU_TASK_OPTIONS, ...tlsLines].join('\n')}\n`);
  await writeFile(join(dir, 'config.json'), JSON.stringify(ociConfig(input, rootfs), null, 2));
  return dir;
}
