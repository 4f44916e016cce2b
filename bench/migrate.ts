/**
 * Migration benchmark (issue #4): tasks holding 64 MiB / 512 MiB / 2 GiB of written memory move between two
 * network namespaces, once with stop-and-copy over the State Transfer Protocol (mutual TLS, encrypted store),
 * once lazily (post-copy), beside a naive baseline measured in the same run (runc/CRIU dump to disk, tar +
 * gzip, copy over TCP, unpack, restore) and the raw TCP throughput between the same two namespaces.
 *
 *   npm run bench:migrate -- [--json] [--sizes 64,512,2048] [--modes stop-and-copy,lazy] [--files-mib 64]
 *                            [--connect-ahead on|off|both]
 *
 * --connect-ahead: whether the source connects to the peer before the freeze (the sidecar's default, on); both
 * runs every row twice, off and on (the order alternating from size to size), to compare them under the same load.
 *
 * Each task also holds a file of --files-mib MiB of random bytes open under /alloc and rewrites a few bytes
 * of it every beat, like a database's data file: the task's files travel with its memory (issue #10), and
 * every row shows both.
 *
 * peakRssMiB: the bench process's peak resident set during each hand-over, from the migration's start to the
 * restore's end. Both nodes' sidecar machinery (dump bookkeeping, transfer client and server, store,
 * materialise, restore) runs in this process; runc and CRIU run as child processes and are not counted.
 * VmHWM (/proc/self/status) is reset per hand-over through /proc/self/clear_refs; process.memoryUsage().rss is
 * also sampled every 20 ms, as a check on it.
 *
 * downtimeMs is the largest gap in a wall-clock (CLOCK_REALTIME) heartbeat the task writes every 10 ms into
 * /alloc (CRIU's time namespace hides the freeze from CLOCK_MONOTONIC). Beside it: CRIU alone (the same dump,
 * restored on the other node straight from its directory: the floor the 1.5x target is about), and where the
 * protocol path's time went (dump + push until the checkpoint is filed, materialize, restore). Root, runc and
 * CRIU >= 4.2 needed.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { SystemClock } from '../common/clock';
import { MigrationMode, TaskSpec } from '../proto/gen/chain/v1/sidecar';
import type { Dumper } from '../sidecar/src/checkpoint/dump';
import type { PeerMigrator } from '../sidecar/src/checkpoint/migrate-to-peer';
import type { Restorer } from '../sidecar/src/checkpoint/restore';
import type { CheckpointShipper, StagedCheckpoints } from '../sidecar/src/checkpoint/staging';
import { StoreStagedCheckpoints, TransferShipper } from '../sidecar/src/checkpoint/transfer-adapters';
import { buildNodeCore } from '../sidecar/src/node-core';
import type { RuncCli } from '../sidecar/src/runtime/runc';
import type { TaskRuntime } from '../sidecar/src/runtime/task-runtime';
import { CheckpointStore } from '../sidecar/src/store/checkpoint-store';
import { TransferClient } from '../sidecar/src/transfer/client';
import { TransferServer } from '../sidecar/src/transfer/server';
import { StageTimes } from '../sidecar/src/transfer/stage-times';
import { ClusterRegistry, subnetPrefix } from '../local/cluster/registry';
import { loadTransferTls } from '../sidecar/src/transfer/tls';

const run = promisify(execFile);
const RUNC = process.env.RUNC_BIN ?? '/usr/sbin/runc';
const CRIU = process.env.CRIU_BIN ?? '/usr/local/sbin/criu';
const log = pino({ level: process.env.BENCH_LOG_LEVEL ?? 'silent' }, pino.destination(2));
/** This run's tag: names of its namespaces, links and cgroups carry it, so parallel runs never collide. */
const RUN = randomBytes(3).toString('hex');
const clock = new SystemClock();
const debug = (step: string): void => {
  if (process.env.BENCH_DEBUG) process.stderr.write(`${new Date().toISOString()} ${step}\n`);
};

