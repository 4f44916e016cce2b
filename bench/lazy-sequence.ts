import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startLocalMode, waitForPort } from '../local/local-mode';
import type { ServiceDefinition } from '../local/controller/service-definition';
import type { MigrationRecord } from '../local/migration/migration-record';
import { MigrationMode } from '../proto/gen/chain/v1/sidecar';

// node -r ./scripts/register.js bench/lazy-sequence.ts [--mib 512] [--json]
// Post-copy through the migration sequence (issue #12 item 2) beside stop-and-copy, same task, same run: a
// local cluster's drain moves an HTTP service holding --mib MiB of written, incompressible memory. Post-copy is
// the automatic mode's choice (the rule: lazy pages on both nodes, resident size >= 64 MiB); stop-and-copy is
// asked for. Tasks run in the node's user namespace: lazy restore of a user-namespaced task is unavailable here.
const PROGRAM = `
import http.server, os, sys
size = int(sys.argv[1]) * 1024 * 1024
block = bytearray(size)
for i in range(0, size, 1 << 20):
    block[i:i + (1 << 20)] = os.urandom(1 << 20)
counter = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global counter
        counter += 1
        body = (str(counter) + ' ' + str(block[counter % size]) + '\\n').encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()
`;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

interface Row {
  readonly mode: string;
  readonly step: string;
  readonly modeReason: string;
  /** The source frozen until the checkpoint (post-copy: the images without memory) was on the target. */
  readonly freezeMs: number;
  /** From leaving rotation to the migration's journaled end (post-copy: the window included). */
  readonly totalMs: number;
  readonly lazyWindowMs: number | undefined;
  readonly wireBytes: number;
  readonly counterBefore: number;
  readonly counterAfter: number;
}

async function counter(base: string): Promise<number> {
  const res = await fetch(base, { signal: AbortSignal.timeout(60_000) });
  return Number((await res.text()).split(' ')[0]);
}

async function moveOnce(service: ServiceDefinition, mode: MigrationMode): Promise<Row> {
  const log = pino({ level: process.env.NOMAD_CHAIN_LOG_LEVEL ?? 'silent' });
  const local = await startLocalMode(
    {
      cluster: {
        nodes: 2,
        services: [service.name],
        sidecarEnv: { NOMAD_CHAIN_USER_NAMESPACE: 'off' },
        readyTimeoutMs: 120_000,
      },
      mode,
      checkpointWaitMs: 300_000,
    },
    log,
  );
  try {
    const placed = await local.controller.runService(service, (i) => waitForPort(i, 120_000));
    const base = `http://127.0.0.1:${local.cluster.haproxy.portOf(service.name)}/`;
    const counterBefore = await counter(base);
    const [outcome] = await local.controller.drainNode(placed.node, 'bench');
    if (outcome === undefined || !('migration' in outcome)) throw new Error('the drain moved nothing');
    const record: MigrationRecord = outcome.migration;
    const left = record.stepsAtUnixMs['left-rotation'] ?? 0;
    return {
      mode: record.mode === MigrationMode.MIGRATION_MODE_LAZY ? 'post-copy' : 'stop-and-copy',
      step: record.step,
      modeReason: record.modeReason ?? '',
      freezeMs: record.freezeMs ?? 0,
      totalMs: record.updatedAtUnixMs - left,
      lazyWindowMs: record.lazyWindowMs,
      wireBytes: record.wireBytes ?? 0,
      counterBefore,
      counterAfter: await counter(base),
    };
  } finally {
    await local.stop(true);
  }
}

async function main(): Promise<void> {
  const mib = Number(arg('mib', '512'));
  const dir = mkdtempSync(join(tmpdir(), 'nc-lazy-bench-'));
  try {
    writeFileSync(join(dir, 'mem.py'), PROGRAM);
    const service: ServiceDefinition = {
      name: 'mem',
      argv: ['/usr/bin/python3', '/local/mem.py', String(mib)],
      env: {},
      port: 8080,
      localFiles: { [join(dir, 'mem.py')]: 'mem.py' },
      memoryLimitBytes: (mib + 256) * 1024 * 1024,
    };
    const rows = [
      await moveOnce(service, MigrationMode.MIGRATION_MODE_AUTO),
      await moveOnce(service, MigrationMode.MIGRATION_MODE_STOP_AND_COPY),
    ];
    if (process.argv.includes('--json')) console.log(JSON.stringify(rows, null, 2));
    else
      for (const r of rows)
        console.log(
          `${r.mode.padEnd(14)} ${mib} MiB  ${r.step.padEnd(11)} freeze ${String(r.freezeMs).padStart(6)} ms  total ${String(r.totalMs).padStart(6)} ms  window ${r.lazyWindowMs === undefined ? '     -' : String(r.lazyWindowMs).padStart(6)} ms  wire ${(r.wireBytes / 2 ** 20).toFixed(1).padStart(7)} MiB  counter ${r.counterBefore} -> ${r.counterAfter}  (${r.modeReason})`,
        );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 2;
});
