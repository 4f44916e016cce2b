import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { SystemClock } from '../common/clock';
import { shutdownServer } from '../common/grpc/server';
import type { DirectoryStagedCheckpoints } from '../sidecar/src/checkpoint/staging';
import { LocalApi } from '../sidecar/src/local-api/local-api';
import { serveLocalApi } from '../sidecar/src/local-api/server';
import { makeCerts, makeCheckpointDir } from '../test/contract/transfer/fixtures';
import { CONFIG_TARGETS, fuzzConfig } from '../test/harness/fuzz/config-fuzz';
import type { OutcomeTally } from '../test/harness/fuzz/mutator';
import { fuzzLocalApi } from '../test/harness/fuzz/local-api-fuzz';
import { fuzzTransfer } from '../test/harness/fuzz/transfer-fuzz';
import { makeNode, teardownNode } from '../test/harness/sidecar-node';
import { TestNetwork } from '../test/harness/test-network';

// npm run fuzz -- [-iterations N] [-seed S] [-target transfer|task-config|plugin-config|local-api|all]
// Hostile and malformed input against the real decoders, a real State Transfer Protocol server and a real
// local API (runc and CRIU behind it: root only); prints each target's outcomes and exits 1 on any defect
// (reproducible from the printed seed and iteration).
const TARGETS = ['transfer', 'task-config', 'plugin-config', 'local-api', 'all'];
const USAGE = `usage: npm run fuzz -- [-iterations N] [-seed S] [-target ${TARGETS.join('|')}]`;

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
    else if (flag === '-target' && TARGETS.includes(value)) out.target = value;
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
  if (target === 'all' || target === 'local-api') {
    const started = Date.now();
    clean = report('local-api', await fuzzRealLocalApi(iterations, seed), Date.now() - started) && clean;
  }
  process.exitCode = clean ? 0 : 1;
}

/** The local API of a node in this process (its own network namespace, real runc and CRIU) on a unix socket. */
async function fuzzRealLocalApi(iterations: number, seed: number): Promise<OutcomeTally> {
  const log = pino({ level: 'silent' });
  const net = TestNetwork.create(1);
  const node = await makeNode('fuzz', net.node(0), new Map<string, DirectoryStagedCheckpoints>());
  const api = new LocalApi(
    {
      nodeName: 'fuzz',
      transferAddress: `${net.node(0).address}:7450`,
      restoreDir: join(node.root, 'restore'),
      defaultStopTimeoutMs: 2000,
    },
    { ...node, features: () => node.features, clock: new SystemClock(), log },
  );
  const socketPath = join(node.root, 'sidecar.sock');
  const server = await serveLocalApi(api, socketPath);
  try {
    const dataDirs = ['staged', 'retained', 'runc', 'tasks', 'fuzz-sandbox'].map((d) => join(node.root, d));
    for (const dir of dataDirs) await mkdir(dir, { recursive: true });
    return await fuzzLocalApi({
      iterations,
      seed,
      socketPath,
      sandbox: join(node.root, 'fuzz-sandbox'),
      survivors: [socketPath, ...dataDirs],
    });
  } finally {
    await shutdownServer(server, 1000);
    await teardownNode(node);
    net.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 2;
});
