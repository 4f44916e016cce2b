import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ForecastCliError } from './errors';
import { warningVerdict } from './warning-verdict';

/** One scorer's figures at the budget, as `nc_forecast.cli score` reports them under boughtTime.scorers. */
export interface OperatingPoint {
  readonly prewarnThreshold: number;
  readonly drainThreshold: number;
  readonly chosenOn: string;
  readonly warnedShare: Readonly<Record<string, number | null>>;
  readonly drainFinishedShare: number | null;
  readonly fencedShare: number;
  readonly falseDrainsPer100NodeDays: number;
  readonly preemptions: number;
}

export interface BoughtTime {
  readonly budget: { readonly maxFencedShare: number; readonly maxFalseDrainsPer100NodeDays: number };
  readonly migrationS: number;
  /** The interruption notices themselves, at the instant each came. */
  readonly notice: { readonly warnedShare: Readonly<Record<string, number | null>> };
  readonly scorers: Readonly<
    Record<
      string,
      {
        readonly atBudget: OperatingPoint;
        readonly atBudgetChosenOnHeldOut: OperatingPoint;
        readonly prAucPreNotice: number | null;
      }
    >
  >;
}

/** One evaluation of the results table: a trace, how its model was trained, the figures and the wall time. */
export interface ResultsRun {
  readonly trace: string;
  readonly training: 'own' | 'leave-one-trace-out';
  readonly seconds: number;
  readonly result: {
    readonly model: Readonly<Record<string, number | null>>;
    readonly boughtTime: BoughtTime;
    readonly context?: Readonly<Record<string, unknown>>;
  };
}

export const BEGIN = '<!-- results:begin (npm run forecast -- results; do not edit by hand) -->';
export const END = '<!-- results:end -->';
const TRACE_FILE = /\.(csv|ndjson)$/;

/** The traces of a data directory, in name order. */
export async function traceFiles(dir: string): Promise<string[]> {
  return (await readdir(dir))
    .filter((f) => TRACE_FILE.test(f))
    .sort()
    .map((f) => join(dir, f));
}

const pct = (v: number | null | undefined): string =>
  v === null || v === undefined ? 'n/a' : `${(v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0)} %`;
const num = (v: number | null | undefined, digits = 1): string =>
  v === null || v === undefined ? 'n/a' : v.toFixed(digits);

function cell(point: OperatingPoint): string {
  return `${pct(point.warnedShare['300'])} (${pct(point.fencedShare)}, ${num(point.falseDrainsPer100NodeDays, 0)})`;
}

/** The README's results section: every figure from the runs given, none kept by hand. */
export function resultsMarkdown(runs: readonly ResultsRun[], date: string): string {
  const first = runs[0];
  if (first === undefined) throw new ForecastCliError('NC_FORECAST_INPUT_MISSING', 'no trace to report on');
  const scorers = Object.keys(first.result.boughtTime.scorers);
  const { budget, migrationS } = first.result.boughtTime;
  const name = (r: ResultsRun): string => `${r.trace.replace(/\.(csv|ndjson)$/, '')} (${r.training})`;
  const table = (pick: 'atBudget' | 'atBudgetChosenOnHeldOut'): string[] => [
    `| trace (model's training) | ${scorers.join(' | ')} |`,
    `| --- |${scorers.map(() => ' --- |').join('')}`,
    ...runs.map(
      (r) =>
        `| ${name(r)} | ${scorers.map((s) => cell(r.result.boughtTime.scorers[s]?.[pick] as OperatingPoint)).join(' | ')} |`,
    ),
  ];
  const model = runs.map((r) => {
    const m = r.result.boughtTime.scorers.model;
    const at = m?.atBudget as OperatingPoint;
    const w = at.warnedShare;
    return (
      `| ${name(r)} | ${at.preemptions} | ${pct(w['120'])} | ${pct(w['150'])} | ${pct(w['300'])} | ${pct(w['600'])} |` +
      ` ${pct(at.drainFinishedShare)} | ${num(at.prewarnThreshold, 3)} / ${num(at.drainThreshold, 3)} |` +
      ` ${num(m?.prAucPreNotice, 3)} | ${num(r.result.model.prAuc, 3)} |` +
      ` ${pct(r.result.boughtTime.notice.warnedShare['120'])} | ${num(r.seconds, 0)} |`
    );
  });
  const verdicts = runs.map((r) => {
    const v = warningVerdict(r.result.boughtTime);
    const of = (n: number): string => `${n} of ${v.preemptions}`;
    return (
      `| ${name(r)} | ${of(v.model)}${v.modelWithinBudget ? '' : ' (over budget)'} |` +
      ` ${v.bestBaseline ?? 'n/a'} ${of(v.bestBaselineWarned)} | ${v.beatsBaselines ? 'yes' : 'no'} |` +
      ` ${of(v.notice)} | ${v.holds ? 'yes' : 'no'} |`
    );
  });
  return [
    BEGIN,
    `Generated ${date} by \`npm run forecast -- results --data DIR --readme forecaster/training/README.md\`: each trace`,
    `evaluated with its own model (trained on its first 60 %) and leave-one-trace-out (trained on the other traces`,
    `only); every figure is on the trace's last 40 %. Budget: at most ${pct(budget.maxFencedShare)} of node-time fenced`,
    `and ${budget.maxFalseDrainsPer100NodeDays} false drains per 100 node-days; a drain needs ${migrationS} s to finish`,
    `(budget.py, MIGRATION_S).`,
    '',
    `Share of pre-emptions warned 5+ minutes ahead (node-time fenced, false drains per 100 node-days), thresholds`,
    `chosen for the budget in each of the training span's three validation blocks at half the budget (budget.py, SAFETY):`,
    '',
    ...table('atBudget'),
    '',
    `The same, each scorer's thresholds chosen on the held-out span itself (its best operating point within the`,
    `budget there; an upper bound no deployment gets):`,
    '',
    ...table('atBudgetChosenOnHeldOut'),
    '',
    `The model at its card's thresholds: pre-emptions in the held-out span, warned at 2 / 2.5 / 5 / 10 min, covered by`,
    `a drain that had time to finish, pre-warn / drain thresholds, PR-AUC over rows without an active notice and over`,
    `all rows, the share the interruption notice itself warned 2 min ahead (at the instant it came; the model and`,
    `the baselines act at ticks), and the wall time of the whole \`evaluate\` (s):`,
    '',
    "| trace (model's training) | pre-emptions | 2 min | 2.5 min | 5 min | 10 min | drain finished | thresholds | PR-AUC pre-notice | PR-AUC | notice, 2 min | s |",
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...model,
    '',
    `Issue #15's bar (warning-verdict.ts): within the budget, the model warns 5+ minutes ahead of more pre-emptions`,
    `than every baseline at its budget thresholds, and of at least as many as the notice warns 2 minutes ahead:`,
    '',
    "| trace (model's training) | model, 5+ min | best baseline, 5+ min | beats every baseline | notice, 2 min | holds |",
    '| --- | --- | --- | --- | --- | --- |',
    ...verdicts,
    END,
  ].join('\n');
}

/** Replaces the README's results section (between BEGIN and END) with `section`. */
export async function writeResults(readme: string, section: string): Promise<void> {
  const text = await readFile(readme, 'utf8');
  const from = text.indexOf(BEGIN);
  const to = text.indexOf(END);
  if (from < 0 || to < from) {
    throw new ForecastCliError('NC_FORECAST_INPUT_MISSING', `${readme} has no results section (${BEGIN} … ${END})`);
  }
  await writeFile(readme, text.slice(0, from) + section + text.slice(to + END.length));
}
