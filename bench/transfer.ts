/**
 * State Transfer Protocol benchmark: pushes a checkpoint-like directory (zero pages, random pages,
 * repetitive text) between a client and a server over mutual TLS, beside raw TCP measured in the same run
 * between the same endpoints, then pushes again after 5 % of the bytes changed. One JSON line per run.
 *
 *   npm run bench:transfer -- [--size-mib 512] [--data random,mixed] [--no-netns] [--no-loopback]
 *     [--cpu-prof-dir DIR]   (each side's V8 CPU profile)
 *
 * `--data random` is incompressible memory (every page random: the 80 % of raw TCP target); `mixed` cycles
 * zero pages, random pages and repetitive text. Each run also prints where the time went, stage by stage:
 * busy milliseconds per stage on the sender (read, chunk, hash, compress, send) and on the receiver
 * (decompress, verify, store-encrypt, store-write), then materialize (read, decrypt, verify, write), with
 * each process's CPU seconds; concurrent stages can sum to more than the wall clock.
 *
 * Runs on loopback, and between two network namespaces (198.18.0.0/15 addresses, the local cluster's
 * ClusterNetwork) when root. Targets: protocol >= 70 % of raw TCP; incremental <= 10 % of the first push.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { ClusterNetwork } from '../local/cluster/network';
import { ClusterRegistry, subnetPrefix } from '../local/cluster/registry';
import { CheckpointStore } from '../sidecar/src/store/checkpoint-store';
import { TransferClient } from '../sidecar/src/transfer/client';
import { TransferServer } from '../sidecar/src/transfer/server';
import { StageTimes } from '../sidecar/src/transfer/stage-times';
import { loadTransferTls } from '../sidecar/src/transfer/tls';
import { makeCerts, mutate, removeAll, tempDir } from '../test/contract/transfer/fixtures';

const MiB = 1024 * 1024;
const REPO = resolve(__dirname, '..');

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** 4 MiB segments cycling zero pages, random pages and repetitive text: roughly a heap-heavy process image. */
async function makeImage(dir: string, sizeBytes: number, data: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const text = Buffer.from(
    Array.from({ length: (4 * MiB) / 64 }, (_, i) =>
      `{"id":${i},"name":"user-${i % 977}","ok":true,"tags":["a","b"]}\n`.padEnd(64, ' '),
    ).join(''),
  );
  const files = [
    { name: 'pages-1.img', bytes: Math.floor(sizeBytes * 0.75) },
    { name: 'pages-2.img', bytes: sizeBytes - Math.floor(sizeBytes * 0.75) - 64 * 1024 },
    { name: 'pagemap-1.img', bytes: 48 * 1024 },
    { name: 'core-1.img', bytes: 16 * 1024 },
  ];
  const segment = Buffer.allocUnsafe(4 * MiB);
  for (const file of files) {
    const handle = await open(join(dir, file.name), 'w');
    for (let off = 0, s = 0; off < file.bytes; off += segment.length, s += 1) {
      const kind = data === 'random' ? 1 : s % 3;
      if (kind === 0) segment.fill(0);
      else if (kind === 1) randomFillSync(segment);
      else text.copy(segment);
      await handle.write(segment, 0, Math.min(segment.length, file.bytes - off));
    }
    await handle.close();
  }
  return files.map((f) => join(dir, f.name));
}

/** Raw TCP: `bytes` from a reused buffer to a server that discards them; MB/s (10^6). */
async function rawTcp(host: string, port: number, bytes: number): Promise<number> {
  const buf = randomBytes(MiB);
  const socket = createConnection({ host, port });
  await new Promise<void>((ok, fail) => socket.once('connect', ok).once('error', fail));
  const started = process.hrtime.bigint();
  for (let sent = 0; sent < bytes; sent += buf.length) {
    if (!socket.write(buf)) await new Promise((ok) => socket.once('drain', ok));
  }
  await new Promise<void>((ok) => socket.end(ok));
  await new Promise((ok) => socket.once('close', ok));
  return bytes / 1e6 / (Number(process.hrtime.bigint() - started) / 1e9);
}

