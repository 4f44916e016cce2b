import { ForecastCliError } from './errors';

export const USAGE = `usage:
  npm run forecast -- train --trace FILE --out DIR [--format F] [--seed N] [--train-traces A,B] [BUDGET]
  npm run forecast -- evaluate --trace FILE [--model DIR] [--format F] [--seed N] [--json] [--report FILE]
                               [--train-traces A,B [--leave-out]] [BUDGET]
  npm run forecast -- results --data DIR [--readme FILE] [--json] [BUDGET]
  npm run forecast -- promote --registry DIR --candidate DIR --trace FILE [--format F]
  npm run forecast -- rollback --registry DIR
  npm run forecast -- retrain --trace FILE --registry DIR [--format F] [--seed N]
BUDGET: [--max-fenced-share 0.05] [--max-false-drains 10] [--migration-s 60]
formats: ndjson, parcae, bamboo-s, bamboo-h (detected when omitted)`;

export type Command = 'train' | 'evaluate' | 'results' | 'promote' | 'rollback' | 'retrain';

export interface CliOptions {
  readonly command: Command;
  readonly trace?: string;
  readonly out?: string;
  readonly model?: string;
  readonly format?: string;
  readonly seed?: string;
  readonly json: boolean;
  readonly report?: string;
  readonly registry?: string;
  readonly candidate?: string;
  /** Other traces pooled into the training set, comma-separated. */
  readonly trainTraces?: string;
  /** Train on `trainTraces` only: the trace is scored as a pool the model never saw. */
  readonly leaveOut: boolean;
  readonly maxFencedShare?: string;
  readonly maxFalseDrains?: string;
  readonly migrationS?: string;
  readonly data?: string;
  readonly readme?: string;
}

type Valued =
  | 'trace'
  | 'out'
  | 'model'
  | 'format'
  | 'seed'
  | 'report'
  | 'registry'
  | 'candidate'
  | 'trainTraces'
  | 'maxFencedShare'
  | 'maxFalseDrains'
  | 'migrationS'
  | 'data'
  | 'readme';
type Flag = 'json' | 'leaveOut';

const KEY_OF: Readonly<Record<string, Valued | Flag>> = {
  trace: 'trace',
  out: 'out',
  model: 'model',
  format: 'format',
  seed: 'seed',
  report: 'report',
  registry: 'registry',
  candidate: 'candidate',
  'train-traces': 'trainTraces',
  'max-fenced-share': 'maxFencedShare',
  'max-false-drains': 'maxFalseDrains',
  'migration-s': 'migrationS',
  data: 'data',
  readme: 'readme',
  json: 'json',
  'leave-out': 'leaveOut',
};
const FLAGS: readonly string[] = ['json', 'leaveOut'];
const BUDGET = ['max-fenced-share', 'max-false-drains', 'migration-s'];
/** Numeric flags: the range each must lie in, said the way the error says it. */
const RANGES: Partial<Record<Valued, { readonly ok: (n: number) => boolean; readonly said: string }>> = {
  maxFencedShare: { ok: (n) => n > 0 && n <= 1, said: '> 0 and <= 1' },
  maxFalseDrains: { ok: (n) => n >= 0, said: '>= 0' },
  migrationS: { ok: (n) => n > 0, said: '> 0' },
};

const REQUIRED: Record<Command, readonly Valued[]> = {
  train: ['trace', 'out'],
  evaluate: ['trace'],
  results: ['data'],
  promote: ['registry', 'candidate', 'trace'],
  rollback: ['registry'],
  retrain: ['trace', 'registry'],
};
const ALLOWED: Record<Command, readonly string[]> = {
  train: ['trace', 'out', 'format', 'seed', 'train-traces', ...BUDGET],
  evaluate: ['trace', 'model', 'format', 'seed', 'json', 'report', 'train-traces', 'leave-out', ...BUDGET],
  results: ['data', 'readme', 'json', ...BUDGET],
  promote: ['registry', 'candidate', 'trace', 'format', 'seed'],
  rollback: ['registry'],
  retrain: ['trace', 'registry', 'format', 'seed'],
};

function isCommand(value: string | undefined): value is Command {
  return value !== undefined && Object.prototype.hasOwnProperty.call(REQUIRED, value);
}

function usage(problem: string): never {
  throw new ForecastCliError('NC_FORECAST_USAGE', `${problem}\n${USAGE}`, { context: { field: problem } });
}

/** Parses `forecast COMMAND --flag value …`; every error names the flag and carries the usage text. */
export function parseArgs(argv: readonly string[]): CliOptions {
  const [command, ...rest] = argv;
  if (!isCommand(command)) {
    usage(`unknown command ${JSON.stringify(command ?? '')}`);
  }
  const values: Partial<Record<Valued, string>> = {};
  const flags: Record<Flag, boolean> = { json: false, leaveOut: false };
  for (let i = 0; i < rest.length; i += 1) {
    const arg = rest[i] as string;
    if (!arg.startsWith('--')) usage(`unexpected argument ${arg}`);
    const name = arg.slice(2);
    if (!ALLOWED[command].includes(name)) usage(`--${name} is not an option of ${command}`);
    const key = KEY_OF[name] as Valued | Flag;
    if (FLAGS.includes(key)) {
      flags[key as Flag] = true;
      continue;
    }
    const value = rest[i + 1];
    if (value === undefined || value.startsWith('--')) usage(`--${name} needs a value`);
    const range = RANGES[key as Valued];
    if (range !== undefined) {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n) || !range.ok(n)) {
        usage(`--${name} must be a number ${range.said}, got ${value}`);
      }
    }
    values[key as Valued] = value;
    i += 1;
  }
  if (flags.leaveOut && values.trainTraces === undefined) usage('--leave-out needs --train-traces');
  for (const name of REQUIRED[command]) if (values[name] === undefined) usage(`${command} needs --${name}`);
  return Object.freeze({ command, ...flags, ...values });
}
