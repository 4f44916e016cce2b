import {
  deepFreeze,
  parseDurationMs,
  parseSizeBytes,
  rejectUnknownKeys,
  requireInt,
  requireString,
} from '../../common/config';
import { ConfigError } from '../../common/config-error';
import type { FilesOverLimit } from './checkpoint/file-tree/task-files';
import { DEFAULT_ID_MAPPING, type IdMapping } from './runtime/user-namespace';
import { parseTelemetryConfig, type TelemetryConfig, type TelemetryOptions } from './telemetry/telemetry-config';

/** What an operator may set (file or environment). Every field documents its default. */
export interface SidecarOptions {
  /** Name of the node this sidecar serves. @default os hostname */
  nodeName?: string;
  /** Address the peer-facing gRPC server binds. @default "0.0.0.0" */
  listenAddress?: string;
  /** Port of the peer-facing gRPC server; 0 lets the OS choose. @default 7450 */
  listenPort?: number;
  /** Port of the State Transfer Protocol server (mutual TLS). @default 7451 */
  transferPort?: number;
  /** host:port peers use to reach this node's transfer server. @default "<listenAddress>:<transferPort>" */
  advertiseAddress?: string;
  /** CA, certificate and key (PEM) of the transfer's mutual TLS; without all three, transfer is off. @default "" */
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** Staged-checkpoint store (encrypted at rest). @default "<dataDir>/store" */
  storeDir?: string;
  /** Upper bound of the store on disk. @default "8GiB" */
  storeMaxSize?: string | number;
  /** Where the sidecar keeps tasks, checkpoints and state. @default "/var/lib/nomad-chain" */
  dataDir?: string;
  /** Unix socket of the local API the plugin talks to. @default "<dataDir>/sidecar.sock" */
  localSocket?: string;
  /** pino level. @default "info" */
  logLevel?: string;
  /** runc binary (env RUNC_BIN). @default "/usr/sbin/runc" */
  runcBin?: string;
  /** CRIU >= 4.2 binary, passed to runc as --criu (env CRIU_BIN). @default "/usr/local/sbin/criu" */
  criuBin?: string;
  /** Network namespace tasks join when their spec names none (local mode: the node's). @default "" (the sidecar's) */
  taskNetworkNamespace?: string;
  /** Prefix of task cgroup paths. @default "/nomad-chain/<nodeName>" */
  cgroupParent?: string;
  /** How long a task may take to reach running (a restore included). @default "60s" */
  startTimeout?: string | number;
  /** Grace between a stop signal and SIGKILL when the caller gives none. @default "10s" */
  stopTimeout?: string | number;
  /** Longest a dump may take before it is abandoned and the task resumed. @default "5m" */
  dumpTimeout?: string | number;
  /** Longest a lazy dump waits, frozen, for the target's lazy-pages daemon before the source resumes. @default "15s" */
  lazyConnectTimeout?: string | number;
  /** Longest a lazy migration may take once the target connected. @default "10m" */
  lazyTransferTimeout?: string | number;
  /** Timeout of one runc/criu/iptables command. @default "30s" */
  commandTimeout?: string | number;
  /**
   * A peer's upload that neither sends a chunk nor reads an acknowledgement for this long is cut
   * (NC_TRANSFER_TIMEOUT), so a stalled or hostile sender cannot hold the receiver's store open. @default "60s"
   */
  transferIdleTimeout?: string | number;
  /** Address peers' lazy-pages daemons reach this node's page server at. @default host of advertiseAddress */
  pageServerHost?: string;
  /**
   * Network namespace this node's lazy-pages daemons run in: never the restored task's, which runc locks
   * during the restore. @default "" (the sidecar's own)
   */
  lazyPagesNetns?: string;
  /**
   * How often every running task is checkpointed (without stopping it) to `backgroundBuddy`, so a node that
   * vanishes without warning loses at most one interval; "0s" turns it off. @default "0s"
   */
  backgroundCheckpointInterval?: string | number;
  /** host:port of the buddy node's transfer server that keeps the background checkpoints. @default "" */
  backgroundBuddy?: string;
  /** Telemetry agent streaming this node's samples to the forecaster (see sidecar/README.md). @default off */
  telemetry?: TelemetryOptions;
  /**
   * Largest total of a task's writable directories (/alloc, /local, binds) a migration carries; "0" = no
   * limit. The default moves in about 15 s at the transfer speed measured here, half a 30 s notice.
   * @default "1GiB"
   */
  filesMaxSize?: string | number;
  /** A task over filesMaxSize: "cold-start" refuses to move it (it keeps running; Nomad restarts it cold), "memory-only" moves memory without its files. @default "cold-start" */
  filesOverLimit?: string;
  /** How long the source keeps its own copy of a handed-over checkpoint, to restore the task here if the target cannot. @default "10m" */
  handoverRetention?: string | number;
  /**
   * Tasks run in their own user namespace: "auto" when the kernel lets the sidecar make one, "on" refuses to
   * start without it, "off" never. Without one, CRIU (lacking CAP_SYS_RESOURCE) cannot dump a task whose
   * processes run as another user, and root in a task is root on the node. @default "auto"
   */
  userNamespace?: string;
  /** First host id of the tasks' id range; the same on every node, so moved files keep their owners. @default 100000 */
  userNamespaceHostId?: number;
  /** How many ids (from 0 inside) the range maps. @default 65536 */
  userNamespaceSize?: number;
}

