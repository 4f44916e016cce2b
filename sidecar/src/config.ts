import { deepFreeze, rejectUnknownKeys, requireInt, requireString } from '../../common/config';
import { ConfigError } from '../../common/config-error';

/** What an operator may set (file or environment). Every field documents its default. */
export interface SidecarOptions {
  /** Name of the node this sidecar serves. @default os hostname */
  nodeName?: string;
  /** Address the peer-facing gRPC server binds. @default "0.0.0.0" */
  listenAddress?: string;
  /** Port of the peer-facing gRPC server; 0 lets the OS choose. @default 7450 */
  listenPort?: number;
  /** Where the sidecar keeps tasks, checkpoints and state. @default "/var/lib/nomad-chain" */
  dataDir?: string;
  /** Unix socket of the local API the plugin talks to. @default "<dataDir>/sidecar.sock" */
  localSocket?: string;
  /** pino level. @default "info" */
  logLevel?: string;
}

export interface SidecarConfig {
  readonly nodeName: string;
  readonly listenAddress: string;
  readonly listenPort: number;
  readonly dataDir: string;
  readonly localSocket: string;
  readonly logLevel: string;
}

const FIELDS = ['nodeName', 'listenAddress', 'listenPort', 'dataDir', 'localSocket', 'logLevel'] as const;
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

/** Parses and validates once; the result is frozen. Errors name the field. */
export function parseConfig(raw: Record<string, unknown>, hostname: string): SidecarConfig {
  rejectUnknownKeys('', raw, FIELDS);
  const dataDir = requireString('dataDir', raw.dataDir ?? '/var/lib/nomad-chain');
  const logLevel = requireString('logLevel', raw.logLevel ?? 'info');
  if (!LEVELS.includes(logLevel)) throw new ConfigError('logLevel', `expected one of ${LEVELS.join(', ')}`);
  return deepFreeze({
    nodeName: requireString('nodeName', raw.nodeName ?? hostname),
    listenAddress: requireString('listenAddress', raw.listenAddress ?? '0.0.0.0'),
    listenPort: requireInt('listenPort', raw.listenPort ?? 7450, 0, 65535),
    dataDir,
    localSocket: requireString('localSocket', raw.localSocket ?? `${dataDir}/sidecar.sock`),
    logLevel,
  });
}

const ENV: Readonly<Record<string, (typeof FIELDS)[number]>> = {
  NOMAD_CHAIN_NODE_NAME: 'nodeName',
  NOMAD_CHAIN_LISTEN_ADDRESS: 'listenAddress',
  NOMAD_CHAIN_LISTEN_PORT: 'listenPort',
  NOMAD_CHAIN_DATA_DIR: 'dataDir',
  NOMAD_CHAIN_LOCAL_SOCKET: 'localSocket',
  NOMAD_CHAIN_LOG_LEVEL: 'logLevel',
};

/** Reads options from a JSON file (`--config FILE`) overlaid by NOMAD_CHAIN_* variables. */
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
    if (value !== undefined) raw[field] = value;
  }
  return raw;
}
