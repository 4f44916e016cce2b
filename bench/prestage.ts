/**
 * Pre-staging benchmark (issue #6): a drain's migration with and without a pre-stage, in the same run, in the
 * local cluster (real sidecars in network namespaces, runc/CRIU, the State Transfer Protocol between nodes).
 * A task holds STATE MiB of random bytes; between the pre-stage (or, for the baseline, the same moment) and the
 * drain it rewrites CHANGED % of them, in random BLOCK KiB blocks. Figures from the controller's pre-stage report
 * and the drain's migration record:
 *
 *   npm run bench:prestage -- [--json] [--state-mib 64] [--changed-pct 5] [--block-kib 64]
 *
 * drainWireBytes: chunk bytes the drain's final checkpoint sent; freezeMs: from the freeze until the target
 * held the checkpoint; migrationMs: the migration from planned to done. Root, runc and CRIU >= 4.2 needed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startLocalMode, waitForPort, type LocalMode } from '../local/local-mode';
import type { ServiceDefinition } from '../local/controller/service-definition';
import type { MigrationRecord } from '../local/migration/migration-record';

const log = pino({ level: process.env.BENCH_LOG_LEVEL ?? 'silent' }, pino.destination(2));
const PORT = 8080;

// Random state, rewritten in place on demand; /digest proves it intact after the move.
const TASK = `
import hashlib, http.server, os, random, sys
size = int(os.environ['STATE_MIB']) * 1024 * 1024
data = bytearray(os.urandom(size))
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        if self.path.startswith('/mutate'):
            pct, block = (float(v) for v in self.path.split('?')[1].split(','))
            block = int(block * 1024)
            for _ in range(int(size * pct / 100 / block)):
                at = random.randrange(0, size - block)
                data[at:at + block] = os.urandom(block)
        body = hashlib.sha256(data).hexdigest().encode()
        self.send_response(200)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), Handler).serve_forever()
`;

interface Row {
  case: 'without pre-stage' | 'with pre-stage';
  stateMiB: number;
  changedPct: number;
  prestageWireBytes: number;
  prestageMs: number;
  drainWireBytes: number;
  freezeMs: number;
  migrationMs: number;
  stateIntact: boolean;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

async function get(local: LocalMode, service: string, path: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${local.cluster.haproxy.portOf(service)}${path}`);
  if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
  return res.text();
}

function migrationMs(record: MigrationRecord): number {
  return (record.stepsAtUnixMs.done ?? Number.NaN) - record.createdAtUnixMs;
}

/** Starts a fresh copy of the service (its own random state), optionally pre-stages it, changes it, drains. */
async function runCase(
  local: LocalMode,
  service: ServiceDefinition,
  prestage: boolean,
  changedPct: number,
  blockKiB: number,
): Promise<Row> {
  const { controller } = local;
  const placed = await controller.runService(service, (i) => waitForPort(i, 120_000));
  const stateMiB = Number(service.env.STATE_MIB);
  let prestageWireBytes = 0;
  let prestageMs = 0;
  await controller.setEligibility(placed.node, false, 'bench: risk above threshold');
  const reservation = await controller.reserve(placed.node, 'bench');
  if (prestage) {
    const started = Date.now();
    const [staged] = (await controller.prestage(placed.node, reservation.id)).staged;
    if (staged?.outcome !== 'staged') throw new Error(`pre-stage failed: ${JSON.stringify(staged)}`);
    prestageMs = Date.now() - started;
    prestageWireBytes = staged.wireBytes;
  } else {
    // The baseline drains to the node it would have: no reservation steers it.
    controller.release(reservation.id);
  }
  const digest = await get(local, service.name, `/mutate?${changedPct},${blockKiB}`);
  const [outcome] = await controller.drainNode(placed.node, 'bench');
  if (outcome?.outcome !== 'moved') throw new Error(`drain did not move the task: ${JSON.stringify(outcome)}`);
  const stateIntact = (await get(local, service.name, '/')) === digest;
  controller.release(reservation.id);
  // The drained node takes work again, so the next case has the same room.
  await controller.setEligibility(placed.node, true, 'bench: case done');
  return {
    case: prestage ? 'with pre-stage' : 'without pre-stage',
    stateMiB,
    changedPct,
    prestageWireBytes,
    prestageMs,
    drainWireBytes: outcome.migration.wireBytes ?? Number.NaN,
    freezeMs: outcome.migration.freezeMs ?? Number.NaN,
    migrationMs: migrationMs(outcome.migration),
    stateIntact,
  };
}

async function main(): Promise<void> {
  const stateMiB = Number(arg('state-mib', '64'));
  const changedPct = Number(arg('changed-pct', '5'));
  const blockKiB = Number(arg('block-kib', '64'));
  const dir = mkdtempSync(join(tmpdir(), 'nc-bench-prestage-'));
  const program = join(dir, 'state.py');
  writeFileSync(program, TASK);
  const service = (name: string): ServiceDefinition => ({
    name,
    argv: ['/usr/bin/python3', '/local/state.py'],
    env: { STATE_MIB: String(stateMiB) },
    port: PORT,
    localFiles: { [program]: 'state.py' },
    memoryLimitBytes: (stateMiB * 3 + 128) * 1024 * 1024,
  });
  const local = await startLocalMode({ cluster: { nodes: 3, services: ['baseline', 'prestaged'] } }, log);
  const rows: Row[] = [];
  try {
    rows.push(await runCase(local, service('baseline'), false, changedPct, blockKiB));
    rows.push(await runCase(local, service('prestaged'), true, changedPct, blockKiB));
  } finally {
    await local.stop(true);
    rmSync(dir, { recursive: true, force: true });
  }
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(rows)}\n`);
    return;
  }
  const mb = (n: number): string => (n / 1e6).toFixed(1);
  process.stdout.write(
    `state ${stateMiB} MiB, ${changedPct} % changed in ${blockKiB} KiB blocks between pre-stage and drain\n` +
      'case               pre-stage MB  pre-stage ms  drain MB  freeze ms  migration ms  intact\n',
  );
  for (const r of rows) {
    process.stdout.write(
      `${r.case.padEnd(18)} ${mb(r.prestageWireBytes).padStart(12)}  ${String(r.prestageMs).padStart(12)}  ` +
        `${mb(r.drainWireBytes).padStart(8)}  ${String(r.freezeMs).padStart(9)}  ${String(r.migrationMs).padStart(12)}  ` +
        `${String(r.stateIntact)}\n`,
    );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:prestage failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