function sinkServer(host: string): Promise<{ port: number; close: () => void }> {
  return new Promise((ok) => {
    const server = createServer((socket) => socket.on('data', () => undefined).on('end', () => socket.end()));
    server.listen(0, host, () => {
      const address = server.address();
      ok({ port: typeof address === 'object' && address !== null ? address.port : 0, close: () => server.close() });
    });
  });
}

interface PushFigures {
  seconds: number;
  stages: Record<string, unknown>;
  cpuSeconds: number;
  plainBytes: number;
  wireBytes: number;
  sentChunks: number;
  skippedChunks: number;
  codecs: Record<string, number>;
  peakInFlightBytes: number;
}

/** Client side of a run: pushes twice (full, then after a 5 % change) and measures raw TCP in between. */
async function clientRun(opts: {
  tlsDir: string;
  imageDir: string;
  host: string;
  transferPort: number;
  sinkPort: number;
}): Promise<Record<string, unknown>> {
  const tls = await loadTransferTls({
    caFile: join(opts.tlsDir, 'ca.crt'),
    certFile: join(opts.tlsDir, 'a.crt'),
    keyFile: join(opts.tlsDir, 'a.key'),
  });
  const stages = new StageTimes();
  const client = new TransferClient({ tls, logger: pino({ level: 'silent' }), stages });
  const files = (await readFile(join(opts.imageDir, '.files'), 'utf8')).split('\n');
  const peer = `${opts.host}:${opts.transferPort}`;
  const push = async (key: string): Promise<PushFigures> => {
    stages.snapshot(true);
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    const r = await client.push(peer, { directory: opts.imageDir }, { handoverKey: key });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const used = process.cpuUsage(cpu);
    return {
      seconds,
      stages: stages.snapshot(true),
      cpuSeconds: +((used.user + used.system) / 1e6).toFixed(2),
      plainBytes: r.plainBytes,
      wireBytes: r.wireBytes,
      sentChunks: r.sentChunks,
      skippedChunks: r.skippedChunks,
      codecs: { ...r.codecs },
      peakInFlightBytes: r.peakInFlightBytes,
    };
  };
  const totalBytes = Number(await readFile(join(opts.imageDir, '.bytes'), 'utf8'));
  const rawBefore = await rawTcp(opts.host, opts.sinkPort, totalBytes);
  const first = await push('bench-1');
  const rawAfter = await rawTcp(opts.host, opts.sinkPort, totalBytes);
  let changed = 0;
  for (const file of files)
    if (file.endsWith('.img')) changed += await mutate(file, 0.05, 256 * 1024, `bench-${Date.now()}`);
  const second = await push('bench-2');
  const rawTcpMBps = (rawBefore + rawAfter) / 2;
  const protocolMBps = first.plainBytes / 1e6 / first.seconds;
  return {
    plainMiB: +(first.plainBytes / MiB).toFixed(1),
    rawTcpMBps: +rawTcpMBps.toFixed(0),
    rawTcpSamplesMBps: [+rawBefore.toFixed(0), +rawAfter.toFixed(0)],
    protocolMBps: +protocolMBps.toFixed(0),
    protocolWireMBps: +(first.wireBytes / 1e6 / first.seconds).toFixed(0),
    ratioOfRawTcp: +(protocolMBps / rawTcpMBps).toFixed(3),
    seconds: +first.seconds.toFixed(2),
    senderCpuSeconds: first.cpuSeconds,
    senderStages: first.stages,
    wireBytes: first.wireBytes,
    sentChunks: first.sentChunks,
    dedupedChunks: first.skippedChunks,
    codecs: Object.fromEntries(Object.entries(first.codecs).map(([k, v]) => [k, +(v / MiB).toFixed(1)])),
    codecsUnit: 'MiB of plain bytes',
    peakInFlightBytes: first.peakInFlightBytes,
    incremental: {
      changedFraction: +(changed / first.plainBytes).toFixed(4),
      changePattern: '256 KiB runs spread evenly over every image file',
      wireBytes: second.wireBytes,
      sentChunks: second.sentChunks,
      seconds: +second.seconds.toFixed(2),
      ratioToFirst: +(second.wireBytes / first.wireBytes).toFixed(4),
      ratioToPlain: +(second.wireBytes / first.plainBytes).toFixed(4),
    },
  };
}