export type UserNamespaceMode = 'auto' | 'on' | 'off';

export interface SidecarConfig {
  readonly nodeName: string;
  readonly listenAddress: string;
  readonly listenPort: number;
  readonly transferPort: number;
  readonly advertiseAddress: string;
  /** Undefined when transfer is off (no TLS material configured). */
  readonly tls: { readonly caFile: string; readonly certFile: string; readonly keyFile: string } | undefined;
  readonly storeDir: string;
  readonly storeMaxBytes: number;
  readonly dataDir: string;
  readonly localSocket: string;
  readonly logLevel: string;
  readonly runcBin: string;
  readonly criuBin: string;
  readonly taskNetworkNamespace: string;
  readonly cgroupParent: string;
  readonly startTimeoutMs: number;
  readonly stopTimeoutMs: number;
  readonly dumpTimeoutMs: number;
  readonly lazyConnectTimeoutMs: number;
  readonly lazyTransferTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly transferIdleTimeoutMs: number;
  readonly pageServerHost: string;
  readonly lazyPagesNetns: string;
  /** 0 when background checkpoints are off. */
  readonly backgroundCheckpointIntervalMs: number;
  readonly backgroundBuddy: string;
  readonly telemetry: TelemetryConfig;
  readonly filesMaxBytes: number;
  readonly filesOverLimit: FilesOverLimit;
  readonly handoverRetentionMs: number;
  readonly userNamespace: UserNamespaceMode;
  readonly idMapping: IdMapping;
}

/**
 * Every option with its default, the one list of what an operator may set; `undefined` = derived from other
 * options when unset (see SidecarOptions).
 */
export const SIDECAR_DEFAULTS = deepFreeze({
  nodeName: undefined,
  listenAddress: '0.0.0.0',
  listenPort: 7450,
  transferPort: 7451,
  advertiseAddress: undefined,
  tlsCaFile: '',
  tlsCertFile: '',
  tlsKeyFile: '',
  storeDir: undefined,
  storeMaxSize: '8GiB',
  dataDir: '/var/lib/nomad-chain',
  localSocket: undefined,
  logLevel: 'info',
  runcBin: '/usr/sbin/runc',
  criuBin: '/usr/local/sbin/criu',
  taskNetworkNamespace: '',
  cgroupParent: undefined,
  startTimeout: '60s',
  stopTimeout: '10s',
  dumpTimeout: '5m',
  lazyConnectTimeout: '15s',
  lazyTransferTimeout: '10m',
  commandTimeout: '30s',
  transferIdleTimeout: '60s',
  pageServerHost: undefined,
  lazyPagesNetns: '',
  backgroundCheckpointInterval: '0s',
  backgroundBuddy: '',
  telemetry: {},
  filesMaxSize: '1GiB',
  filesOverLimit: 'cold-start',
  handoverRetention: '10m',
  userNamespace: 'auto',
  userNamespaceHostId: DEFAULT_ID_MAPPING.hostId,
  userNamespaceSize: DEFAULT_ID_MAPPING.size,
} satisfies Record<keyof SidecarOptions, unknown>);
const FIELDS = Object.keys(SIDECAR_DEFAULTS) as (keyof SidecarOptions)[];
const OVER_LIMIT: readonly FilesOverLimit[] = ['cold-start', 'memory-only'];
const USER_NAMESPACE_MODES: readonly UserNamespaceMode[] = ['auto', 'on', 'off'];
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

