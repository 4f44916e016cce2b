import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * What the proxy does to each connection. `flip`: the client-to-server byte at offset `atByte` is inverted (a
 * chunk corrupted in flight). `cut`: the connection closes once `afterBytes` client-to-server bytes have passed
 * (a truncated stream). A connection shorter than the offset passes untouched, so handshakes and small calls
 * still work. `delay`: every byte, both ways, arrives `ms` later (a long link; this kernel has no netem).
 */
export type Flaw =
  | { readonly kind: 'flip'; readonly atByte: number }
  | { readonly kind: 'cut'; readonly afterBytes: number }
  | { readonly kind: 'delay'; readonly ms: number };

/**
 * A TCP proxy that damages the streams it forwards, the way a bad link or middlebox would: it sees only
 * bytes (TLS included), never messages. Server-to-client bytes pass unchanged but for a delay.
 */
export class FlakyProxy {
  private readonly sockets = new Set<Socket>();
  private hits = 0;
  private accepted = 0;
  private forwarded = 0;

  private constructor(
    private readonly server: Server,
    readonly address: string,
    readonly port: number,
  ) {}

  /** Listens on `address` (port chosen by the OS) and forwards every connection to `upstream`. */
  static start(address: string, upstream: { host: string; port: number }, flaw: Flaw): Promise<FlakyProxy> {
    return new Promise((resolve, reject) => {
      // Half-open: each direction ends on its own, as TCP's do, so an end never overtakes the bytes before it.
      const server = createServer({ allowHalfOpen: true });
      server.once('error', reject);
      server.listen(0, address, () => {
        const bound = server.address();
        if (typeof bound !== 'object' || bound === null) return reject(new Error('flaky proxy: no port'));
        const proxy = new FlakyProxy(server, address, bound.port);
        server.on('connection', (client) => proxy.forward(client, upstream, flaw));
        resolve(proxy);
      });
    });
  }

  /** How many connections the flaw hit (for a delay, carried data): zero means the fault proved nothing. */
  get flawed(): number {
    return this.hits;
  }

  /** Connections it took. */
  get connections(): number {
    return this.accepted;
  }

  /** Client-to-server bytes forwarded, across all connections. */
  get bytes(): number {
    return this.forwarded;
  }

  private forward(client: Socket, upstream: { host: string; port: number }, flaw: Flaw): void {
    this.accepted++;
    const server = createConnection({ ...upstream, allowHalfOpen: true });
    for (const s of [client, server]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    }
    let seen = 0;
    let cut = false;
    // Equal delays keep the stream's order: timers of one duration fire in the order they were set.
    const later = (act: () => void): void => {
      if (flaw.kind === 'delay') setTimeout(act, flaw.ms);
      else act();
    };
    // Either side failing ends both at once, as a dropped connection does; a clean close ends the other side
    // after the bytes before it.
    client.on('error', () => server.destroy());
    server.on('error', () => client.destroy());
    client.on('close', () => later(() => server.end()));
    server.on('close', () => later(() => client.end()));
    server.on('data', (chunk: Buffer) => later(() => client.write(chunk)));
    server.on('end', () => later(() => client.end()));
    client.on('end', () => later(() => server.end()));
    client.on('data', (chunk: Buffer) => {
      if (cut) return;
      const start = seen;
      seen += chunk.length;
      this.forwarded += chunk.length;
      if (flaw.kind === 'flip' && start <= flaw.atByte && flaw.atByte < seen) {
        const damaged = Buffer.from(chunk);
        const at = flaw.atByte - start;
        damaged[at] = (damaged[at] ?? 0) ^ 0xff;
        this.hits++;
        server.write(damaged);
      } else if (flaw.kind === 'cut' && seen > flaw.afterBytes) {
        cut = true;
        this.hits++;
        // The server gets the bytes up to the cut, then the end of its stream; the client a reset.
        server.end(chunk.subarray(0, flaw.afterBytes - start));
        client.resetAndDestroy();
      } else {
        if (flaw.kind === 'delay' && start === 0) this.hits++;
        later(() => server.write(chunk));
      }
    });
  }

  /** Stops listening and drops every connection it still forwards. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