/** Server side of a run: a TransferServer and a TCP sink on `host`; prints its ports as one JSON line. */
async function serverRun(
  tlsDir: string,
  storeDir: string,
  host: string,
): Promise<{ transferPort: number; sinkPort: number; stop: () => Promise<void> }> {
  const tls = await loadTransferTls({
    caFile: join(tlsDir, 'ca.crt'),
    certFile: join(tlsDir, 'b.crt'),
    keyFile: join(tlsDir, 'b.key'),
  });
  const logger = pino({ level: 'silent' });
  const stages = new StageTimes();
  const store = await CheckpointStore.open({
    dir: storeDir,
    key: randomBytes(32),
    maxBytes: 8 * 1024 * MiB,
    logger,
    stages,
  });
  const server = new TransferServer({ store, tls, logger, stages });
  // The receiver's account of a push runs from its first chunk query to its commit; one JSON line per commit.
  let cpu: NodeJS.CpuUsage | undefined;
  const claim = store.claimChunks.bind(store);
  store.claimChunks = (digests) => {
    if (cpu === undefined) {
      stages.snapshot(true);
      cpu = process.cpuUsage();
    }
    return claim(digests);
  };
  const commit = store.commit.bind(store);
  store.commit = async (info, manifest) => {
    const filed = await commit(info, manifest);
    const used = process.cpuUsage(cpu);
    cpu = undefined;
    const line = { commit: info.handoverKey, cpuSeconds: +((used.user + used.system) / 1e6).toFixed(2) };
    process.stdout.write(`${JSON.stringify({ ...line, stages: stages.snapshot(true) })}\n`);
    return filed;
  };
  // "materialize KEY": writes that checkpoint out as a restore would, and reports where the time went.
  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    const [verb, key] = line.split(' ');
    if (verb !== 'materialize' || key === undefined) return;
    void (async () => {
      const info = await store.find(key, 0);
      if (info === undefined) throw new Error(`no checkpoint under ${key}`);
      const target = join(storeDir, `../materialized-${key}`);
      stages.snapshot(true);
      const used = process.cpuUsage();
      const started = process.hrtime.bigint();
      await store.materialize(info.checkpointId, target);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const cpuUsed = process.cpuUsage(used);
      await removeAll(target);
      const figures = { seconds: +seconds.toFixed(2), cpuSeconds: +((cpuUsed.user + cpuUsed.system) / 1e6).toFixed(2) };
      process.stdout.write(`${JSON.stringify({ materialized: key, ...figures, stages: stages.snapshot(true) })}\n`);
    })().catch((err: unknown) =>
      process.stdout.write(`${JSON.stringify({ materialized: key, error: String(err) })}\n`),
    );
  });
  const transferPort = await server.start(`${host}:0`);
  const sink = await sinkServer(host);
  return {
    transferPort,
    sinkPort: sink.port,
    stop: async () => {
      sink.close();
      await server.stop();
      await store.close();
    },
  };
}

