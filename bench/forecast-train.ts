/**
 * Training time of the forecaster on every shared trace, beside a baseline measured in the same run: the same
 * trainer process reading the trace and building its feature rows without fitting anything (`windows`). The
 * difference is what candidate fitting, selection and ONNX export cost.
 *
 *   node -r ./scripts/register.js bench/forecast-train.ts [--repeat N]
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PythonTrainer } from '../forecaster/src/cli/python-trainer';

const ROOT = resolve(__dirname, '..');
const DATA = resolve(ROOT, '..', 'shared', 'data');

async function timed(run: () => Promise<unknown>): Promise<[number, unknown]> {
  const started = process.hrtime.bigint();
  const result = await run();
  return [Number(process.hrtime.bigint() - started) / 1e9, result];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main(): Promise<void> {
  const repeatAt = process.argv.indexOf('--repeat');
  const repeat = repeatAt > 0 ? Number(process.argv[repeatAt + 1]) : 3;
  const trainer = PythonTrainer.locate(ROOT);
  const work = mkdtempSync(join(tmpdir(), 'nc-bench-train-'));
  const rows: Record<string, unknown>[] = [];
  try {
    for (const name of readdirSync(DATA)
      .filter((f) => f.endsWith('.csv'))
      .sort()) {
      const trace = join(DATA, name);
      const baseline: number[] = [];
      const training: number[] = [];
      let card: { algorithm?: string; training?: { rows?: number; seconds?: number } } = {};
      let windows = 0;
      for (let i = 0; i < repeat; i += 1) {
        const [b, w] = await timed(() => trainer.run(['windows', '--trace', trace, '--out', join(work, `w-${i}`)]));
        baseline.push(b);
        windows = (w as { rows: number }).rows;
        const [t, out] = await timed(() => trainer.run(['train', '--trace', trace, '--out', join(work, `m-${i}`)]));
        training.push(t);
        card = (out as { card: typeof card }).card;
      }
      rows.push({
        trace: name,
        bytes: statSync(trace).size,
        featureRows: windows,
        winner: card.algorithm,
        baselineRowsOnlyS: Number(median(baseline).toFixed(2)),
        trainWallS: Number(median(training).toFixed(2)),
        fitSelectExportS: Number((median(training) - median(baseline)).toFixed(2)),
        trainerReportedFitS: card.training?.seconds,
      });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.table(rows);
  console.log(JSON.stringify({ bench: 'forecast-train', repeat, results: rows }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
