import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { errorCode, errorMessage } from '../../../common/errors';
import { parseArgs } from './args';
import type { CliOptions } from './args';
import { checkServable, scoreWithServingModel } from './model-scorer';
import { PythonTrainer } from './python-trainer';
import { resultsMarkdown, traceFiles, writeResults } from './results-table';
import type { BoughtTime, ResultsRun } from './results-table';
import { readRows, writeScores } from './row-files';

const ROOT = resolve(__dirname, '..', '..', '..');
export const SPEC_PATH = join(ROOT, 'forecaster', 'training', 'feature-spec.json');
const METRIC_KEYS = [
  'rocAuc',
  'prAuc',
  'precision',
  'recall',
  'leadTimeMedianS',
  'leadTimeP10S',
  'falseDrainsPer100NodeDays',
];

export interface EvaluationResult {
  readonly model: Record<string, number | null>;
  readonly baselines: Record<string, Record<string, number | null>>;
  readonly boughtTime: BoughtTime;
  readonly context?: Record<string, unknown>;
}

type TrainingOptions = Pick<
  CliOptions,
  'trainTraces' | 'leaveOut' | 'maxFencedShare' | 'maxFalseDrains' | 'migrationS'
>;

/** The pooled traces and the operator's budget, as the trainer's flags. */
function trainingArgs(options: TrainingOptions): string[] {
  const pairs: [string, string | undefined][] = [
    [
      '--train-traces',
      options.trainTraces
        ?.split(',')
        .map((p) => resolve(p))
        .join(','),
    ],
    ['--max-fenced-share', options.maxFencedShare],
    ['--max-false-drains', options.maxFalseDrains],
    ['--migration-s', options.migrationS],
  ];
  return [
    ...pairs.flatMap(([flag, value]) => (value === undefined ? [] : [flag, value])),
    ...(options.leaveOut ? ['--leave-out'] : []),
  ];
}

function traceArgs(options: Pick<CliOptions, 'trace' | 'format' | 'seed'>): string[] {
  return [
    '--trace',
    resolve(options.trace as string),
    ...(options.format === undefined ? [] : ['--format', options.format]),
    ...(options.seed === undefined ? [] : ['--seed', options.seed]),
  ];
}

/** Trains in Python, then proves the export loads in the serving runner. */
export async function train(trainer: PythonTrainer, options: CliOptions): Promise<unknown> {
  const out = resolve(options.out as string);
  const result = (await trainer.run(['train', ...traceArgs(options), ...trainingArgs(options), '--out', out])) as {
    card: Record<string, unknown>;
  };
  const served = await checkServable(out, SPEC_PATH);
  return { modelDir: out, servable: served, card: result.card };
}

/**
 * Evaluation: Python builds the rows (training first when no model is given), onnxruntime-node scores them through
 * the serving runner, and Python turns the scores and the baselines into metrics.
 */
