import {
  deepFreeze,
  parseDurationMs,
  rejectUnknownKeys,
  requireBool,
  requireInt,
  requireNumber,
  requireString,
  parseSizeBytes,
} from '../../common/config';
import { ConfigError } from '../../common/config-error';
import type { ClockSpan } from '../../common/scaled-clock';
import { resolve } from 'node:path';

/** The feature specification shared with the trainer (forecaster/training/README.md). */
export const DEFAULT_FEATURE_SPEC = resolve(__dirname, '../training/feature-spec.json');

/**
 * Thresholds and pacing for one node pool or class; every field may be overridden per pool and per class. The
 * three thresholds come from the serving model's card (its `policy`) unless the operator sets any of them here:
 * then the config's thresholds apply to that pool or class (the ones not set take their defaults) and the
 * card's do not.
 */
export interface PolicyRuleOptions {
  /** Pre-warn level: risk at or above which a node is fenced, capacity reserved and checkpoints pre-staged. @default 0.7 */
  enterThreshold?: number;
  /** Risk below which a fenced node is released (hysteresis: must be below enterThreshold). @default 0.5 */
  exitThreshold?: number;
  /** Drain level: risk at or above which a fenced node is drained (at or above enterThreshold). @default enterThreshold */
  drainThreshold?: number;
  /** After an undo or a finished drain, no new fence on that node for this long. @default "10m" */
  cooldown?: string | number;
  /** How long a node stays fenced (reserving, pre-staging) before a drain at the drain level starts. @default "2m" */
  drainAfter?: string | number;
  /** Deadline given to the scheduler's drain, after which remaining allocations are stopped. @default "10m" */
  drainDeadline?: string | number;
}

export interface PolicyRule {
  readonly enterThreshold: number;
  readonly exitThreshold: number;
  readonly drainThreshold: number;
  /**
   * The config path whose threshold keys set this rule's thresholds ("policy", "policy.pools.spot"), or "" when
   * the operator set none: then the serving model's card decides, and these defaults only without one.
   */
  readonly thresholdsFrom: string;
  readonly cooldownMs: number;
  readonly drainAfterMs: number;
  readonly drainDeadlineMs: number;
}

export interface PolicyOptions extends PolicyRuleOptions {
  /** Overrides by node pool name. @default {} */
  pools?: Record<string, PolicyRuleOptions>;
  /** Overrides by node class (wins over the pool). @default {} */
  classes?: Record<string, PolicyRuleOptions>;
  /** Most nodes of one pool fenced or draining at once. @default 2 */
  maxConcurrentDrains?: number;
  /** Fewest schedulable (eligible, not at risk) nodes a pool keeps, so chained tasks have somewhere to go. @default 1 */
  minHealthyNodes?: number;
}

export interface PolicyConfig {
  readonly defaults: PolicyRule;
  readonly pools: Readonly<Record<string, PolicyRule>>;
  readonly classes: Readonly<Record<string, PolicyRule>>;
  readonly maxConcurrentDrains: number;
  readonly minHealthyNodes: number;
}

