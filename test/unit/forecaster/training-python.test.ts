import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..', '..');
const PYTHON = join(ROOT, '.venv', 'bin', 'python');

describe('Python trainer (forecaster/training) under pytest', () => {
  it('passes its own test suite', () => {
    if (!existsSync(PYTHON))
      throw new Error(`${PYTHON} is missing: run \`npm run setup\` to create the trainer's .venv`);
    const run = spawnSync(PYTHON, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'forecaster/training/tests'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' },
      // 2-4.5 min on the shared two cores (pooled training and the bought-time evaluation included).
      timeout: 420_000,
    });
    const output = `${run.stdout}\n${run.stderr}`;
    if (run.status !== 0) throw new Error(`pytest exited ${run.status ?? run.signal}:\n${output}`);
    expect(output).toMatch(/\d+ passed/);
    expect(output).not.toMatch(/\d+ (failed|error)/);
  }, 450_000);
});
