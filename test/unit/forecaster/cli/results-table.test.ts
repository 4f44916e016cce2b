import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorCode } from '../../../../common/errors';
import { BEGIN, END, resultsMarkdown, writeResults } from '../../../../forecaster/src/cli/results-table';
import type { OperatingPoint, ResultsRun } from '../../../../forecaster/src/cli/results-table';

function point(warned5m: number, fenced: number): OperatingPoint {
  return {
    prewarnThreshold: 0.2,
    drainThreshold: 0.6,
    chosenOn: 'the training span',
    warnedShare: { '120': 0.9, '150': warned5m, '300': warned5m, '600': 0 },
    drainFinishedShare: 0.9,
    fencedShare: fenced,
    falseDrainsPer100NodeDays: 3,
    preemptions: 40,
  };
}

function run(trace: string, training: ResultsRun['training'], warned5m: number): ResultsRun {
  const scorer = { atBudget: point(warned5m, 0.04), atBudgetChosenOnHeldOut: point(0.5, 0.05), prAucPreNotice: 0.1 };
  return {
    trace,
    training,
    seconds: 12.4,
    result: {
      model: { prAuc: 0.3 },
      boughtTime: {
        budget: { maxFencedShare: 0.05, maxFalseDrainsPer100NodeDays: 10 },
        migrationS: 60,
        notice: { warnedShare: { '120': 1, '150': 0, '300': 0, '600': 0 } },
        scorers: { model: scorer, reactive: { ...scorer, atBudget: point(0, 0.01) } },
      },
    },
  };
}

describe('the training README results section', () => {
  it('has a row per run and a column per scorer, from the runs alone', () => {
    const text = resultsMarkdown([run('a.csv', 'own', 0.25), run('a.csv', 'leave-one-trace-out', 0.125)], '2026-12-07');
    expect(text.startsWith(BEGIN) && text.endsWith(END)).toBe(true);
    expect(text).toContain("| trace (model's training) | model | reactive |");
    expect(text).toContain('| a (own) | 25 % (4.0 %, 3) | 0 % (1.0 %, 3) |');
    expect(text).toContain('| a (leave-one-trace-out) | 13 % (4.0 %, 3) |');
    expect(text).toContain('at most 5.0 % of node-time');
    expect(text).toContain(
      '| PR-AUC pre-notice | PR-AUC | notice, 2 min | s |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    );
    expect(text).toContain('| 0.100 | 0.300 | 100 % | 12 |');
    // 40 pre-emptions, the notice warned all of them 2 minutes ahead: no run clears issue #15's bar.
    expect(text).toContain('| a (own) | 10 of 40 | reactive 0 of 40 | yes | 40 of 40 | no |');
  });

  it('replaces only the section between the markers, and refuses a README without them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nc-results-'));
    try {
      const readme = join(dir, 'README.md');
      writeFileSync(readme, `# title\n\n${BEGIN}\nold table\n${END}\n\nafter\n`);
      await writeResults(readme, `${BEGIN}\nnew table\n${END}`);
      expect(readFileSync(readme, 'utf8')).toBe(`# title\n\n${BEGIN}\nnew table\n${END}\n\nafter\n`);
      writeFileSync(readme, '# no section\n');
      await expect(writeResults(readme, 'x').catch((err: unknown) => errorCode(err))).resolves.toBe(
        'NC_FORECAST_INPUT_MISSING',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