/** What an operator may set (JSON file, `--config FILE`, overlaid by NOMAD_CHAIN_FORECASTER_* variables). */
export interface ForecasterOptions {
  /** Address of the telemetry gRPC server. @default "0.0.0.0" */
  telemetryAddress?: string;
  /** Port of the telemetry gRPC server; 0 lets the OS choose. @default 7460 */
  telemetryPort?: number;
  /** Address of the HTTP server (/metrics, /v1/risk). @default "0.0.0.0" */
  httpAddress?: string;
  /** Port of the HTTP server; 0 lets the OS choose. @default 7461 */
  httpPort?: number;
  /** Time between scoring ticks. @default "10s" */
  tick?: string | number;
  /**
   * Folder holding `model.onnx` and `model-card.json` of the serving model. Required unless `modelRegistry` is
   * set; with a registry it is the model served until the registry has a current version.
   */
  modelDir?: string;
  /**
   * Model registry (forecaster/training/README.md): the forecaster serves its current version and, every
   * modelPoll and after its own retrains, loads whatever a promote or rollback made current. @default "" (none)
   */
  modelRegistry?: string;
  /** Where the forecaster records what it observes (nc-trace/1, for retraining). @default "" (record nothing) */
  dataDir?: string;
  /** Most bytes the recorded trace keeps on disk (the live file rotates into one older file). @default "64MiB" */
  traceMaxBytes?: string | number;
  /**
   * Retrain on the recorded trace this often (0 = never); needs modelRegistry and dataDir. @default "1h" in
   * local mode (controllerAddress) when both are set, else 0: in Nomad mode the periodic job retrains.
   */
  retrainInterval?: string | number;
  /** Shortest recorded span a retrain runs on (above the retrain's 6 h validation window). @default "12h" */
  retrainMinSpan?: string | number;
  /** Fewest recorded pre-emptions a retrain runs on. @default 10 */
  retrainMinPreemptions?: number;
  /** The shared feature specification. @default forecaster/training/feature-spec.json */
  featureSpec?: string;
  /** How often modelDir is checked for a new model (0 = never). @default "30s" */
  modelPoll?: string | number;
  /** Most nodes tracked at once (least recently reporting are forgotten first). @default 20000 */
  maxNodes?: number;
  /** Samples kept per node: enough to cover the longest metric window at the agents' interval. @default 96 */
  samplesPerNode?: number;
  /** History events kept per node (joins, pre-emptions, notices, drains). @default 256 */
  eventsPerNode?: number;
  /** A node silent this long is forgotten. @default "15m" */
  staleAfter?: string | number;
  /** Follow Nomad's event stream and act through Nomad's API at this address ("" = local mode). @default "" */
  nomadAddress?: string;
  /** Nomad ACL token. @default "" */
  nomadToken?: string;
  /** PEM CA file that signs Nomad's HTTPS certificate (as NOMAD_CACERT for the CLI). @default "" (Node's roots) */
  nomadCaFile?: string;
  /**
   * Nomad mode, pre-staging: the PEM files (scripts/gen-certs.sh) of the certificate the forecaster shows the
   * sidecars' transfer ports (mutual TLS, signed by their CA). All three or none; none = no pre-staging.
   * @default ""
   */
  sidecarTlsCaFile?: string;
  sidecarTlsCertFile?: string;
  sidecarTlsKeyFile?: string;
  /** Local mode: follow and act through the local controller's HTTP API at this address. @default "" */
  controllerAddress?: string;
  /** Act on decisions (false = observe only: decisions are recorded, never carried out). @default true */
  act?: boolean;
  policy?: PolicyOptions;
  /** pino level. @default "info" */
  logLevel?: string;
  /**
   * Trace replay: the forecaster's clock runs this many times faster than real time (ticks, windows, policy
   * timers all in trace time). 1 = the system clock. @default 1
   */
  timeScale?: number;
  /** Trace replay: the clock's reading (Unix ms) at the real instant `timeOriginReal`. @default 0 */
  timeOrigin?: number;
  /** Trace replay: the real Unix ms at which the clock reads `timeOrigin`. @default 0 */
  timeOriginReal?: number;
  /** Trace replay: stretches of trace time played at their own scale (sorted, disjoint). @default [] */
  timeSpans?: { fromMs: number; toMs: number; scale: number }[];
}

export interface ForecasterConfig {
  readonly telemetryAddress: string;
  readonly telemetryPort: number;
  readonly httpAddress: string;
  readonly httpPort: number;
  readonly tickMs: number;
  /** "" when the registry alone names the model. */
  readonly modelDir: string;
  readonly modelRegistry: string;
  readonly dataDir: string;
  readonly traceMaxBytes: number;
  readonly retrainIntervalMs: number;
  readonly retrainMinSpanMs: number;
  readonly retrainMinPreemptions: number;
  readonly featureSpec: string;
  readonly modelPollMs: number;
  readonly maxNodes: number;
  readonly samplesPerNode: number;
  readonly eventsPerNode: number;
  readonly staleAfterMs: number;
  readonly nomadAddress: string;
  readonly nomadToken: string;
  readonly nomadCaFile: string;
  /** All three set, or all "". */
  readonly sidecarTls: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  readonly controllerAddress: string;
  readonly act: boolean;
  readonly policy: PolicyConfig;
  readonly logLevel: string;
  readonly timeScale: number;
  readonly timeOrigin: number;
  readonly timeOriginReal: number;
  readonly timeSpans: readonly ClockSpan[];
}