function absolutePath(field: string, value: unknown): string {
  const path = requireString(field, value);
  if (!path.startsWith('/')) throw new ConfigError(field, 'expected an absolute path');
  return path;
}

/** Parses and validates once; the result is frozen. Errors name the field. */
export function parseConfig(raw: Record<string, unknown>, hostname: string): SidecarConfig {
  rejectUnknownKeys('', raw, FIELDS);
  const dataDir = absolutePath('dataDir', raw.dataDir ?? SIDECAR_DEFAULTS.dataDir);
  const logLevel = requireString('logLevel', raw.logLevel ?? SIDECAR_DEFAULTS.logLevel);
  if (!LEVELS.includes(logLevel)) throw new ConfigError('logLevel', `expected one of ${LEVELS.join(', ')}`);
  const nodeName = requireString('nodeName', raw.nodeName ?? hostname);
  if (!/^[\w.-]+$/.test(nodeName)) throw new ConfigError('nodeName', 'expected letters, digits, ".", "_" or "-"');
  const listenAddress = requireString('listenAddress', raw.listenAddress ?? SIDECAR_DEFAULTS.listenAddress);
  const listenPort = requireInt('listenPort', raw.listenPort ?? SIDECAR_DEFAULTS.listenPort, 0, 65535);
  const netns = raw.taskNetworkNamespace ?? SIDECAR_DEFAULTS.taskNetworkNamespace;
  const transferPort = requireInt('transferPort', raw.transferPort ?? SIDECAR_DEFAULTS.transferPort, 0, 65535);
  const advertiseAddress = requireString(
    'advertiseAddress',
    raw.advertiseAddress ?? `${listenAddress}:${transferPort}`,
  );
  const tlsFiles = [raw.tlsCaFile, raw.tlsCertFile, raw.tlsKeyFile].filter((f) => f !== undefined && f !== '');
  if (tlsFiles.length !== 0 && tlsFiles.length !== 3) {
    throw new ConfigError('tlsCaFile', 'set tlsCaFile, tlsCertFile and tlsKeyFile together, or none of them');
  }
  const lazyNetns = raw.lazyPagesNetns ?? SIDECAR_DEFAULTS.lazyPagesNetns;
  const backgroundCheckpointIntervalMs = parseDurationMs(
    'backgroundCheckpointInterval',
    raw.backgroundCheckpointInterval ?? SIDECAR_DEFAULTS.backgroundCheckpointInterval,
  );
  const backgroundBuddy =
    raw.backgroundBuddy === undefined || raw.backgroundBuddy === ''
      ? ''
      : requireString('backgroundBuddy', raw.backgroundBuddy);
  if (backgroundCheckpointIntervalMs > 0 && backgroundBuddy === '') {
    throw new ConfigError('backgroundBuddy', 'required when backgroundCheckpointInterval is set');
  }
  if (backgroundCheckpointIntervalMs > 0 && tlsFiles.length !== 3) {
    throw new ConfigError(
      'backgroundCheckpointInterval',
      'background checkpoints travel over the transfer: set tlsCaFile, tlsCertFile and tlsKeyFile',
    );
  }
  if (raw.telemetry !== undefined && (typeof raw.telemetry !== 'object' || raw.telemetry === null)) {
    throw new ConfigError('telemetry', 'expected an object');
  }
  const filesOverLimit = requireString(
    'filesOverLimit',
    raw.filesOverLimit ?? SIDECAR_DEFAULTS.filesOverLimit,
  ) as FilesOverLimit;
  if (!OVER_LIMIT.includes(filesOverLimit)) {
    throw new ConfigError('filesOverLimit', `expected one of ${OVER_LIMIT.join(', ')}`);
  }
  const userNamespace = requireString(
    'userNamespace',
    raw.userNamespace ?? SIDECAR_DEFAULTS.userNamespace,
  ) as UserNamespaceMode;
  if (!USER_NAMESPACE_MODES.includes(userNamespace)) {
    throw new ConfigError('userNamespace', `expected one of ${USER_NAMESPACE_MODES.join(', ')}`);
  }
  const idMapping: IdMapping = {
    hostId: requireInt(
      'userNamespaceHostId',
      raw.userNamespaceHostId ?? SIDECAR_DEFAULTS.userNamespaceHostId,
      1,
      2 ** 32 - 2,
    ),
    size: requireInt('userNamespaceSize', raw.userNamespaceSize ?? SIDECAR_DEFAULTS.userNamespaceSize, 1, 2 ** 32 - 1),
  };
  if (idMapping.hostId + idMapping.size > 2 ** 32 - 1) {
    throw new ConfigError('userNamespaceSize', 'userNamespaceHostId + userNamespaceSize must stay below 2^32 - 1');
  }
  return deepFreeze({
    nodeName,
    listenAddress,
    listenPort,
    transferPort,
    advertiseAddress,
    tls:
      tlsFiles.length === 3
        ? {
            caFile: absolutePath('tlsCaFile', raw.tlsCaFile),
            certFile: absolutePath('tlsCertFile', raw.tlsCertFile),
            keyFile: absolutePath('tlsKeyFile', raw.tlsKeyFile),
          }
        : undefined,
    storeDir: absolutePath('storeDir', raw.storeDir ?? `${dataDir}/store`),
    storeMaxBytes: parseSizeBytes('storeMaxSize', raw.storeMaxSize ?? SIDECAR_DEFAULTS.storeMaxSize),
    dataDir,
    localSocket: absolutePath('localSocket', raw.localSocket ?? `${dataDir}/sidecar.sock`),
    logLevel,
    runcBin: absolutePath('runcBin', raw.runcBin ?? SIDECAR_DEFAULTS.runcBin),
    criuBin: absolutePath('criuBin', raw.criuBin ?? SIDECAR_DEFAULTS.criuBin),
    taskNetworkNamespace: netns === '' ? '' : absolutePath('taskNetworkNamespace', netns),
    cgroupParent: absolutePath('cgroupParent', raw.cgroupParent ?? `/nomad-chain/${nodeName}`),
    startTimeoutMs: parseDurationMs('startTimeout', raw.startTimeout ?? SIDECAR_DEFAULTS.startTimeout),
    stopTimeoutMs: parseDurationMs('stopTimeout', raw.stopTimeout ?? SIDECAR_DEFAULTS.stopTimeout),
    dumpTimeoutMs: parseDurationMs('dumpTimeout', raw.dumpTimeout ?? SIDECAR_DEFAULTS.dumpTimeout),
    lazyConnectTimeoutMs: parseDurationMs(
      'lazyConnectTimeout',
      raw.lazyConnectTimeout ?? SIDECAR_DEFAULTS.lazyConnectTimeout,
    ),
    lazyTransferTimeoutMs: parseDurationMs(
      'lazyTransferTimeout',
      raw.lazyTransferTimeout ?? SIDECAR_DEFAULTS.lazyTransferTimeout,
    ),
    commandTimeoutMs: parseDurationMs('commandTimeout', raw.commandTimeout ?? SIDECAR_DEFAULTS.commandTimeout),
    transferIdleTimeoutMs: parseDurationMs(
      'transferIdleTimeout',
      raw.transferIdleTimeout ?? SIDECAR_DEFAULTS.transferIdleTimeout,
    ),
    pageServerHost: requireString('pageServerHost', raw.pageServerHost ?? advertiseAddress.replace(/:\d+$/, '')),
    lazyPagesNetns: lazyNetns === '' ? '' : absolutePath('lazyPagesNetns', lazyNetns),
    backgroundCheckpointIntervalMs,
    backgroundBuddy,
    telemetry: parseTelemetryConfig((raw.telemetry ?? SIDECAR_DEFAULTS.telemetry) as Record<string, unknown>, dataDir),
    filesMaxBytes: parseSizeBytes('filesMaxSize', raw.filesMaxSize ?? SIDECAR_DEFAULTS.filesMaxSize),
    filesOverLimit,
    handoverRetentionMs: parseDurationMs(
      'handoverRetention',
      raw.handoverRetention ?? SIDECAR_DEFAULTS.handoverRetention,
    ),
    userNamespace,
    idMapping,
  });
}

