import { encode, ExtData } from '@msgpack/msgpack';
import { errorCode } from '../../../common/errors';
import { MIGRATION_MODES, parsePluginConfig, parseTaskConfig } from '../../../plugin/src/config';
import { BOUNDARY_INTS, OutcomeTally, Rng, mutateBytes } from './mutator';

/**
 * Fuzzes the plugin's two decoders of Nomad's go-cty msgpack (a job's task `config {}` and the agent's
 * `plugin "chain" { config {} }`): valid encodings of the kind go-plugin's side sends, mutated by value and by
 * byte. Every input must end as a frozen config that keeps the documented invariants, or as the family's coded
 * error naming an attribute; any other throw (TypeError, RangeError, a stack overflow) is a defect.
 */

const HOSTILE_STRINGS = [
  '',
  ' ',
  '/',
  '..',
  '../../etc',
  'relative/path',
  '\u0000',
  'x'.repeat(70_000),
  '-1s',
  '1e400s',
];
const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'commandx', ''];

function randomValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 2 ? 6 : 9)) {
    case 0:
      return null;
    case 1:
      return rng.next() < 0.5;
    case 2:
      return rng.pick(BOUNDARY_INTS) * (rng.next() < 0.3 ? -1 : 1);
    case 3:
      return rng.next() * 1e308 * (rng.next() < 0.5 ? -1 : 1);
    case 4:
      return rng.pick(HOSTILE_STRINGS);
    case 5:
      return rng.bytes(rng.int(8));
    case 6:
      return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1));
    case 7:
      return Object.fromEntries(
        Array.from({ length: rng.int(3) }, () => [rng.pick(HOSTILE_KEYS), randomValue(rng, depth + 1)]),
      );
    default:
      return new ExtData(rng.int(128), rng.bytes(4));
  }
}

function validTask(rng: Rng): Record<string, unknown> {
  const chain = rng.next() < 0.8;
  return {
    args: rng.pick([[], ['-c', 'sleep 1'], ['a', 'b', 'c']]),
    chain,
    checkpoint_wait: chain && rng.next() < 0.5 ? rng.pick(['30s', '1m30s', '250ms']) : null,
    command: rng.pick(['/bin/sh', 'redis-server', '/usr/bin/python3']),
    cwd: rng.pick(['/', '/alloc', '/local/work']),
    migration_mode: chain && rng.next() < 0.5 ? rng.pick(MIGRATION_MODES) : null,
    rootfs: rng.pick(['', '/var/lib/rootfs']),
  };
}

function validPlugin(rng: Rng): Record<string, unknown> {
  return {
    checkpoint_wait: rng.pick(['30s', '2m']),
    fingerprint_period: rng.pick(['15s', '5s']),
    migration_mode: rng.pick(MIGRATION_MODES),
    nomad_address: rng.pick(['http://127.0.0.1:4646', 'https://nomad.example:4646']),
    nomad_token: '',
    sidecar_socket: rng.pick(['/var/lib/nomad-chain/sidecar.sock', '/run/chain.sock']),
    sidecar_timeout: rng.pick(['30s', '1m']),
  };
}

/** A valid object with one or two attributes replaced (or added) by hostile values, or its bytes mutated. */
function input(rng: Rng, valid: Record<string, unknown>): Uint8Array {
  const obj: Record<string, unknown> = { ...valid };
  const keys = Object.keys(obj);
  const mode = rng.int(4);
  if (mode === 0) return encode(obj);
  if (mode === 1 || mode === 2) {
    for (let i = 0; i <= rng.int(2); i += 1) {
      const key = rng.next() < 0.85 ? rng.pick(keys) : rng.pick(HOSTILE_KEYS);
      Object.defineProperty(obj, key, {
        value: randomValue(rng),
        enumerable: true,
        configurable: true,
        writable: true,
      });
    }
    return encode(obj);
  }
  return mutateBytes(rng, encode(obj));
}

type Check = (value: Record<string, unknown>) => string | undefined;

const checkTask: Check = (c) => {
  if (typeof c.command !== 'string' || c.command.trim() === '') return 'empty command accepted';
  if (!Array.isArray(c.args) || c.args.some((a) => typeof a !== 'string')) return 'args not a list of strings';
  if (typeof c.cwd !== 'string' || !c.cwd.startsWith('/')) return 'relative cwd accepted';
  if (typeof c.rootfs !== 'string' || (c.rootfs !== '' && !c.rootfs.startsWith('/'))) return 'relative rootfs accepted';
  if (typeof c.chain !== 'boolean') return 'chain not a boolean';
  const wait = c.checkpointWaitMs;
  if (wait !== undefined && (typeof wait !== 'number' || !Number.isFinite(wait) || wait < 0 || wait > 600_000))
    return `checkpoint wait ${JSON.stringify(wait)} accepted`;
  if (c.migrationMode !== undefined && !MIGRATION_MODES.includes(c.migrationMode as never))
    return 'unknown mode accepted';
  return undefined;
};

const checkPlugin: Check = (c) => {
  if (typeof c.sidecarSocket !== 'string' || !c.sidecarSocket.startsWith('/')) return 'relative socket accepted';
  for (const key of ['sidecarTimeoutMs', 'checkpointWaitMs', 'fingerprintPeriodMs']) {
    const ms = c[key];
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return `${key} ${String(ms)} accepted`;
  }
  if (!MIGRATION_MODES.includes(c.migrationMode as never)) return 'unknown mode accepted';
  return undefined;
};

interface Target {
  readonly name: string;
  readonly code: string;
  readonly valid: (rng: Rng) => Record<string, unknown>;
  readonly parse: (bytes: Uint8Array) => unknown;
  readonly check: Check;
}

export const CONFIG_TARGETS: readonly Target[] = [
  {
    name: 'task-config',
    code: 'NC_PLUGIN_TASK_CONFIG_INVALID',
    valid: validTask,
    parse: parseTaskConfig,
    check: checkTask,
  },
  {
    name: 'plugin-config',
    code: 'NC_PLUGIN_CONFIG_INVALID',
    valid: validPlugin,
    parse: parsePluginConfig,
    check: checkPlugin,
  },
];

export function fuzzConfig(target: Target, iterations: number, seed: number): OutcomeTally {
  const tally = new OutcomeTally();
  for (let i = 0; i < iterations; i += 1) {
    const rng = new Rng(seed * 1_000_003 + i);
    const bytes = input(rng, target.valid(rng));
    const where = `${target.name} seed=${seed} iteration=${i} input=${Buffer.from(bytes).toString('base64').slice(0, 200)}`;
    let parsed: unknown;
    try {
      parsed = target.parse(bytes);
    } catch (err) {
      const code = errorCode(err);
      const attribute = (err as { attribute?: unknown }).attribute;
      if (code === target.code && typeof attribute === 'string') tally.add(`refused ${code}`);
      else tally.defect(`${where}: threw ${String(err)}`);
      continue;
    }
    const problem =
      typeof parsed !== 'object' || parsed === null || !Object.isFrozen(parsed)
        ? 'result is not a frozen object'
        : target.check(parsed as Record<string, unknown>);
    if (problem !== undefined) tally.defect(`${where}: ${problem}`);
    else tally.add('accepted');
    if (({} as Record<string, unknown>).polluted !== undefined || Object.prototype.toString.name !== 'toString')
      tally.defect(`${where}: Object.prototype was modified`);
  }
  return tally;
}