/**
 * Every option with its default, the one list of what an operator may set; `undefined` = none, or derived from
 * other options (see ForecasterOptions).
 */
export const FORECASTER_DEFAULTS = deepFreeze({
  telemetryAddress: '0.0.0.0',
  telemetryPort: 7460,
  httpAddress: '0.0.0.0',
  httpPort: 7461,
  tick: '10s',
  modelDir: undefined,
  modelRegistry: undefined,
  dataDir: undefined,
  traceMaxBytes: '64MiB',
  retrainInterval: undefined,
  retrainMinSpan: '12h',
  retrainMinPreemptions: 10,
  featureSpec: DEFAULT_FEATURE_SPEC,
  modelPoll: '30s',
  maxNodes: 20_000,
  samplesPerNode: 96,
  eventsPerNode: 256,
  staleAfter: '15m',
  nomadAddress: undefined,
  nomadToken: undefined,
  nomadCaFile: undefined,
  sidecarTlsCaFile: undefined,
  sidecarTlsCertFile: undefined,
  sidecarTlsKeyFile: undefined,
  controllerAddress: undefined,
  act: true,
  policy: undefined,
  logLevel: 'info',
  timeScale: 1,
  timeOrigin: 0,
  timeOriginReal: 0,
  timeSpans: undefined,
} satisfies Record<keyof ForecasterOptions, unknown>);
const FIELDS = Object.keys(FORECASTER_DEFAULTS) as (keyof ForecasterOptions)[];
const THRESHOLD_FIELDS = ['enterThreshold', 'exitThreshold', 'drainThreshold'] as const;
const RULE_FIELDS = [...THRESHOLD_FIELDS, 'cooldown', 'drainAfter', 'drainDeadline'] as const;
const POLICY_FIELDS = [...RULE_FIELDS, 'pools', 'classes', 'maxConcurrentDrains', 'minHealthyNodes'] as const;
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

const DEFAULT_RULE: PolicyRule = {
  enterThreshold: 0.7,
  exitThreshold: 0.5,
  drainThreshold: 0.7,
  thresholdsFrom: '',
  cooldownMs: 600_000,
  drainAfterMs: 120_000,
  drainDeadlineMs: 600_000,
};

function asObject(field: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(field, 'expected an object');
  }
  return value as Record<string, unknown>;
}

/** A parsed rule and whether its drainThreshold was set (inherited by overrides) or follows enterThreshold. */
interface ParsedRule {
  readonly rule: PolicyRule;
  readonly drainSet: boolean;
}

function parseRule(path: string, raw: Record<string, unknown>, base: ParsedRule): ParsedRule {
  const at = (name: string): string => (path === '' ? name : `${path}.${name}`);
  const threshold = (name: (typeof THRESHOLD_FIELDS)[number]): number | undefined =>
    raw[name] === undefined ? undefined : requireNumber(at(name), raw[name], 0, 1);
  const enterThreshold = threshold('enterThreshold') ?? base.rule.enterThreshold;
  const drainSet = raw.drainThreshold !== undefined || base.drainSet;
  const rule: PolicyRule = {
    enterThreshold,
    exitThreshold: threshold('exitThreshold') ?? base.rule.exitThreshold,
    // Unset anywhere, the drain level is the pre-warn level: one level, drained once the fence has held.
    drainThreshold: threshold('drainThreshold') ?? (base.drainSet ? base.rule.drainThreshold : enterThreshold),
    thresholdsFrom: THRESHOLD_FIELDS.some((f) => raw[f] !== undefined) ? path : base.rule.thresholdsFrom,
    cooldownMs: raw.cooldown === undefined ? base.rule.cooldownMs : parseDurationMs(at('cooldown'), raw.cooldown),
    drainAfterMs:
      raw.drainAfter === undefined ? base.rule.drainAfterMs : parseDurationMs(at('drainAfter'), raw.drainAfter),
    drainDeadlineMs:
      raw.drainDeadline === undefined
        ? base.rule.drainDeadlineMs
        : parseDurationMs(at('drainDeadline'), raw.drainDeadline),
  };
  if (rule.exitThreshold >= rule.enterThreshold) {
    throw new ConfigError(at('exitThreshold'), 'must be below enterThreshold (hysteresis)');
  }
  if (rule.drainThreshold < rule.enterThreshold) {
    throw new ConfigError(at('drainThreshold'), 'must be at or above enterThreshold (the pre-warn level)');
  }
  return { rule, drainSet };
}

