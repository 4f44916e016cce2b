import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { makeCerts, makeCheckpointDir } from '../test/contract/transfer/fixtures';
import { CONFIG_TARGETS, fuzzConfig } from '../test/harness/fuzz/config-fuzz';
import type { OutcomeTally } from '../test/harness/fuzz/mutator';
import { fuzzTransfer } from '../test/harness/fuzz/transfer-fuzz';

// npm run fuzz -- [-iterations N] [-seed S] [-target transfer|task-config|plugin-config|all]
// Hostile and malformed input against the real decoders and a real State Transfer Protocol server; prints
// each target's outcomes and exits 1 on any defect (reproducible from the printed seed and iteration).
const USAGE = 'usage: npm run fuzz -- [-iterations N] [-seed S] [-target transfer|task-config|plugin-config|all]';

function parseArgs(argv: readonly string[]): { iterations: number; seed: number; target: string } {
  const out = { iterations: 100_000, seed: 1, target: 'all' };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '-help' || flag === '--help') {
      console.log(USAGE);
      process.exit(0);
    }
    if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
    if (flag === '-iterations' && /^\d+$/.test(value)) out.iterations = Number(value);
    else if (flag === '-seed' && /^\d+$/.test(value)) out.seed = Number(value);
    else if (flag === '-target' && ['transfer', 'task-config', 'plugin-config', 'all'].includes(value))
      out.target = value;
    else throw new Error(`unknown or malformed option ${flag} ${value}\n${USAGE}`);
  }
  return out;
}

function report(name: string, tally: OutcomeTally, ms: number): boolean {
  console.log(`\n${name}: ${tally.inputs} inputs in ${(ms / 1000).toFixed(1)} s`);
  for (const [outcome, count] of Object.entries(tally.summary()))
    console.log(`  ${String(count).padStart(8)}  ${outcome}`);
  for (const d of tally.defects) console.log(`  defect: ${d}`);
  return tally.defects.length === 0;
}

async function main(): Promise<void> {
  const { iterations, seed, target } = parseArgs(process.argv.slice(2));
  let clean = true;
  for (const t of CONFIG_TARGETS) {
    if (target !== 'all' && target !== t.name) continue;
    const started = Date.now();
    clean = report(t.name, fuzzConfig(t, iterations, seed), Date.now() - started) && clean;
  }
  if (target === 'all' || target === 'transfer') {
    const dir = await mkdtemp(join(tmpdir(), 'nc-fuzz-'));
    try {
      const certs = await makeCerts(join(dir, 'tls'), ['sender', 'receiver']);
      const started = Date.now();
      const { tally, filedFromFuzz } = await fuzzTransfer({
        iterations,
        seed,
        workDir: dir,
        receiverTls: certs.receiver as (typeof certs)[string],
        senderTls: certs.sender as (typeof certs)[string],
        log: pino({ level: 'silent' }),
        honestDir: await makeCheckpointDir(join(dir, 'honest'), 64 * 1024),
      });
      clean =
        report(
          `transfer (${filedFromFuzz} fuzzed commits filed, each materialised and checked)`,
          tally,
          Date.now() - started,
        ) && clean;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  process.exitCode = clean ? 0 : 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 2;
});
