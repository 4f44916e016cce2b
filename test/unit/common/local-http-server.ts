import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  url: URL;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export type Handler = (req: SeenRequest, res: ServerResponse, raw: IncomingMessage) => void;

/** A loopback HTTP server on an OS-chosen port that records requests and answers through `handler`. */
export class LocalHttpServer {
  readonly seen: SeenRequest[] = [];
  handler: Handler = (_req, res) => {
    res.writeHead(500).end('no handler');
  };

  private constructor(private readonly server: http.Server) {}

  static async start(): Promise<LocalHttpServer> {
    const server = http.createServer();
    const fake = new LocalHttpServer(server);
    server.on('request', (raw: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      raw.on('data', (c: Buffer) => chunks.push(c));
      raw.on('end', () => {
        const seen = {
          method: raw.method ?? '',
          url: new URL(raw.url ?? '/', 'http://127.0.0.1'),
          headers: raw.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        };
        fake.seen.push(seen);
        fake.handler(seen, res, raw);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get address(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  json(status: number, body: unknown, headers: Record<string, string> = {}): Handler {
    return (_req, res) => {
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers }).end(JSON.stringify(body));
    };
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A TCP listener that drops every connection at once: "unreachable" without racing for a freed port. */
export async function startDroppingServer(): Promise<{ address: string; close: () => Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
