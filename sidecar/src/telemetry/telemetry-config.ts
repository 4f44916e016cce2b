import {
  deepFreeze,
  parseDurationMs,
  rejectUnknownKeys,
  requireBool,
  requireInt,
  requireString,
} from '../../../common/config';
import { ConfigError } from '../../../common/config-error';

/** The sidecar's `telemetry` options (a block of the sidecar's config file). Every field documents its default. */
export interface TelemetryOptions {
  /** Stream telemetry at all. @default true when forecasterAddress is set */
  enabled?: boolean;
  /** host:port of the forecaster's telemetry server. Required when enabled. */
  forecasterAddress?: string;
  /** Sampling interval. @default "15s" */
  interval?: string | number;
  /** Samples held while the forecaster is unreachable (oldest dropped). @default 5760 (24 h at 15 s) */
  bufferSamples?: number;
  /** Samples per batch on the wire. @default 256 */
  maxBatch?: number;
  /** First reconnect delay, doubled per failure. @default "500ms" */
  reconnectMin?: string | number;
  /** @default "30s" */
  reconnectMax?: string | number;
  /** Scheduler node pool reported with the samples. @default "default" */
  nodePool?: string;
  /** Scheduler node class. @default "" */
  nodeClass?: string;
  /** Where /proc is (tests point it elsewhere). @default "/proc" */
  procRoot?: string;
  /** JSON-lines file keeping this node's pre-emption and drain history. @default "<dataDir>/telemetry-history.jsonl" */
  historyFile?: string;
  /** Interruption-notice sources to ask; each may name its endpoint. @default none */
  sources?: {
    aws?: { endpoint?: string; tokenTtlS?: number };
    gcp?: { endpoint?: string; watchTimeoutS?: number };
    azure?: { endpoint?: string; vmName?: string };
  };
}

export interface TelemetryConfig {
  readonly enabled: boolean;
  readonly forecasterAddress: string;
  readonly intervalMs: number;
  readonly bufferSamples: number;
  readonly maxBatch: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly nodePool: string;
  readonly nodeClass: string;
  readonly procRoot: string;
  readonly historyFile: string;
  readonly sources: {
    readonly aws?: { readonly endpoint: string; readonly tokenTtlS: number };
    readonly gcp?: { readonly endpoint: string; readonly watchTimeoutS: number };
    readonly azure?: { readonly endpoint: string; readonly vmName?: string };
  };
}

const FIELDS = [
  'enabled',
  'forecasterAddress',
  'interval',
  'bufferSamples',
  'maxBatch',
  'reconnectMin',
  'reconnectMax',
  'nodePool',
  'nodeClass',
  'procRoot',
  'historyFile',
  'sources',
] as const;

function object(field: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigError(field, 'expected an object');
  return value as Record<string, unknown>;
}

function url(field: string, value: unknown, fallback: string): string {
  const text = requireString(field, value ?? fallback);
  if (!/^https?:\/\/[^/]+/.test(text)) throw new ConfigError(field, 'expected an http:// URL');
  return text;
}

/** Parses the `telemetry` block; `path` is where it sits in the sidecar's config (for error messages). */
export function parseTelemetryConfig(
  raw: Record<string, unknown>,
  dataDir: string,
  path = 'telemetry',
): TelemetryConfig {
  const at = (f: string): string => `${path}.${f}`;
  rejectUnknownKeys(path, raw, FIELDS);
  const forecasterAddress =
    raw.forecasterAddress === undefined ? '' : requireString(at('forecasterAddress'), raw.forecasterAddress);
  const enabled = raw.enabled === undefined ? forecasterAddress !== '' : requireBool(at('enabled'), raw.enabled);
  if (enabled && !/^[^:\s]+:\d+$/.test(forecasterAddress)) {
    throw new ConfigError(at('forecasterAddress'), 'expected host:port of the forecaster when telemetry is enabled');
  }
  const sources = object(at('sources'), raw.sources);
  rejectUnknownKeys(at('sources'), sources, ['aws', 'gcp', 'azure']);
  const aws = sources.aws === undefined ? undefined : object(at('sources.aws'), sources.aws);
  const gcp = sources.gcp === undefined ? undefined : object(at('sources.gcp'), sources.gcp);
  const azure = sources.azure === undefined ? undefined : object(at('sources.azure'), sources.azure);
  if (aws !== undefined) rejectUnknownKeys(at('sources.aws'), aws, ['endpoint', 'tokenTtlS']);
  if (gcp !== undefined) rejectUnknownKeys(at('sources.gcp'), gcp, ['endpoint', 'watchTimeoutS']);
  if (azure !== undefined) rejectUnknownKeys(at('sources.azure'), azure, ['endpoint', 'vmName']);
  const reconnectMinMs = parseDurationMs(at('reconnectMin'), raw.reconnectMin ?? '500ms');
  const reconnectMaxMs = parseDurationMs(at('reconnectMax'), raw.reconnectMax ?? '30s');
  if (reconnectMaxMs < reconnectMinMs) throw new ConfigError(at('reconnectMax'), 'must not be below reconnectMin');
  return deepFreeze({
    enabled,
    forecasterAddress,
    intervalMs: parseDurationMs(at('interval'), raw.interval ?? '15s'),
    bufferSamples: requireInt(at('bufferSamples'), raw.bufferSamples ?? 5760, 1, 10_000_000),
    maxBatch: requireInt(at('maxBatch'), raw.maxBatch ?? 256, 1, 100_000),
    reconnectMinMs,
    reconnectMaxMs,
    nodePool: requireString(at('nodePool'), raw.nodePool ?? 'default'),
    nodeClass: raw.nodeClass === undefined || raw.nodeClass === '' ? '' : requireString(at('nodeClass'), raw.nodeClass),
    procRoot: requireString(at('procRoot'), raw.procRoot ?? '/proc'),
    historyFile: requireString(at('historyFile'), raw.historyFile ?? `${dataDir}/telemetry-history.jsonl`),
    sources: {
      ...(aws === undefined
        ? {}
        : {
            aws: {
              endpoint: url(at('sources.aws.endpoint'), aws.endpoint, 'http://169.254.169.254'),
              tokenTtlS: requireInt(at('sources.aws.tokenTtlS'), aws.tokenTtlS ?? 21_600, 1, 21_600),
            },
          }),
      ...(gcp === undefined
        ? {}
        : {
            gcp: {
              endpoint: url(at('sources.gcp.endpoint'), gcp.endpoint, 'http://metadata.google.internal'),
              watchTimeoutS: requireInt(at('sources.gcp.watchTimeoutS'), gcp.watchTimeoutS ?? 60, 1, 3600),
            },
          }),
      ...(azure === undefined
        ? {}
        : {
            azure: {
              endpoint: url(at('sources.azure.endpoint'), azure.endpoint, 'http://169.254.169.254'),
              ...(azure.vmName === undefined
                ? {}
                : { vmName: requireString(at('sources.azure.vmName'), azure.vmName) }),
            },
          }),
    },
  });
}