/** This script in another process (inside `netns` when given): each side of a push is its own sidecar. */
function nsNode(netns: string | undefined, args: string[]): ReturnType<typeof spawn> {
  const profile = arg('cpu-prof-dir');
  const prof = profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profile}`];
  const node = [process.execPath, ...prof, '-r', join(REPO, 'scripts/register.js'), __filename, ...args];
  const argv = netns === undefined ? node : ['nsenter', `--net=/run/netns/${netns}`, ...node];
  return spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
}

async function firstLine(child: ReturnType<typeof spawn>): Promise<Record<string, unknown>> {
  return new ChildLines(child).next();
}

/** A child's stdout as JSON lines, read one at a time. */
class ChildLines {
  private readonly queue: Record<string, unknown>[] = [];
  private waiter: ((line: Record<string, unknown> | undefined) => void) | undefined;
  private closed = false;

  constructor(child: ReturnType<typeof spawn>) {
    if (child.stdout === null) throw new Error('child has no stdout');
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      const waiter = this.waiter;
      this.waiter = undefined;
      if (waiter !== undefined) waiter(parsed);
      else this.queue.push(parsed);
    });
    lines.on('close', () => {
      this.closed = true;
      this.waiter?.(undefined);
    });
  }

  async next(): Promise<Record<string, unknown>> {
    const queued = this.queue.shift();
    if (queued !== undefined) return queued;
    if (this.closed) throw new Error('child exited without output');
    const line = await new Promise<Record<string, unknown> | undefined>((resolve) => (this.waiter = resolve));
    if (line === undefined) throw new Error('child exited without output');
    return line;
  }
}

/** After a client run: the receiver's account of each push, then materialize of the first checkpoint. */
async function receiverFigures(server: ReturnType<typeof spawn>, lines: ChildLines): Promise<Record<string, unknown>> {
  const first = await lines.next();
  const second = await lines.next();
  server.stdin?.write('materialize bench-1\n');
  const materialize = await lines.next();
  return {
    receiverCpuSeconds: first.cpuSeconds,
    receiverStages: first.stages,
    incrementalReceiverCpuSeconds: second.cpuSeconds,
    materialize,
  };
}

async function netnsRun(root: string, tlsDir: string, imageDir: string): Promise<Record<string, unknown>> {
  const tag = randomBytes(2).toString('hex');
  // From the local clusters' registry: a /24 drawn at random could be a cluster's or a killed run's, and both
  // networks would then be unreachable.
  const registry = new ClusterRegistry();
  const subnet = registry.claimSubnet(tag);
  const network = new ClusterNetwork(`nca2br${tag}`, subnetPrefix(subnet));
  const nodes = [`nca2-${tag}-a`, `nca2-${tag}-b`];
  const veths = [`nca2${tag}a`, `nca2${tag}b`];
  try {
    await network.createBridge();
    await network.addNode(nodes[0] as string, veths[0] as string, 0);
    await network.addNode(nodes[1] as string, veths[1] as string, 1);
    const serverHost = network.addressOf(1);
    // The server's certificate must name the address the client dials.
    await makeCerts(tlsDir, [`b=${serverHost}`]);
    const server = nsNode(nodes[1], serverArgs(tlsDir, join(root, `store-ns-${tag}`), serverHost));
    try {
      const lines = new ChildLines(server);
      const ports = await lines.next();
      const client = nsNode(nodes[0], [
        '--role',
        'client',
        '--tls',
        tlsDir,
        '--image',
        imageDir,
        '--host',
        serverHost,
        '--transfer-port',
        String(ports.transferPort),
        '--sink-port',
        String(ports.sinkPort),
      ]);
      const figures = await firstLine(client);
      const receiver = await receiverFigures(server, lines);
      return { path: `netns ${network.addressOf(0)} -> ${serverHost} (veth + bridge)`, ...figures, ...receiver };
    } finally {
      server.kill('SIGTERM');
    }
  } finally {
    for (let i = 0; i < nodes.length; i += 1) await network.removeNode(nodes[i] as string, veths[i] as string);
    await network.removeBridge();
    registry.releaseSubnet(subnet);
  }
}

function serverArgs(tlsDir: string, storeDir: string, host: string): string[] {
  return ['--role', 'server', '--tls', tlsDir, '--store', storeDir, '--host', host];
}

async function loopbackRun(root: string, tlsDir: string, imageDir: string): Promise<Record<string, unknown>> {
  const server = nsNode(
    undefined,
    serverArgs(tlsDir, join(root, `store-lo-${randomBytes(2).toString('hex')}`), '127.0.0.1'),
  );
  try {
    const lines = new ChildLines(server);
    const ports = await lines.next();
    const figures = await clientRun({
      tlsDir,
      imageDir,
      host: '127.0.0.1',
      transferPort: Number(ports.transferPort),
      sinkPort: Number(ports.sinkPort),
    });
    const receiver = await receiverFigures(server, lines);
    return { path: 'loopback 127.0.0.1, server in a child process', ...figures, ...receiver };
  } finally {
    server.kill('SIGTERM');
  }
}

type StageAccount = Record<string, { ms: number; bytes: number; calls: number }>;

/** The stage table: one row per stage, busy ms and MB/s through it while busy. */
function stageTable(run: Record<string, unknown>): string {
  const rows: string[] = [];
  const add = (side: string, stages: unknown): void => {
    for (const [stage, e] of Object.entries((stages ?? {}) as StageAccount)) {
      const rate = e.bytes > 0 && e.ms > 0 ? (e.bytes / 1e6 / (e.ms / 1e3)).toFixed(0) : '';
      rows.push(
        `#   ${side.padEnd(12)} ${stage.padEnd(24)} ${e.ms.toFixed(0).padStart(7)} ms ${rate.padStart(7)} MB/s`,
      );
    }
  };
  const materialize = (run.materialize ?? {}) as { seconds?: number; cpuSeconds?: number; stages?: unknown };
  rows.unshift(
    `# ${String(run.data)} ${String(run.path)}: ${String(run.protocolMBps)} MB/s plain = ${String(run.ratioOfRawTcp)} of raw TCP ` +
      `${String(run.rawTcpMBps)} MB/s; push ${String(run.seconds)} s wall, sender CPU ${String(run.senderCpuSeconds)} s, ` +
      `receiver CPU ${String(run.receiverCpuSeconds)} s; materialize ${String(materialize.seconds)} s wall, CPU ${String(materialize.cpuSeconds)} s`,
  );
  add('sender', run.senderStages);
  add('receiver', run.receiverStages);
  add('materialize', materialize.stages);
  return `${rows.join('\n')}\n`;
}

