import { tmpdir } from 'node:os';
import { isAbsolute } from 'node:path';
import { deepFreeze, parseDurationMs } from '../../common/config';
import type { Spec } from '../../proto/gen/nomad/plugins/shared/hclspec/hcl_spec';
import { decodeCtyObject } from './cty-msgpack';
import { HclConfigError, LaunchError } from './errors';
import { attr, object, quoted, withDefault } from './hclspec';

/** Nomad's plugin handshake (plugins/base/plugin.go): the host sets this variable to this value. */
export const MAGIC_COOKIE_KEY = 'NOMAD_PLUGIN_MAGIC_COOKIE';
export const MAGIC_COOKIE_VALUE = 'e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255';
/** The application protocol version Nomad speaks to its plugins. */
export const APP_PROTOCOL_VERSION = 2;

export const MIGRATION_MODES = ['auto', 'stop-and-copy', 'pre-copy', 'lazy'] as const;
export type MigrationModeName = (typeof MIGRATION_MODES)[number];

/** What the process learns from its environment at launch (go-plugin's variables and our log level). */
export interface LaunchConfig {
  readonly logLevel: string;
  /** Where the plugin's unix socket goes (go-plugin uses TMPDIR too). */
  readonly socketParentDir: string;
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

/**
 * Checks that Nomad launched us (the magic cookie, as go-plugin servers do) with a protocol version we speak,
 * and reads the plugin's own variables. Throws LaunchError with a message meant for a human at a terminal.
 */
export function parseLaunchEnv(env: NodeJS.ProcessEnv): LaunchConfig {
  if (env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    throw new LaunchError(
      'NC_PLUGIN_COOKIE_MISMATCH',
      'This binary is a plugin: the Nomad task driver "chain". It is not meant to be run directly; put it in ' +
        'the plugin_dir of a Nomad client, which launches it.',
    );
  }
  const offered = (env.PLUGIN_PROTOCOL_VERSIONS ?? String(APP_PROTOCOL_VERSION)).split(',').map((v) => v.trim());
  if (!offered.includes(String(APP_PROTOCOL_VERSION))) {
    throw new LaunchError(
      'NC_PLUGIN_PROTOCOL_UNSUPPORTED',
      `The host offers plugin protocol versions ${offered.join(',')}; this plugin speaks only ${APP_PROTOCOL_VERSION}.`,
    );
  }
  const logLevel = env.NOMAD_CHAIN_PLUGIN_LOG_LEVEL ?? 'info';
  return deepFreeze({
    logLevel: LOG_LEVELS.includes(logLevel) ? logLevel : 'info',
    socketParentDir: env.TMPDIR !== undefined && env.TMPDIR !== '' ? env.TMPDIR : tmpdir(),
  });
}

/** The agent's `plugin "chain" { config { … } }` block (HCL attribute names). */
export interface PluginOptions {
  /** Unix socket of the node's sidecar local API. @default "/var/lib/nomad-chain/sidecar.sock" */
  sidecar_socket?: string;
  /** Deadline of a short sidecar call (inspect, signal, start, …). @default "30s" */
  sidecar_timeout?: string;
  /** Nomad HTTP API used to read allocation lineage; "" turns chaining of stops off. @default "http://127.0.0.1:4646" */
  nomad_address?: string;
  /** ACL token for nomad_address, of the least policy jobs/chain-plugin.policy.hcl. @default "" */
  nomad_token?: string;
  /** PEM CA file that signs the certificate of an https nomad_address (Nomad's own tls ca_file); "" = system roots. @default "" */
  nomad_ca_file?: string;
  /** How long a replacement's start waits for its predecessor's checkpoint. @default "30s" */
  checkpoint_wait?: string;
  /** How a migrating task is moved: auto, stop-and-copy, pre-copy or lazy (stop-and-copy in Nomad mode, see chaining.ts). @default "auto" */
  migration_mode?: MigrationModeName;
  /** How often the sidecar's health is re-read for the fingerprint. @default "15s" */
  fingerprint_period?: string;
  /** The Consul agent Nomad registers this client's services with (Nomad's consul.address); "" = none. @default "http://127.0.0.1:8500" */
  consul_address?: string;
  /** ACL token for consul_address (service:write on the services of chained jobs). @default "" */
  consul_token?: string;
}

export interface PluginConfig {
  readonly sidecarSocket: string;
  readonly sidecarTimeoutMs: number;
  readonly nomadAddress: string;
  readonly nomadToken: string;
  /** "" = the system's roots. */
  readonly nomadCaFile: string;
  readonly checkpointWaitMs: number;
  readonly migrationMode: MigrationModeName;
  readonly fingerprintPeriodMs: number;
  /** "" = no Consul: a restored task is listed by Nomad's registration alone. */
  readonly consulAddress: string;
  readonly consulToken: string;
}

export const PLUGIN_DEFAULTS = deepFreeze({
  sidecar_socket: '/var/lib/nomad-chain/sidecar.sock',
  sidecar_timeout: '30s',
  nomad_address: 'http://127.0.0.1:4646',
  nomad_token: '',
  nomad_ca_file: '',
  checkpoint_wait: '30s',
  migration_mode: 'auto',
  fingerprint_period: '15s',
  consul_address: 'http://127.0.0.1:8500',
  consul_token: '',
} satisfies Required<PluginOptions>);

/** The ConfigSchema answer: every attribute optional, defaults filled in by Nomad's decoder. */
export function pluginConfigSpec(): Spec {
  const attributes: Record<string, Spec> = {};
  for (const [name, value] of Object.entries(PLUGIN_DEFAULTS))
    attributes[name] = withDefault(name, 'string', quoted(value));
  return object(attributes);
}

const MAX_CHECKPOINT_WAIT_MS = 10 * 60_000;

/** Decodes SetConfig's msgpack_config once, validates across fields, and freezes the result. */
export function parsePluginConfig(msgpack: Uint8Array): PluginConfig {
  const fail = (attribute: string, problem: string): HclConfigError =>
    new HclConfigError('NC_PLUGIN_CONFIG_INVALID', attribute, problem);
  const raw = decodeCtyObject(msgpack, fail);
  rejectUnknown(raw, Object.keys(PLUGIN_DEFAULTS), fail);
  const str = (name: keyof typeof PLUGIN_DEFAULTS): string => {
    const value = raw[name] ?? PLUGIN_DEFAULTS[name];
    if (typeof value !== 'string') throw fail(name, `expected a string, got ${describe(value)}`);
    return value;
  };
  const sidecarSocket = str('sidecar_socket');
  if (!isAbsolute(sidecarSocket))
    throw fail('sidecar_socket', `expected an absolute path, got ${quoted(sidecarSocket)}`);
  const sidecarTimeoutMs = duration(str('sidecar_timeout'), 'sidecar_timeout', fail);
  if (sidecarTimeoutMs < 1000) throw fail('sidecar_timeout', 'must be at least "1s"');
  const nomadAddress = str('nomad_address').replace(/\/+$/, '');
  if (nomadAddress !== '' && !/^https?:\/\/[^/]+$/.test(nomadAddress)) {
    throw fail(
      'nomad_address',
      `expected "" or an http(s) URL such as "http://127.0.0.1:4646", got ${quoted(nomadAddress)}`,
    );
  }
  const nomadToken = str('nomad_token');
  if (nomadToken !== '' && nomadAddress === '') throw fail('nomad_token', 'is set but nomad_address is empty');
  const nomadCaFile = str('nomad_ca_file');
  if (nomadCaFile !== '' && !isAbsolute(nomadCaFile)) {
    throw fail('nomad_ca_file', `expected an absolute path, got ${quoted(nomadCaFile)}`);
  }
  if (nomadCaFile !== '' && !nomadAddress.startsWith('https://')) {
    throw fail('nomad_ca_file', 'is set but nomad_address is not an https:// URL');
  }
  const checkpointWaitMs = duration(str('checkpoint_wait'), 'checkpoint_wait', fail);
  if (checkpointWaitMs > MAX_CHECKPOINT_WAIT_MS) throw fail('checkpoint_wait', 'must be at most "10m"');
  const fingerprintPeriodMs = duration(str('fingerprint_period'), 'fingerprint_period', fail);
  if (fingerprintPeriodMs < 1000) throw fail('fingerprint_period', 'must be at least "1s"');
  const consulAddress = str('consul_address').replace(/\/+$/, '');
  if (consulAddress !== '' && !/^https?:\/\/[^/]+$/.test(consulAddress)) {
    throw fail(
      'consul_address',
      `expected "" or an http(s) URL such as "http://127.0.0.1:8500", got ${quoted(consulAddress)}`,
    );
  }
  const consulToken = str('consul_token');
  if (consulToken !== '' && consulAddress === '') throw fail('consul_token', 'is set but consul_address is empty');
  return deepFreeze({
    sidecarSocket,
    sidecarTimeoutMs,
    nomadAddress,
    nomadToken,
    nomadCaFile,
    checkpointWaitMs,
    migrationMode: migrationMode(str('migration_mode'), fail),
    fingerprintPeriodMs,
    consulAddress,
    consulToken,
  });
}

/** A job's task `config { … }` for `driver = "chain"` (HCL attribute names). */
export interface TaskOptions {
  /** Program to run inside the container (resolved in its root). Required. */
  command: string;
  /** Its arguments. @default [] */
  args?: string[];
  /** Working directory inside the container. @default "/" */
  cwd?: string;
  /** Root filesystem directory on the host; "" = the sidecar's read-only root built from the host. @default "" */
  rootfs?: string;
  /** Move the task with its state when its allocation migrates; false = always stop it like any driver. @default true */
  chain?: boolean;
  /** Overrides the plugin's checkpoint_wait for this task. @default the plugin's */
  checkpoint_wait?: string;
  /** Overrides the plugin's migration_mode for this task. @default the plugin's */
  migration_mode?: MigrationModeName;
}

export interface TaskDriverConfig {
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  readonly rootfs: string;
  readonly chain: boolean;
  readonly checkpointWaitMs: number | undefined;
  readonly migrationMode: MigrationModeName | undefined;
}

const TASK_ATTRIBUTES = ['command', 'args', 'cwd', 'rootfs', 'chain', 'checkpoint_wait', 'migration_mode'];

/** The TaskConfigSchema answer. */
export function taskConfigSpec(): Spec {
  return object({
    command: attr('command', 'string', true),
    args: withDefault('args', 'list(string)', '[]'),
    cwd: withDefault('cwd', 'string', quoted('/')),
    rootfs: withDefault('rootfs', 'string', quoted('')),
    chain: withDefault('chain', 'bool', 'true'),
    checkpoint_wait: attr('checkpoint_wait', 'string'),
    migration_mode: attr('migration_mode', 'string'),
  });
}

/** Decodes a task's msgpack_driver_config once, with cross-field checks; every error names the attribute. */
export function parseTaskConfig(msgpack: Uint8Array): TaskDriverConfig {
  const fail = (attribute: string, problem: string): HclConfigError =>
    new HclConfigError('NC_PLUGIN_TASK_CONFIG_INVALID', attribute, problem);
  const raw = decodeCtyObject(msgpack, fail);
  rejectUnknown(raw, TASK_ATTRIBUTES, fail);
  const optionalString = (name: string): string | undefined => {
    const value = raw[name];
    if (value === null || value === undefined) return undefined;
    if (typeof value !== 'string') throw fail(name, `expected a string, got ${describe(value)}`);
    return value;
  };
  const command = optionalString('command');
  if (command === undefined || command.trim() === '') throw fail('command', 'is required and must not be empty');
  const args = raw.args ?? [];
  if (!Array.isArray(args)) throw fail('args', `expected a list of strings, got ${describe(args)}`);
  args.forEach((arg, i) => {
    if (typeof arg !== 'string') throw fail(`args[${i}]`, `expected a string, got ${describe(arg)}`);
  });
  const cwd = optionalString('cwd') ?? '/';
  if (!cwd.startsWith('/')) throw fail('cwd', `expected an absolute path inside the container, got ${quoted(cwd)}`);
  const rootfs = optionalString('rootfs') ?? '';
  if (rootfs !== '' && !isAbsolute(rootfs))
    throw fail('rootfs', `expected an absolute host path, got ${quoted(rootfs)}`);
  const chainValue = raw.chain ?? true;
  if (typeof chainValue !== 'boolean') throw fail('chain', `expected true or false, got ${describe(chainValue)}`);
  const wait = optionalString('checkpoint_wait');
  const mode = optionalString('migration_mode');
  if (!chainValue && wait !== undefined) throw fail('checkpoint_wait', 'has no effect when chain = false');
  if (!chainValue && mode !== undefined) throw fail('migration_mode', 'has no effect when chain = false');
  const checkpointWaitMs = wait === undefined ? undefined : duration(wait, 'checkpoint_wait', fail);
  if (checkpointWaitMs !== undefined && checkpointWaitMs > MAX_CHECKPOINT_WAIT_MS) {
    throw fail('checkpoint_wait', 'must be at most "10m"');
  }
  return deepFreeze({
    command,
    args: args as string[],
    cwd,
    rootfs,
    chain: chainValue,
    checkpointWaitMs,
    migrationMode: mode === undefined ? undefined : migrationMode(mode, fail),
  });
}

type Fail = (attribute: string, problem: string) => Error;

function rejectUnknown(raw: Record<string, unknown>, known: readonly string[], fail: Fail): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) throw fail(key, `unknown attribute; expected one of ${known.join(', ')}`);
  }
}

function duration(value: string, attribute: string, fail: Fail): number {
  try {
    return parseDurationMs(attribute, value);
  } catch {
    throw fail(attribute, `expected a duration such as "30s" or "1m30s", got ${quoted(value)}`);
  }
}

function migrationMode(value: string, fail: Fail): MigrationModeName {
  const mode = MIGRATION_MODES.find((m) => m === value);
  if (mode === undefined)
    throw fail('migration_mode', `expected one of ${MIGRATION_MODES.join(', ')}, got ${quoted(value)}`);
  return mode;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number' || typeof value === 'bigint') return `the number ${value.toString()}`;
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}