// Every page written with random bytes; a wall-clock heartbeat every 10 ms; SIGUSR1 checks their sha256.
const TASK = `
import hashlib, os, signal, sys, time
size = int(sys.argv[1]) * 1024 * 1024
# Incompressible content, like a real heap: zeros would flatter every compressor.
data = bytearray(os.urandom(size))
digest = hashlib.sha256(data).digest()
def verify(*_):
    ok = hashlib.sha256(data).digest() == digest
    with open('/alloc/verify', 'w') as f:
        f.write('ok' if ok else 'bad')
signal.signal(signal.SIGUSR1, verify)
with open('/alloc/ready', 'w') as f:
    f.write('1')
# Held open and rewritten in place, like a database file: it must travel with the memory, as it was.
db = open('/alloc/db.bin', 'r+b', buffering=0)
db_size = os.fstat(db.fileno()).st_size
beat = 0
# Opened per beat: a file held open under /alloc must exist, same size, on the node that restores.
while True:
    with open('/alloc/heartbeat', 'a') as hb:
        hb.write('%.6f\\n' % time.time())
    if db_size > 0:
        db.seek((beat * 4096) % db_size)
        db.write(beat.to_bytes(8, 'little'))
    beat += 1
    time.sleep(0.01)
`;

interface Row {
  mode: string;
  rssMiB: number;
  /** Bytes of the task's files in its checkpoint, beside its memory. */
  fileBytes: number;
  downtimeMs: number;
  totalMs: number;
  wireBytes: number;
  stateIntact: boolean;
  baselineDowntimeMs: number;
  /** The floor: the project's dump (runc + CRIU) on A, restore on B straight from that directory, no transfer. */
  criuAloneDowntimeMs: number;
  /** Where the protocol path's time went, from the migration's start (the freeze starts with the dump). */
  stagesMs: { dumpAndPush: number; materialize: number; restore: number };
  /** The source's own account of the hand-over, step by step (dump, files, ship, ...). */
  sourceStepsMs: Readonly<Record<string, number>>;
  /** The target's restore, step by step (verify, files, environment, runc restore). */
  targetStepsMs: Readonly<Record<string, number>>;
  rawTcpMBps: number;
  /** Whether the source connected to the peer before the freeze. */
  connectAhead: boolean;
  /** This process's peak resident set during the hand-over (VmHWM reset at its start), and the sampled peak. */
  peakRssMiB: { hwm: number; sampled: number; before: number };
  /** Summed busy ms per transfer stage, sender's (client) and receiver's (server + store), for this hand-over. */
  transferStages: Record<string, { ms: number; bytes: number; calls: number }>;
  note?: string;
}

/** Peak RSS of this process over a span: the kernel's high-water mark, reset at the start, and a 20 ms sampler. */
class RssPeak {
  private sampled = 0;
  private readonly before = process.memoryUsage().rss;
  private readonly timer: NodeJS.Timeout;
  private readonly hwmReset: boolean;

  constructor() {
    // "5" resets VmHWM to the current RSS (Linux >= 4.0).
    this.hwmReset = (() => {
      try {
        writeFileSync('/proc/self/clear_refs', '5');
        return true;
      } catch {
        return false;
      }
    })();
    this.timer = setInterval(() => {
      this.sampled = Math.max(this.sampled, process.memoryUsage().rss);
    }, 20);
  }

  async stop(): Promise<{ hwm: number; sampled: number; before: number }> {
    clearInterval(this.timer);
    this.sampled = Math.max(this.sampled, process.memoryUsage().rss);
    const status = await readFile('/proc/self/status', 'utf8');
    const hwmKiB = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
    const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
    return { hwm: this.hwmReset ? mib(hwmKiB * 1024) : NaN, sampled: mib(this.sampled), before: mib(this.before) };
  }
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'ignore' });
}