async function main(): Promise<void> {
  const role = arg('role');
  if (role === 'server') {
    const s = await serverRun(arg('tls') as string, arg('store') as string, arg('host') as string);
    process.stdout.write(`${JSON.stringify({ transferPort: s.transferPort, sinkPort: s.sinkPort })}\n`);
    process.once('SIGTERM', () => void s.stop().then(() => process.exit(0)));
    return;
  }
  if (role === 'client') {
    const figures = await clientRun({
      tlsDir: arg('tls') as string,
      imageDir: arg('image') as string,
      host: arg('host') as string,
      transferPort: Number(arg('transfer-port')),
      sinkPort: Number(arg('sink-port')),
    });
    process.stdout.write(`${JSON.stringify(figures)}\n`);
    return;
  }

  const sizeBytes = Number(arg('size-mib') ?? 512) * MiB;
  const kinds = (arg('data') ?? 'random,mixed').split(',');
  const netns = !process.argv.includes('--no-netns');
  if (netns && process.getuid?.() !== 0) throw new Error('the network-namespace run needs root (or pass --no-netns)');
  const root = await tempDir('bench');
  try {
    const tlsDir = join(root, 'tls');
    await makeCerts(tlsDir, ['a', 'b']);
    const make = async (name: string, data: string): Promise<string> => {
      const dir = join(root, name);
      const files = await makeImage(dir, sizeBytes, data);
      await writeFile(join(dir, '.files'), files.join('\n'));
      await writeFile(join(dir, '.bytes'), String(sizeBytes));
      return dir;
    };
    const common = { bench: 'transfer', sizeMiB: sizeBytes / MiB, node: process.version, cpus: 2 };
    for (const data of kinds) {
      const runs: [string, (tls: string, image: string) => Promise<Record<string, unknown>>][] = [];
      if (!process.argv.includes('--no-loopback')) runs.push(['lo', (tls, image) => loopbackRun(root, tls, image)]);
      if (netns) runs.push(['ns', (tls, image) => netnsRun(root, tls, image)]);
      for (const [name, run] of runs) {
        const imageDir = await make(`image-${name}-${data}`, data);
        try {
          const figures = {
            ...common,
            data,
            loadAvg: loadavg().map((l) => +l.toFixed(2)),
            ...(await run(tlsDir, imageDir)),
          };
          process.stdout.write(`${JSON.stringify(figures)}\n`);
          process.stdout.write(stageTable(figures));
        } finally {
          await removeAll(imageDir);
        }
      }
    }
  } finally {
    await removeAll(root);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:transfer failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
