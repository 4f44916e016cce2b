/**
 * State Transfer Protocol benchmark: pushes a checkpoint-like directory (zero pages, random pages,
 * repetitive text) between a client and a server over mutual TLS, beside raw TCP measured in the same run
 * between the same endpoints, then pushes again after 5 % of the bytes changed. One JSON line per run.
 *
 *   npm run bench:transfer -- [--size-mib 512] [--no-netns]
 *
 * Runs on loopback, and between two network namespaces (198.18.0.0/15 addresses, the local cluster's
 * ClusterNetwork) when root. Targets: protocol >= 70 % of raw TCP; incremental <= 10 % of the first push.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { ClusterNetwork } from '../common/local-cluster/network';
import { CheckpointStore } from '../sidecar/src/store/checkpoint-store';
import { TransferClient } from '../sidecar/src/transfer/client';
import { TransferServer } from '../sidecar/src/transfer/server';
import { loadTransferTls } from '../sidecar/src/transfer/tls';
import { makeCerts, mutate, removeAll, tempDir } from '../test/contract/transfer/fixtures';

const MiB = 1024 * 1024;
const REPO = resolve(__dirname, '..');

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** 4 MiB segments cycling zero pages, random pages and repetitive text: roughly a heap-heavy process image. */
async function makeImage(dir: string, sizeBytes: number): Promise<string[]> {
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
      const kind = s % 3;
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
  const client = new TransferClient({ tls, logger: pino({ level: 'silent' }) });
  const files = (await readFile(join(opts.imageDir, '.files'), 'utf8')).split('\n');
  const peer = `${opts.host}:${opts.transferPort}`;
  const push = async (key: string): Promise<PushFigures> => {
    const started = process.hrtime.bigint();
    const r = await client.push(peer, { directory: opts.imageDir }, { handoverKey: key });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return {
      seconds,
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
  const second = await push('bench-1');
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
  const store = await CheckpointStore.open({ dir: storeDir, key: randomBytes(32), maxBytes: 8 * 1024 * MiB, logger });
  const server = new TransferServer({ store, tls, logger });
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
  const node = [process.execPath, '-r', join(REPO, 'scripts/register.js'), __filename, ...args];
  const argv = netns === undefined ? node : ['nsenter', `--net=/run/netns/${netns}`, ...node];
  return spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function firstLine(child: ReturnType<typeof spawn>): Promise<Record<string, unknown>> {
  if (child.stdout === null) throw new Error('child has no stdout');
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) return JSON.parse(line) as Record<string, unknown>;
  throw new Error('child exited without output');
}

async function netnsRun(root: string, tlsDir: string, imageDir: string): Promise<Record<string, unknown>> {
  const tag = randomBytes(2).toString('hex');
  const network = new ClusterNetwork(`nca2br${tag}`, `198.19.${200 + (parseInt(tag, 16) % 50)}`);
  const nodes = [`nca2-${tag}-a`, `nca2-${tag}-b`];
  const veths = [`nca2${tag}a`, `nca2${tag}b`];
  try {
    await network.createBridge();
    await network.addNode(nodes[0] as string, veths[0] as string, 0);
    await network.addNode(nodes[1] as string, veths[1] as string, 1);
    const serverHost = network.addressOf(1);
    // The server's certificate must name the address the client dials.
    await makeCerts(tlsDir, [`b=${serverHost}`]);
    const server = nsNode(nodes[1], [
      '--role',
      'server',
      '--tls',
      tlsDir,
      '--store',
      join(root, 'store-ns'),
      '--host',
      serverHost,
    ]);
    try {
      const ports = await firstLine(server);
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
      return { path: `netns ${network.addressOf(0)} -> ${serverHost} (veth + bridge)`, ...figures };
    } finally {
      server.kill('SIGTERM');
    }
  } finally {
    for (let i = 0; i < nodes.length; i += 1) await network.removeNode(nodes[i] as string, veths[i] as string);
    await network.removeBridge();
  }
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
  const root = await tempDir('bench');
  try {
    const tlsDir = join(root, 'tls');
    await makeCerts(tlsDir, ['a', 'b']);
    const make = async (name: string): Promise<string> => {
      const dir = join(root, name);
      const files = await makeImage(dir, sizeBytes);
      await writeFile(join(dir, '.files'), files.join('\n'));
      await writeFile(join(dir, '.bytes'), String(sizeBytes));
      return dir;
    };
    const common = { bench: 'transfer', sizeMiB: sizeBytes / MiB, node: process.version, cpus: 2 };
    {
      const imageDir = await make('image-lo');
      const server = nsNode(undefined, [
        '--role',
        'server',
        '--tls',
        tlsDir,
        '--store',
        join(root, 'store-lo'),
        '--host',
        '127.0.0.1',
      ]);
      try {
        const ports = await firstLine(server);
        const figures = await clientRun({
          tlsDir,
          imageDir,
          host: '127.0.0.1',
          transferPort: Number(ports.transferPort),
          sinkPort: Number(ports.sinkPort),
        });
        process.stdout.write(
          `${JSON.stringify({ ...common, path: 'loopback 127.0.0.1, server in a child process', ...figures })}\n`,
        );
      } finally {
        server.kill('SIGTERM');
        await removeAll(imageDir);
      }
    }
    if (!process.argv.includes('--no-netns')) {
      if (process.getuid?.() !== 0) throw new Error('the network-namespace run needs root (or pass --no-netns)');
      const imageDir = await make('image-ns');
      const figures = await netnsRun(root, tlsDir, imageDir);
      process.stdout.write(`${JSON.stringify({ ...common, ...figures })}\n`);
    }
  } finally {
    await removeAll(root);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:transfer failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
