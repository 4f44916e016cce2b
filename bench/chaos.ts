import pino from 'pino';
import {
  FAULT_STEPS,
  FAULTS,
  applies,
  runCell,
  when,
  type CellResult,
  type Fault,
  type FaultStep,
} from '../test/harness/fault-matrix';

// npm run chaos -- [-steps a,b] [-faults x,y] [-json]
// The fault matrix on a real local cluster: for each journaled step of a migration and each fault, a drain
// of a stateful service with the fault injected right after that step (also inside a post-copy drain's window,
// and during a pre-stage ahead of the drain), everything restarted that a real node would restart, then runc's
// view, the router, the service's state and leftovers checked. Prints a table; exits 1 when a cell breaks a
// promise.
const USAGE = `usage: npm run chaos -- [-steps ${FAULT_STEPS.join(',')}] [-faults ${FAULTS.join(',')}] [-json]`;

function pick<T extends string>(flag: string, value: string | undefined, all: readonly T[]): T[] {
  if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
  const chosen = value.split(',');
  const unknown = chosen.filter((v) => !all.includes(v as T));
  if (unknown.length > 0) throw new Error(`${flag}: unknown ${unknown.join(', ')}\n${USAGE}`);
  return chosen as T[];
}

function parseArgs(argv: readonly string[]): { steps: FaultStep[]; faults: Fault[]; json: boolean } {
  const out = { steps: [...FAULT_STEPS], faults: [...FAULTS], json: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '-help' || flag === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else if (flag === '-json' || flag === '--json') out.json = true;
    else if (flag === '-steps' || flag === '--steps') out.steps = pick(flag, argv[++i], FAULT_STEPS);
    else if (flag === '-faults' || flag === '--faults') out.faults = pick(flag, argv[++i], FAULTS);
    else throw new Error(`unknown option ${String(flag)}\n${USAGE}`);
  }
  return out;
}

function table(results: readonly CellResult[], steps: readonly FaultStep[], faults: readonly Fault[]): string {
  const width = 24;
  const lines = [['step \\ fault'.padEnd(16), ...faults.map((f) => f.padEnd(width))].join(' ')];
  for (const step of steps) {
    const cells = faults.map((fault) => {
      const r = results.find((x) => x.step === step && x.fault === fault);
      if (r === undefined) return '-'.padEnd(width);
      const where = r.outcome === 'operator' && r.copyOn !== undefined ? ` (${r.copyOn})` : '';
      return `${r.pass ? 'pass' : 'FAIL'} ${r.outcome}${where}`.padEnd(width);
    });
    lines.push([step.padEnd(16), ...cells].join(' '));
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { steps, faults, json } = parseArgs(process.argv.slice(2));
  const log = pino({ level: process.env.NOMAD_CHAIN_LOG_LEVEL ?? 'silent' });
  const cells = steps.flatMap((step) => faults.filter((f) => applies(step, f)).map((fault) => ({ step, fault })));
  const results: CellResult[] = [];
  for (const [i, { step, fault }] of cells.entries()) {
    if (!json) process.stdout.write(`[${i + 1}/${cells.length}] ${fault} ${when(step)} ... `);
    const r = await runCell(step, fault, log);
    results.push(r);
    if (!json)
      console.log(
        `${r.pass ? 'pass' : 'FAIL'}: ${r.outcome}${r.copyOn === undefined ? '' : ` on the ${r.copyOn}`}${r.checkpointAgeMs === undefined ? '' : ` (checkpoint ${r.checkpointAgeMs} ms old)`}, ended at ${r.finalStep}${r.error === undefined ? '' : ` (${r.error}: ${r.errorMessage?.trim() ?? ''})`}${r.faultDetail === undefined ? '' : ` [${r.faultDetail}]`} (${(r.elapsedMs / 1000).toFixed(1)} s)`,
      );
  }
  if (json) console.log(JSON.stringify(results, null, 2));
  else {
    console.log(`\n${table(results, steps, faults)}\n`);
    for (const r of results.filter((x) => !x.pass)) console.log(`${r.fault} ${when(r.step)}: ${r.failures.join('; ')}`);
    console.log(`${results.filter((r) => r.pass).length} of ${results.length} cells kept every promise`);
  }
  if (results.some((r) => !r.pass)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 2;
});