function parseOverrides(path: string, raw: unknown, base: ParsedRule): Record<string, PolicyRule> {
  const out: Record<string, PolicyRule> = {};
  for (const [name, value] of Object.entries(asObject(path, raw))) {
    const ruleRaw = asObject(`${path}.${name}`, value);
    rejectUnknownKeys(`${path}.${name}`, ruleRaw, RULE_FIELDS);
    out[name] = parseRule(`${path}.${name}`, ruleRaw, base).rule;
  }
  return out;
}

function parsePolicy(raw: Record<string, unknown>): PolicyConfig {
  rejectUnknownKeys('policy', raw, POLICY_FIELDS);
  const defaults = parseRule('policy', raw, { rule: DEFAULT_RULE, drainSet: false });
  return {
    defaults: defaults.rule,
    pools: parseOverrides('policy.pools', raw.pools, defaults),
    classes: parseOverrides('policy.classes', raw.classes, defaults),
    maxConcurrentDrains: requireInt('policy.maxConcurrentDrains', raw.maxConcurrentDrains ?? 2, 1, 100_000),
    minHealthyNodes: requireInt('policy.minHealthyNodes', raw.minHealthyNodes ?? 1, 0, 100_000),
  };
}

type ModelSource = Pick<
  ForecasterConfig,
  | 'modelDir'
  | 'modelRegistry'
  | 'dataDir'
  | 'traceMaxBytes'
  | 'retrainIntervalMs'
  | 'retrainMinSpanMs'
  | 'retrainMinPreemptions'
>;

const optionalString = (field: string, value: unknown): string =>
  value === undefined || value === '' ? '' : requireString(field, value);

function parseSidecarTls(raw: Record<string, unknown>): ForecasterConfig['sidecarTls'] {
  const tls = {
    caFile: optionalString('sidecarTlsCaFile', raw.sidecarTlsCaFile),
    certFile: optionalString('sidecarTlsCertFile', raw.sidecarTlsCertFile),
    keyFile: optionalString('sidecarTlsKeyFile', raw.sidecarTlsKeyFile),
  };
  const set = Object.values(tls).filter((f) => f !== '').length;
  if (set !== 0 && set !== 3) {
    throw new ConfigError(
      'sidecarTlsCaFile',
      'set sidecarTlsCaFile, sidecarTlsCertFile and sidecarTlsKeyFile together',
    );
  }
  return Object.freeze(tls);
}

/** Where the serving model comes from, what is recorded, and the local-mode retrain timer. */
function parseModelSource(raw: Record<string, unknown>, controllerAddress: string): ModelSource {
  const modelDir = optionalString('modelDir', raw.modelDir);
  const modelRegistry = optionalString('modelRegistry', raw.modelRegistry);
  if (modelDir === '' && modelRegistry === '') {
    throw new ConfigError('modelDir', 'expected a non-empty string (or set modelRegistry)');
  }
  const dataDir = optionalString('dataDir', raw.dataDir);
  const localDefault = controllerAddress !== '' && modelRegistry !== '' && dataDir !== '' ? '1h' : 0;
  const retrainIntervalMs = parseDurationMs('retrainInterval', raw.retrainInterval ?? localDefault);
  if (retrainIntervalMs > 0 && modelRegistry === '') {
    throw new ConfigError('retrainInterval', 'needs modelRegistry (where a retrained model is promoted)');
  }
  if (retrainIntervalMs > 0 && dataDir === '') {
    throw new ConfigError('retrainInterval', 'needs dataDir (the recorded trace it retrains on)');
  }
  if (retrainIntervalMs > 0 && retrainIntervalMs < 60_000)
    throw new ConfigError('retrainInterval', 'must be at least 1m');
  const traceMaxBytes = parseSizeBytes('traceMaxBytes', raw.traceMaxBytes ?? FORECASTER_DEFAULTS.traceMaxBytes);
  if (traceMaxBytes < 1024 * 1024) throw new ConfigError('traceMaxBytes', 'must be at least 1MiB');
  return {
    modelDir,
    modelRegistry,
    dataDir,
    traceMaxBytes,
    retrainIntervalMs,
    retrainMinSpanMs: parseDurationMs('retrainMinSpan', raw.retrainMinSpan ?? FORECASTER_DEFAULTS.retrainMinSpan),
    retrainMinPreemptions: requireInt(
      'retrainMinPreemptions',
      raw.retrainMinPreemptions ?? FORECASTER_DEFAULTS.retrainMinPreemptions,
      1,
      1_000_000_000,
    ),
  };
}

