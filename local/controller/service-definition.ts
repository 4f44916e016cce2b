import type { MigrationMode, TaskSpec } from '../../proto/gen/chain/v1/sidecar';

/** A chained service the local controller runs: local mode's stand-in for a Nomad job with driver "chain". */
export interface ServiceDefinition {
  readonly name: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Port the program listens on (inside its node, on every address). */
  readonly port: number;
  /** Files copied into the task's /local before it starts: host path -> name under /local. */
  readonly localFiles: Readonly<Record<string, string>>;
  readonly memoryLimitBytes: number;
  /**
   * How this service moves, overriding the automatic choice (post-copy for a task of at least 64 MiB resident
   * where both nodes offer lazy pages, else stop-and-copy): e.g. MIGRATION_MODE_STOP_AND_COPY for a service that
   * must never risk post-copy's window. @default the controller's mode, automatic unless set
   */
  readonly migrationMode?: MigrationMode;
  /** Working directory inside the task. @default "/local" */
  readonly cwd?: string;
  /** The task's user, resolved inside its root (Nomad's task `user`). @default root */
  readonly user?: string;
  /** Relative CPU weight (Nomad's `resources.cpu`). @default 0, no weight set */
  readonly cpuShares?: number;
  /** Host path of the task's root filesystem. @default "", the host's /usr and /etc read-only */
  readonly rootfs?: string;
}

/** The spec of one instance on one node: its own directories under the node's data dir, the node's network. */
export function taskSpecFor(service: ServiceDefinition, taskDir: string, netnsPath: string): TaskSpec {
  return {
    argv: [...service.argv],
    env: { ...service.env, PORT: String(service.port) },
    cwd: service.cwd ?? '/local',
    allocDir: `${taskDir}/alloc`,
    localDir: `${taskDir}/local`,
    secretsDir: `${taskDir}/secrets`,
    memoryLimitBytes: service.memoryLimitBytes,
    cpuShares: service.cpuShares ?? 0,
    stdoutPath: `${taskDir}/stdout.log`,
    stderrPath: `${taskDir}/stderr.log`,
    networkNamespace: netnsPath,
    rootfs: service.rootfs ?? '',
    binds: {},
    user: service.user ?? '',
  };
}
