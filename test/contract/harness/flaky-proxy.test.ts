import { once } from 'node:events';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { FlakyProxy, type Flaw } from '../../harness/flaky-proxy';

// The fault matrix's proxy (test/harness/flaky-proxy.ts) must damage exactly what it says: a cell that passes
// because the proxy forwarded clean bytes would prove nothing.

/** An upstream that echoes what it gets and records it, with whether its stream ended. */
class Upstream {
  readonly received: Buffer[] = [];
  ended = false;
  /** Resolves once its (one) connection has closed: everything the proxy sent has arrived. */
  readonly closed: Promise<void>;
  private markClosed: () => void = () => undefined;

  private constructor(readonly server: Server) {
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  static async start(): Promise<Upstream> {
    const server = createServer();
    const upstream = new Upstream(server);
    server.on('connection', (socket) => {
      socket.on('data', (chunk: Buffer) => {
        upstream.received.push(chunk);
        socket.write(chunk);
      });
      socket.on('end', () => {
        upstream.ended = true;
        socket.end();
      });
      socket.on('error', () => undefined);
      socket.on('close', () => upstream.markClosed());
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return upstream;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get bytes(): Buffer {
    return Buffer.concat(this.received);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Sends `payload` through the proxy, half-closes, and collects what comes back until the connection ends. */
async function exchange(proxy: FlakyProxy, payload: Buffer): Promise<{ echoed: Buffer; error?: string }> {
  const socket: Socket = createConnection({ host: proxy.address, port: proxy.port });
  const echoed: Buffer[] = [];
  let error: string | undefined;
  socket.on('data', (chunk: Buffer) => echoed.push(chunk));
  socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code));
  const closed = new Promise((resolve) => socket.on('close', resolve));
  socket.end(payload);
  await closed;
  return { echoed: Buffer.concat(echoed), ...(error !== undefined ? { error } : {}) };
}

const payload = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251));

describe('FlakyProxy', () => {
  let upstream: Upstream;
  let proxy: FlakyProxy | undefined;

  beforeEach(async () => {
    upstream = await Upstream.start();
  });

  afterEach(async () => {
    await proxy?.stop();
    proxy = undefined;
    await upstream.close();
  });

  const start = async (flaw: Flaw): Promise<FlakyProxy> => {
    proxy = await FlakyProxy.start('127.0.0.1', { host: '127.0.0.1', port: upstream.port }, flaw);
    return proxy;
  };

  it('flips exactly the byte at the offset of the client-to-server stream, nothing else', async () => {
    const p = await start({ kind: 'flip', atByte: 1000 });
    await exchange(p, payload);
    await upstream.closed;
    const expected = Buffer.from(payload);
    expected[1000] = (expected[1000] ?? 0) ^ 0xff;
    expect(upstream.bytes.equals(expected)).toBe(true);
    expect(p.flawed).toBe(1);
    expect(p.bytes).toBe(payload.length);
  });

  it('passes a stream shorter than the offset untouched, and counts it as unflawed', async () => {
    const p = await start({ kind: 'flip', atByte: payload.length });
    const { echoed } = await exchange(p, payload);
    await upstream.closed;
    expect(upstream.bytes.equals(payload)).toBe(true);
    expect(echoed.equals(payload)).toBe(true);
    expect(p.flawed).toBe(0);
  });

  it('cuts a stream after exactly the given bytes: the server sees them and an end, the client a reset', async () => {
    const p = await start({ kind: 'cut', afterBytes: 1500 });
    const { error } = await exchange(p, payload);
    await upstream.closed;
    expect(upstream.ended).toBe(true);
    expect(upstream.bytes.equals(payload.subarray(0, 1500))).toBe(true);
    expect(error).toBe('ECONNRESET');
    expect(p.flawed).toBe(1);
  });

  it('delays without reordering or changing a byte, both ways', async () => {
    const p = await start({ kind: 'delay', ms: 20 });
    const { echoed } = await exchange(p, payload);
    await upstream.closed;
    expect(upstream.bytes.equals(payload)).toBe(true);
    expect(echoed.equals(payload)).toBe(true);
    expect(p.flawed).toBe(1);
  });
});