/** Parses and validates once; the result is frozen. Errors name the field. */
export function parseConfig(raw: Record<string, unknown>): ForecasterConfig {
  rejectUnknownKeys('', raw, FIELDS);
  const logLevel = requireString('logLevel', raw.logLevel ?? FORECASTER_DEFAULTS.logLevel);
  if (!LEVELS.includes(logLevel)) throw new ConfigError('logLevel', `expected one of ${LEVELS.join(', ')}`);
  const nomadAddress =
    raw.nomadAddress === undefined || raw.nomadAddress === '' ? '' : requireString('nomadAddress', raw.nomadAddress);
  if (nomadAddress !== '' && !/^https?:\/\//.test(nomadAddress)) {
    throw new ConfigError('nomadAddress', 'expected an http:// or https:// URL');
  }
  const controllerAddress =
    raw.controllerAddress === undefined || raw.controllerAddress === ''
      ? ''
      : requireString('controllerAddress', raw.controllerAddress);
  if (controllerAddress !== '' && !/^https?:\/\//.test(controllerAddress)) {
    throw new ConfigError('controllerAddress', 'expected an http:// URL');
  }
  if (controllerAddress !== '' && nomadAddress !== '') {
    throw new ConfigError('controllerAddress', 'set either controllerAddress (local mode) or nomadAddress, not both');
  }
  const tickMs = parseDurationMs('tick', raw.tick ?? FORECASTER_DEFAULTS.tick);
  if (tickMs < 10) throw new ConfigError('tick', 'must be at least 10ms');
  const timeScale = requireNumber('timeScale', raw.timeScale ?? FORECASTER_DEFAULTS.timeScale, 0, 1_000_000);
  if (timeScale <= 0) throw new ConfigError('timeScale', 'must be above 0');
  if (timeScale !== 1 && (raw.timeOrigin === undefined || raw.timeOriginReal === undefined)) {
    throw new ConfigError('timeOrigin', 'a timeScale other than 1 needs timeOrigin and timeOriginReal');
  }
  return deepFreeze({
    telemetryAddress: requireString('telemetryAddress', raw.telemetryAddress ?? FORECASTER_DEFAULTS.telemetryAddress),
    telemetryPort: requireInt('telemetryPort', raw.telemetryPort ?? FORECASTER_DEFAULTS.telemetryPort, 0, 65535),
    httpAddress: requireString('httpAddress', raw.httpAddress ?? FORECASTER_DEFAULTS.httpAddress),
    httpPort: requireInt('httpPort', raw.httpPort ?? FORECASTER_DEFAULTS.httpPort, 0, 65535),
    tickMs,
    ...parseModelSource(raw, controllerAddress),
    featureSpec: requireString('featureSpec', raw.featureSpec ?? FORECASTER_DEFAULTS.featureSpec),
    modelPollMs: parseDurationMs('modelPoll', raw.modelPoll ?? FORECASTER_DEFAULTS.modelPoll),
    maxNodes: requireInt('maxNodes', raw.maxNodes ?? FORECASTER_DEFAULTS.maxNodes, 1, 10_000_000),
    samplesPerNode: requireInt('samplesPerNode', raw.samplesPerNode ?? FORECASTER_DEFAULTS.samplesPerNode, 2, 100_000),
    eventsPerNode: requireInt('eventsPerNode', raw.eventsPerNode ?? FORECASTER_DEFAULTS.eventsPerNode, 1, 100_000),
    staleAfterMs: parseDurationMs('staleAfter', raw.staleAfter ?? FORECASTER_DEFAULTS.staleAfter),
    nomadAddress,
    controllerAddress,
    nomadToken:
      raw.nomadToken === undefined || raw.nomadToken === '' ? '' : requireString('nomadToken', raw.nomadToken),
    nomadCaFile: optionalString('nomadCaFile', raw.nomadCaFile),
    sidecarTls: parseSidecarTls(raw),
    act: requireBool('act', raw.act ?? FORECASTER_DEFAULTS.act),
    policy: parsePolicy(asObject('policy', raw.policy)),
    logLevel,
    timeScale,
    timeOrigin: requireInt('timeOrigin', raw.timeOrigin ?? FORECASTER_DEFAULTS.timeOrigin, 0, Number.MAX_SAFE_INTEGER),
    timeOriginReal: requireInt(
      'timeOriginReal',
      raw.timeOriginReal ?? FORECASTER_DEFAULTS.timeOriginReal,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
    timeSpans: parseTimeSpans(raw.timeSpans, timeScale),
  });
}

function parseTimeSpans(raw: unknown, timeScale: number): ClockSpan[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new ConfigError('timeSpans', 'expected an array of {fromMs, toMs, scale}');
  if (raw.length > 0 && timeScale === 1) throw new ConfigError('timeSpans', 'spans need a timeScale other than 1');
  let end = -Infinity;
  return raw.map((item: unknown, i) => {
    const at = `timeSpans[${i}]`;
    const span = asObject(at, item);
    const fromMs = requireInt(`${at}.fromMs`, span.fromMs, 0, Number.MAX_SAFE_INTEGER);
    const toMs = requireInt(`${at}.toMs`, span.toMs, 0, Number.MAX_SAFE_INTEGER);
    const scale = requireNumber(`${at}.scale`, span.scale, 0, 1_000_000);
    if (scale <= 0) throw new ConfigError(`${at}.scale`, 'must be above 0');
    if (toMs <= fromMs) throw new ConfigError(`${at}.toMs`, 'must be after fromMs');
    if (fromMs < end) throw new ConfigError(`${at}.fromMs`, 'spans must be sorted and disjoint');
    end = toMs;
    return { fromMs, toMs, scale };
  });
}

const ENV: Readonly<Record<string, (typeof FIELDS)[number]>> = {
  NOMAD_CHAIN_FORECASTER_TELEMETRY_PORT: 'telemetryPort',
  NOMAD_CHAIN_FORECASTER_HTTP_PORT: 'httpPort',
  NOMAD_CHAIN_FORECASTER_MODEL_DIR: 'modelDir',
  NOMAD_CHAIN_FORECASTER_MODEL_REGISTRY: 'modelRegistry',
  NOMAD_CHAIN_FORECASTER_DATA_DIR: 'dataDir',
  NOMAD_CHAIN_FORECASTER_TICK: 'tick',
  NOMAD_CHAIN_FORECASTER_LOG_LEVEL: 'logLevel',
  NOMAD_ADDR: 'nomadAddress',
  NOMAD_TOKEN: 'nomadToken',
  NOMAD_CACERT: 'nomadCaFile',
  NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_CA: 'sidecarTlsCaFile',
  NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_CERT: 'sidecarTlsCertFile',
  NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_KEY: 'sidecarTlsKeyFile',
  NOMAD_CHAIN_CONTROLLER_ADDR: 'controllerAddress',
};

/** Reads options from a JSON file (`--config FILE`) overlaid by environment variables. */
export function rawOptionsFrom(env: NodeJS.ProcessEnv, fileContents: string | undefined): Record<string, unknown> {
  let raw: Record<string, unknown> = {};
  if (fileContents !== undefined) {
    try {
      raw = asObject('--config', JSON.parse(fileContents));
    } catch (cause) {
      if (cause instanceof ConfigError) throw cause;
      throw new ConfigError('--config', 'not valid JSON', { cause });
    }
  }
  for (const [name, field] of Object.entries(ENV)) {
    const value = env[name];
    if (value !== undefined) raw[field] = value;
  }
  return raw;
}

/** The rule that applies to a node: its class's override, else its pool's, else the defaults. */
export function ruleFor(policy: PolicyConfig, pool: string, nodeClass: string): PolicyRule {
  return policy.classes[nodeClass] ?? policy.pools[pool] ?? policy.defaults;
}
