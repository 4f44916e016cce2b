import { ForecastCliError } from './errors';

export const USAGE = `usage:
  npm run forecast -- train --trace FILE --out DIR [--format F] [--seed N]
  npm run forecast -- evaluate --trace FILE [--model DIR] [--format F] [--seed N] [--json] [--report FILE]
  npm run forecast -- promote --registry DIR --candidate DIR --trace FILE [--format F]
  npm run forecast -- rollback --registry DIR
  npm run forecast -- retrain --trace FILE --registry DIR [--format F] [--seed N]
formats: ndjson, parcae, bamboo-s, bamboo-h (detected when omitted)`;

export type Command = 'train' | 'evaluate' | 'promote' | 'rollback' | 'retrain';

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
}

type Valued = 'trace' | 'out' | 'model' | 'format' | 'seed' | 'report' | 'registry' | 'candidate';
const REQUIRED: Record<Command, readonly Valued[]> = {
  train: ['trace', 'out'],
  evaluate: ['trace'],
  promote: ['registry', 'candidate', 'trace'],
  rollback: ['registry'],
  retrain: ['trace', 'registry'],
};
const ALLOWED: Record<Command, readonly string[]> = {
  train: ['trace', 'out', 'format', 'seed'],
  evaluate: ['trace', 'model', 'format', 'seed', 'json', 'report'],
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
  let json = false;
  for (let i = 0; i < rest.length; i += 1) {
    const arg = rest[i] as string;
    if (!arg.startsWith('--')) usage(`unexpected argument ${arg}`);
    const name = arg.slice(2);
    if (!ALLOWED[command].includes(name)) usage(`--${name} is not an option of ${command}`);
    if (name === 'json') {
      json = true;
      continue;
    }
    const value = rest[i + 1];
    if (value === undefined || value.startsWith('--')) usage(`--${name} needs a value`);
    values[name as Valued] = value;
    i += 1;
  }
  for (const name of REQUIRED[command]) if (values[name] === undefined) usage(`${command} needs --${name}`);
  return Object.freeze({ command, json, ...values });
}