export async function evaluate(trainer: PythonTrainer, options: CliOptions): Promise<EvaluationResult> {
  const work = await mkdtemp(join(tmpdir(), 'nc-forecast-'));
  try {
    const prepared = (await trainer.run([
      'prepare',
      ...traceArgs(options),
      '--work',
      work,
      ...trainingArgs(options),
      ...(options.model === undefined ? [] : ['--model', resolve(options.model)]),
    ])) as { modelDir: string };
    const { meta, features } = await readRows(work);
    await writeScores(work, await scoreWithServingModel(prepared.modelDir, SPEC_PATH, features, meta.rows));
    return (await trainer.run([
      'score',
      '--work',
      work,
      ...(options.report === undefined ? [] : ['--report', resolve(options.report)]),
    ])) as EvaluationResult;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Refuses a candidate the serving side could not load before the registry considers it. */
export async function promote(
  trainer: PythonTrainer,
  options: Pick<CliOptions, 'trace' | 'format' | 'seed' | 'registry' | 'candidate'>,
): Promise<unknown> {
  const candidate = resolve(options.candidate as string);
  await checkServable(candidate, SPEC_PATH);
  return trainer.run([
    'promote',
    ...traceArgs(options),
    '--registry',
    resolve(options.registry as string),
    '--candidate',
    candidate,
  ]);
}

/** Hours at the end of the trace kept out of a retrain's training rows, for promote to judge both models on. */
export const RETRAIN_HOLDOUT_HOURS = '6';

/**
 * The periodic (or on-demand) retrain: trains on all but the trace's last hours, checks the export loads in the
 * serving runner, and promotes it only if it beats the serving model on those hours. Local mode's retrain timer
 * (forecaster/src/retrain/) runs this same function.
 */
export async function retrain(
  trainer: PythonTrainer,
  options: Pick<CliOptions, 'trace' | 'format' | 'seed' | 'registry'>,
): Promise<unknown> {
  const candidate = await mkdtemp(join(tmpdir(), 'nc-retrain-'));
  try {
    await trainer.run(['train', ...traceArgs(options), '--out', candidate, '--holdout-hours', RETRAIN_HOLDOUT_HOURS]);
    await checkServable(candidate, SPEC_PATH);
    return await trainer.run([
      'promote',
      ...traceArgs(options),
      '--registry',
      resolve(options.registry as string),
      '--candidate',
      candidate,
      '--recent-hours',
      RETRAIN_HOLDOUT_HOURS,
    ]);
  } finally {
    await rm(candidate, { recursive: true, force: true });
  }
}

/**
 * The training README's results: every trace of `data` evaluated with its own model and leave-one-trace-out
 * (trained on the other traces only), each timed; the section is regenerated from these runs, never kept by hand.
 */
export async function results(
  trainer: PythonTrainer,
  options: Pick<CliOptions, 'data' | 'readme' | 'maxFencedShare' | 'maxFalseDrains' | 'migrationS'>,
): Promise<ResultsRun[]> {
  const traces = await traceFiles(resolve(options.data as string));
  const runs: ResultsRun[] = [];
  for (const trace of traces) {
    const others = traces.filter((t) => t !== trace).join(',');
    const modes = [
      ['own', { leaveOut: false }],
      ['leave-one-trace-out', { leaveOut: true, trainTraces: others }],
    ] as const;
    for (const [training, extra] of modes) {
      if (training === 'leave-one-trace-out' && others === '') continue;
      const started = process.hrtime.bigint();
      const result = await evaluate(trainer, { ...options, ...extra, trace, json: true, command: 'evaluate' });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      runs.push({ trace: trace.split('/').pop() as string, training, seconds, result });
    }
  }
  if (options.readme !== undefined) {
    await writeResults(resolve(options.readme), resultsMarkdown(runs, new Date().toISOString().slice(0, 10)));
  }
  return runs;
}

export function formatTable(result: EvaluationResult): string {
  const rows: [string, Record<string, number | null>][] = [
    ['model', result.model],
    ...Object.entries(result.baselines),
  ];
  const cell = (v: number | null | undefined): string => (v === null || v === undefined ? 'n/a' : v.toFixed(3));
  const header = ['scorer', ...METRIC_KEYS].map((h) => h.padStart(14)).join(' ');
  const leads = ['120', '150', '300', '600'];
  const budget = ['scorer', ...leads.map((l) => `warned ${l} s`), 'drain done', 'fenced', 'false/100d'];
  return [
    header,
    ...rows.map(([name, m]) => [name, ...METRIC_KEYS.map((k) => cell(m[k]))].map((c) => c.padStart(14)).join(' ')),
    '',
    `at the budget (thresholds chosen on the training span): ${JSON.stringify(result.boughtTime.budget)}`,
    budget.map((h) => h.padStart(14)).join(' '),
    ...Object.entries(result.boughtTime.scorers).map(([name, s]) =>
      [
        name,
        ...leads.map((l) => cell(s.atBudget.warnedShare[l])),
        cell(s.atBudget.drainFinishedShare),
        cell(s.atBudget.fencedShare),
        cell(s.atBudget.falseDrainsPer100NodeDays),
      ]
        .map((c) => c.padStart(14))
        .join(' '),
    ),
    ['notice', ...leads.map((l) => cell(result.boughtTime.notice.warnedShare[l]))].map((c) => c.padStart(14)).join(' '),
  ].join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const options = parseArgs(argv);
  const trainer = PythonTrainer.locate(ROOT);
  switch (options.command) {
    case 'train':
      process.stdout.write(`${JSON.stringify(await train(trainer, options), null, 2)}\n`);
      return 0;
    case 'evaluate': {
      const result = await evaluate(trainer, options);
      process.stdout.write(options.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatTable(result)}\n`);
      return 0;
    }
    case 'results': {
      const runs = await results(trainer, options);
      const markdown = resultsMarkdown(runs, new Date().toISOString().slice(0, 10));
      process.stdout.write(options.json ? `${JSON.stringify(runs, null, 2)}\n` : `${markdown}\n`);
      return 0;
    }
    case 'promote':
      process.stdout.write(`${JSON.stringify(await promote(trainer, options), null, 2)}\n`);
      return 0;
    case 'retrain':
      process.stdout.write(`${JSON.stringify(await retrain(trainer, options), null, 2)}\n`);
      return 0;
    case 'rollback':
      process.stdout.write(
        `${JSON.stringify(await trainer.run(['rollback', '--registry', resolve(options.registry as string)]), null, 2)}\n`,
      );
      return 0;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (status) => {
      process.exitCode = status;
    },
    (err: unknown) => {
      process.stderr.write(`forecast: ${errorCode(err) ?? 'error'}: ${errorMessage(err)}\n`);
      process.exitCode = errorCode(err) === 'NC_FORECAST_USAGE' ? 64 : 1;
    },
  );
}