const ENV: Readonly<Record<string, keyof SidecarOptions>> = {
  NOMAD_CHAIN_NODE_NAME: 'nodeName',
  NOMAD_CHAIN_LISTEN_ADDRESS: 'listenAddress',
  NOMAD_CHAIN_LISTEN_PORT: 'listenPort',
  NOMAD_CHAIN_TRANSFER_PORT: 'transferPort',
  NOMAD_CHAIN_ADVERTISE_ADDRESS: 'advertiseAddress',
  NOMAD_CHAIN_TLS_CA: 'tlsCaFile',
  NOMAD_CHAIN_TLS_CERT: 'tlsCertFile',
  NOMAD_CHAIN_TLS_KEY: 'tlsKeyFile',
  NOMAD_CHAIN_STORE_DIR: 'storeDir',
  NOMAD_CHAIN_STORE_MAX_SIZE: 'storeMaxSize',
  NOMAD_CHAIN_DATA_DIR: 'dataDir',
  NOMAD_CHAIN_LOCAL_SOCKET: 'localSocket',
  NOMAD_CHAIN_LOG_LEVEL: 'logLevel',
  RUNC_BIN: 'runcBin',
  CRIU_BIN: 'criuBin',
  NOMAD_CHAIN_TASK_NETNS: 'taskNetworkNamespace',
  NOMAD_CHAIN_CGROUP_PARENT: 'cgroupParent',
  NOMAD_CHAIN_START_TIMEOUT: 'startTimeout',
  NOMAD_CHAIN_STOP_TIMEOUT: 'stopTimeout',
  NOMAD_CHAIN_DUMP_TIMEOUT: 'dumpTimeout',
  NOMAD_CHAIN_LAZY_CONNECT_TIMEOUT: 'lazyConnectTimeout',
  NOMAD_CHAIN_LAZY_TRANSFER_TIMEOUT: 'lazyTransferTimeout',
  NOMAD_CHAIN_COMMAND_TIMEOUT: 'commandTimeout',
  NOMAD_CHAIN_TRANSFER_IDLE_TIMEOUT: 'transferIdleTimeout',
  NOMAD_CHAIN_PAGE_SERVER_HOST: 'pageServerHost',
  NOMAD_CHAIN_LAZY_PAGES_NETNS: 'lazyPagesNetns',
  NOMAD_CHAIN_BACKGROUND_INTERVAL: 'backgroundCheckpointInterval',
  NOMAD_CHAIN_BACKGROUND_BUDDY: 'backgroundBuddy',
  NOMAD_CHAIN_FILES_MAX_SIZE: 'filesMaxSize',
  NOMAD_CHAIN_FILES_OVER_LIMIT: 'filesOverLimit',
  NOMAD_CHAIN_HANDOVER_RETENTION: 'handoverRetention',
  NOMAD_CHAIN_USER_NAMESPACE: 'userNamespace',
  NOMAD_CHAIN_USER_NAMESPACE_HOST_ID: 'userNamespaceHostId',
  NOMAD_CHAIN_USER_NAMESPACE_SIZE: 'userNamespaceSize',
};

/** Reads options from a JSON file (`--config FILE`) overlaid by environment variables. */
export function rawOptionsFrom(env: NodeJS.ProcessEnv, fileContents: string | undefined): Record<string, unknown> {
  let raw: Record<string, unknown> = {};
  if (fileContents !== undefined) {
    try {
      raw = JSON.parse(fileContents) as Record<string, unknown>;
    } catch (cause) {
      throw new ConfigError('--config', 'not valid JSON', { cause });
    }
  }
  for (const [name, field] of Object.entries(ENV)) {
    const value = env[name];
    if (value !== undefined && value !== '') raw[field] = value;
  }
  // The one telemetry option a launcher (local mode, a Nomad job's env) has to set per node.
  const forecaster = env.NOMAD_CHAIN_FORECASTER_ADDRESS;
  if (forecaster !== undefined && forecaster !== '') {
    const telemetry = raw.telemetry;
    if (telemetry !== undefined && (typeof telemetry !== 'object' || telemetry === null)) {
      throw new ConfigError('telemetry', 'expected an object');
    }
    raw.telemetry = { ...(telemetry ?? {}), forecasterAddress: forecaster };
  }
  return raw;
}