/** Two namespaces on a bridge of their own (prefix "ncb"), addresses in 198.18.0.0/15. */
function makeNetwork(): { a: string; b: string; addrA: string; addrB: string; gateway: string; destroy(): void } {
  const tag = RUN;
  // From the local clusters' registry: a /24 drawn at random could be a cluster's or a killed run's, and both
  // networks would then be unreachable.
  const registry = new ClusterRegistry();
  const subnet = registry.claimSubnet(tag);
  const prefix = subnetPrefix(subnet);
  const bridge = `ncbb${tag}`;
  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', `${prefix}.1/24`, 'dev', bridge);
  ip('link', 'set', bridge, 'up');
  const names: string[] = [];
  for (const i of [0, 1]) {
    const ns = `ncb-${tag}-${i}`;
    const veth = `ncbv${tag}${i}`;
    ip('netns', 'add', ns);
    ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`);
    ip('link', 'set', `${veth}p`, 'netns', ns);
    ip('link', 'set', veth, 'master', bridge);
    ip('link', 'set', veth, 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', `${veth}p`, 'name', 'eth0');
    ip('-n', ns, 'addr', 'add', `${prefix}.${i + 2}/24`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    names.push(ns);
  }
  return {
    a: names[0] ?? '',
    b: names[1] ?? '',
    addrA: `${prefix}.2`,
    addrB: `${prefix}.3`,
    gateway: `${prefix}.1`,
    destroy() {
      for (const i of [0, 1]) {
        try {
          ip('link', 'del', `ncbv${tag}${i}`);
        } catch {
          // gone
        }
        try {
          ip('netns', 'del', `ncb-${tag}-${i}`);
        } catch {
          // gone
        }
      }
      try {
        ip('link', 'del', bridge);
      } catch {
        // gone
      }
      registry.releaseSubnet(subnet);
    },
  };
}

const RECEIVER = `import socket,sys
s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((sys.argv[1],int(sys.argv[2])));s.listen(1)
print('ready',flush=True)
c,_=s.accept();f=open(sys.argv[3],'wb')
while True:
    b=c.recv(1<<20)
    if not b: break
    f.write(b)
f.close()`;
const SENDER = `import socket,sys,os
c=socket.create_connection((sys.argv[1],int(sys.argv[2])));f=open(sys.argv[3],'rb')
c.sendfile(f);c.close()`;

/** Sends a file from namespace A to B over plain TCP with Python's sendfile; resolves the elapsed ms. */
async function tcpCopy(net: ReturnType<typeof makeNetwork>, file: string, out: string): Promise<number> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const receiver = spawn(
    'nsenter',
    [`--net=/run/netns/${net.b}`, '/usr/bin/python3', '-c', RECEIVER, net.addrB, String(port), out],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const received = new Promise((r) => receiver.once('exit', r));
  await new Promise<void>((r) => receiver.stdout.once('data', () => r()));
  const started = Date.now();
  await run('nsenter', [`--net=/run/netns/${net.a}`, '/usr/bin/python3', '-c', SENDER, net.addrB, String(port), file]);
  await received;
  return Date.now() - started;
}

async function rawTcpMBps(net: ReturnType<typeof makeNetwork>, dir: string): Promise<number> {
  const file = join(dir, 'raw.bin');
  await run('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=256']);
  const ms = await tcpCopy(net, file, join(dir, 'raw.out'));
  await rm(join(dir, 'raw.out'), { force: true });
  await rm(file, { force: true });
  return Math.round((256 / (ms / 1000)) * 10) / 10;
}

interface Node {
  root: string;
  runtime: TaskRuntime;
  runc: RuncCli;
  dumper: Dumper;
  restorer: Restorer;
  migrator: PeerMigrator;
}

async function makeNode(
  name: string,
  netns: string,
  root: string,
  shipper: CheckpointShipper,
  pageServerHost: string,
): Promise<Node> {
  const core = await buildNodeCore(
    {
      nodeName: name,
      dataDir: root,
      runcBin: RUNC,
      criuBin: CRIU,
      commandTimeoutMs: 120_000,
      taskNetworkNamespace: `/run/netns/${netns}`,
      cgroupParent: `/ncb-${RUN}/${name}`,
      startTimeoutMs: 300_000,
      exitPollMs: 200,
      filesMaxBytes: 0,
      filesOverLimit: 'cold-start',
      dumpTimeoutMs: 600_000,
      handoverRetentionMs: 600_000,
      lazyPagesNetns: '',
      pageServerHost,
      lazyConnectTimeoutMs: 60_000,
      lazyTransferTimeoutMs: 600_000,
    },
    { shipper, clock, log },
  );
  const { runtime, runc, dumper, restorer, migrator } = core;
  return { root, runtime, runc, dumper, restorer, migrator };
}

async function heartbeats(file: string): Promise<number[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map(Number)
    .filter((n) => Number.isFinite(n));
}

async function waitFor(path: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (
    !(await stat(path).then(
      () => true,
      () => false,
    ))
  ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${path}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Largest gap (ms) across both nodes' heartbeats, and whether the restored task's memory checks out. */
async function measure(
  b: Node,
  taskId: string,
  allocA: string,
  allocB: string,
): Promise<{ downtimeMs: number; intact: boolean }> {
  await new Promise((r) => setTimeout(r, 500));
  await b.runtime.signal(taskId, 'SIGUSR1');
  await waitFor(join(allocB, 'verify'), 120_000);
  const intact = (await readFile(join(allocB, 'verify'), 'utf8')) === 'ok';
  const beats = [
    ...(await heartbeats(join(allocA, 'heartbeat'))),
    ...(await heartbeats(join(allocB, 'heartbeat'))),
  ].sort((x, y) => x - y);
  let gap = 0;
  for (let i = 1; i < beats.length; i++) gap = Math.max(gap, (beats[i] ?? 0) - (beats[i - 1] ?? 0));
  return { downtimeMs: Math.round(gap * 1000), intact };
}

const FILES_MIB = Number(arg('files-mib', '64'));

async function startTask(node: Node, taskId: string, sizeMiB: number): Promise<string> {
  const alloc = join(node.root, 'allocs', taskId);
  await mkdir(alloc, { recursive: true });
  await writeFile(join(alloc, 'task.py'), TASK);
  await writeFile(join(alloc, 'db.bin'), randomBytes(FILES_MIB * 2 ** 20));
  await node.runtime.start(
    { taskId, allocId: taskId, taskName: 'bench', jobId: 'bench', namespace: 'default' },
    TaskSpec.fromPartial({ argv: ['/usr/bin/python3', '/alloc/task.py', String(sizeMiB)], allocDir: alloc }),
  );
  await waitFor(join(alloc, 'ready'), 300_000);
  await new Promise((r) => setTimeout(r, 300));
  return alloc;
}

async function viaProtocol(
  a: Node,
  b: Node,
  staged: StagedCheckpoints,
  peer: string,
  mode: MigrationMode,
  sizeMiB: number,
  stages: StageTimes,
  /** Tells apart the rows of one size and mode (task ids and handover keys must not repeat). */
  tag: string,
): Promise<Omit<Row, 'baselineDowntimeMs' | 'criuAloneDowntimeMs' | 'rawTcpMBps' | 'connectAhead'>> {
  const taskId = `${mode === MigrationMode.MIGRATION_MODE_LAZY ? 'lazy' : 'sac'}-${sizeMiB}-${tag}`;
  const allocA = await startTask(a, taskId, sizeMiB);
  const allocB = join(b.root, 'allocs', `${taskId}-b`);
  await mkdir(allocB, { recursive: true });
  debug(`${taskId} started`);
  stages.snapshot(true);
  const rss = new RssPeak();
  const started = Date.now();
  const migration = a.migrator.migrate({ taskId, peerAddress: peer, mode, handoverKey: `${taskId}-next` });
  // A migration that fails before the checkpoint arrives must end the wait, not leave it to its timeout.
  const info = await Promise.race([
    staged.find(`${taskId}-next`, 600_000),
    migration.then(() => staged.find(`${taskId}-next`, 0)),
  ]);
  if (!info) throw new Error('checkpoint never arrived');
  const arrived = Date.now();
  const dir = join(b.root, 'restore', info.checkpointId);
  await staged.materialize(info.checkpointId, dir);
  const materialized = Date.now();
  const restored = await b.restorer.restore({
    identity: {
      taskId: `${taskId}-b`,
      allocId: `${taskId}-b`,
      taskName: 'bench',
      jobId: 'bench',
      namespace: 'default',
    },
    checkpointDir: dir,
    spec: TaskSpec.fromPartial({ allocDir: allocB }),
    // As the sidecar's take-over does: the store checked every chunk on receipt.
    verifiedByStore: staged.materializesVerified,
  });
  const restoredAt = Date.now();
  const result = await migration;
  await restored.complete;
  const totalMs = Date.now() - started;
  const peakRssMiB = await rss.stop();
  const transferStages = stages.snapshot(true);
  await staged.delete(info.checkpointId);
  await rm(dir, { recursive: true, force: true });
  const { downtimeMs, intact } = await measure(b, `${taskId}-b`, allocA, allocB);
  await b.runtime.destroy(`${taskId}-b`, true);
  await a.runtime.destroy(taskId, true);
  return {
    mode: mode === MigrationMode.MIGRATION_MODE_LAZY ? 'lazy' : 'stop-and-copy',
    rssMiB: sizeMiB,
    fileBytes: result.meta.fileTree?.totalBytes ?? 0,
    downtimeMs,
    totalMs,
    stagesMs: {
      dumpAndPush: arrived - started,
      materialize: materialized - arrived,
      restore: restoredAt - materialized,
    },
    sourceStepsMs: result.stepsMs,
    targetStepsMs: restored.stepsMs,
    wireBytes: result.wireBytes,
    stateIntact: intact,
    peakRssMiB,
    transferStages,
    ...(mode === MigrationMode.MIGRATION_MODE_LAZY
      ? { note: 'wireBytes excludes memory pages, which CRIU page server streams' }
      : {}),
  };
}

/** The naive baseline: dump to disk, tar + gzip, copy over TCP, unpack, restore. */
async function baseline(
  a: Node,
  b: Node,
  net: ReturnType<typeof makeNetwork>,
  sizeMiB: number,
): Promise<{ downtimeMs: number; intact: boolean; totalMs: number; wireBytes: number }> {
  const taskId = `base-${sizeMiB}`;
  const allocA = await startTask(a, taskId, sizeMiB);
  const allocB = join(b.root, 'allocs', `${taskId}-b`);
  await mkdir(allocB, { recursive: true });
  const started = Date.now();
  debug('baseline task started');
  const dumped = await a.dumper.dump({ taskId, leaveRunning: false, handoverKey: taskId });
  debug('baseline dumped');
  const tarball = `${dumped.dir}.tar.gz`;
  await run('tar', ['-czf', tarball, '-C', dumped.dir, '.']);
  const received = join(b.root, `${taskId}.tar.gz`);
  await tcpCopy(net, tarball, received);
  const wireBytes = (await stat(received)).size;
  const dir = join(b.root, 'restore', taskId);
  await mkdir(dir, { recursive: true });
  await run('tar', ['-xzf', received, '-C', dir]);
  await b.restorer.restore({
    identity: {
      taskId: `${taskId}-b`,
      allocId: `${taskId}-b`,
      taskName: 'bench',
      jobId: 'bench',
      namespace: 'default',
    },
    checkpointDir: dir,
    spec: TaskSpec.fromPartial({ allocDir: allocB }),
  });
  const totalMs = Date.now() - started;
  const { downtimeMs, intact } = await measure(b, `${taskId}-b`, allocA, allocB);
  await b.runtime.destroy(`${taskId}-b`, true);
  await a.runtime.destroy(taskId, true);
  for (const path of [tarball, received, dir, dumped.dir]) await rm(path, { recursive: true, force: true });
  return { downtimeMs, intact, totalMs, wireBytes };
}

/** CRIU alone: the same dump on A, restored on B straight from its directory (same machine, no copy). */
async function criuAlone(a: Node, b: Node, sizeMiB: number): Promise<{ downtimeMs: number; intact: boolean }> {
  const taskId = `criu-${sizeMiB}`;
  const allocA = await startTask(a, taskId, sizeMiB);
  const allocB = join(b.root, 'allocs', `${taskId}-b`);
  await mkdir(allocB, { recursive: true });
  const dumped = await a.dumper.dump({ taskId, leaveRunning: false, handoverKey: taskId });
  await b.restorer.restore({
    identity: {
      taskId: `${taskId}-b`,
      allocId: `${taskId}-b`,
      taskName: 'bench',
      jobId: 'bench',
      namespace: 'default',
    },
    checkpointDir: dumped.dir,
    spec: TaskSpec.fromPartial({ allocDir: allocB }),
  });
  const measured = await measure(b, `${taskId}-b`, allocA, allocB);
  await b.runtime.destroy(`${taskId}-b`, true);
  await a.runtime.destroy(taskId, true);
  await rm(dumped.dir, { recursive: true, force: true });
  return measured;
}

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const sizes = arg('sizes', '64,512,2048').split(',').map(Number);
  const modes = arg('modes', 'stop-and-copy,lazy').split(',');
  const net = makeNetwork();
  const work = await mkdtemp(join(tmpdir(), 'ncb-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const certs = join(work, 'certs');
    await run('bash', [resolve(__dirname, '../scripts/gen-certs.sh'), certs, 'bench-a', `bench-b=${net.gateway}`]);
    debug('certs made');
    const tls = (n: string) =>
      loadTransferTls({
        caFile: join(certs, 'ca.crt'),
        certFile: join(certs, `${n}.crt`),
        keyFile: join(certs, `${n}.key`),
      });
    // One account for both ends: the stage names of sender, receiver and store do not overlap.
    const stages = new StageTimes();
    const storeB = await CheckpointStore.open({
      dir: join(work, 'store-b'),
      key: randomBytes(32),
      maxBytes: 16 * 1024 ** 3,
      logger: log,
      stages,
    });
    cleanups.push(() => storeB.close());
    const server = new TransferServer({ store: storeB, tls: await tls('bench-b'), logger: log, stages });
    // The receiving server listens on the bridge address, so chunks cross the same veth pair as the baseline.
    const port = await server.start(`${net.gateway}:0`);
    cleanups.push(() => server.stop(1000));
    const transfer = new TransferShipper(new TransferClient({ tls: await tls('bench-a'), logger: log, stages }));
    let connectAhead = true;
    const shipper: CheckpointShipper = {
      prepare: (peer) => (connectAhead ? transfer.prepare(peer) : Promise.resolve()),
      ship: (dir, meta, peer) => transfer.ship(dir, meta, peer),
    };
    const aheadChoices = { on: [true], off: [false], both: [false, true] }[arg('connect-ahead', 'on')];
    if (aheadChoices === undefined) throw new Error('--connect-ahead is on, off or both');
    const a = await makeNode('a', net.a, join(work, 'a'), shipper, net.gateway);
    const b = await makeNode('b', net.b, join(work, 'b'), shipper, net.gateway);
    cleanups.push(async () => {
      for (const node of [a, b]) {
        for (const t of node.runtime.list()) await node.runtime.destroy(t.taskId, true).catch(() => undefined);
        node.runtime.close();
      }
    });
    const staged = new StoreStagedCheckpoints(storeB);
    debug('nodes ready');
    const raw = await rawTcpMBps(net, work);
    debug('raw tcp measured');
    for (const [index, size] of sizes.entries()) {
      const base = await baseline(a, b, net, size);
      debug('baseline done');
      const floor = await criuAlone(a, b, size);
      debug('criu alone done');
      for (const mode of modes)
        // Every other size in the opposite order: the second row of a pair runs right after the first's clean-up.
        for (const ahead of index % 2 === 0 ? aheadChoices : [...aheadChoices].reverse()) {
          connectAhead = ahead;
          const row: Row = {
            ...(await viaProtocol(
              a,
              b,
              staged,
              `${net.gateway}:${port}`,
              mode === 'lazy' ? MigrationMode.MIGRATION_MODE_LAZY : MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
              size,
              stages,
              ahead ? 'ahead' : 'after',
            )),
            baselineDowntimeMs: base.downtimeMs,
            criuAloneDowntimeMs: floor.downtimeMs,
            rawTcpMBps: raw,
            connectAhead: ahead,
          };
          if (json) process.stdout.write(`${JSON.stringify(row)}\n`);
          else
            process.stdout.write(
              `${row.mode.padEnd(14)} ${ahead ? 'ahead' : 'after'} ${String(size).padStart(5)} MiB  files ${(row.fileBytes / 2 ** 20).toFixed(1).padStart(6)} MiB  downtime ${String(row.downtimeMs).padStart(6)} ms  total ${String(row.totalMs).padStart(6)} ms  wire ${(row.wireBytes / 2 ** 20).toFixed(1).padStart(7)} MiB  intact ${String(row.stateIntact)}  baseline ${base.downtimeMs} ms (${(base.wireBytes / 2 ** 20).toFixed(1)} MiB)  CRIU alone ${floor.downtimeMs} ms (x${(row.downtimeMs / Math.max(1, floor.downtimeMs)).toFixed(1)}, intact ${String(floor.intact)})  raw TCP ${raw} MB/s  peak RSS ${row.peakRssMiB.hwm} MiB (sampled ${row.peakRssMiB.sampled}, before ${row.peakRssMiB.before})\n` +
                `               stages: dump+push ${row.stagesMs.dumpAndPush} ms, materialize ${row.stagesMs.materialize} ms, restore ${row.stagesMs.restore} ms; source steps ${JSON.stringify(row.sourceStepsMs)}; target steps ${JSON.stringify(row.targetStepsMs)}\n` +
                `               transfer stages (busy ms): ${Object.entries(row.transferStages)
                  .map(([k, v]) => `${k} ${v.ms}/${v.calls}`)
                  .join(', ')}\n`,
            );
        }
    }
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    net.destroy();
    for (const dir of [
      'blkio',
      'cpu',
      'cpuacct',
      'cpuset',
      'devices',
      'freezer',
      'memory',
      'pids',
      'systemd',
      'unified',
    ]) {
      await run('find', [
        `/sys/fs/cgroup/${dir}/ncb-${RUN}`,
        '-depth',
        '-type',
        'd',
        '-exec',
        'rmdir',
        '{}',
        ';',
      ]).catch(() => undefined);
    }
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:migrate: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
