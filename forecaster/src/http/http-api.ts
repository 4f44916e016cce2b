import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../../common/logging';
import type { NodeRiskReport } from '../forecaster';
import { renderPrometheus } from './prometheus-text';
import type { MetricFamily } from './prometheus-text';

/** What the HTTP API reads; the forecaster and its parts provide it. */
export interface HttpApiSource {
  risks(): NodeRiskReport[];
  risk(node: string): NodeRiskReport | undefined;
  metrics(): MetricFamily[];
  ready(): boolean;
  /** The serving model; null before one is loaded. */
  model(): ServingModelInfo | null;
}

export interface ServingModelInfo {
  readonly version: string;
  readonly featureSpec: string;
}

/**
 * GET /metrics (Prometheus text), GET /v1/risk (the serving model's version, every node's risk, phase and the
 * reasons of its decisions),
 * GET /v1/risk/:node, GET /v1/health. Read-only: decisions are the policy's, never the API's.
 */
export class HttpApi {
  private server: Server | undefined;

  constructor(
    private readonly source: HttpApiSource,
    private readonly log: Logger,
  ) {}

  async listen(address: string, port: number): Promise<number> {
    const server = createServer((req, res) => this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return (server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    const server = this.server;
    if (server === undefined) return Promise.resolve();
    this.server = undefined;
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://forecaster');
    if (req.method !== 'GET') {
      this.send(res, 405, { error: 'method not allowed' }, { allow: 'GET' });
      return;
    }
    try {
      if (url.pathname === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(renderPrometheus(this.source.metrics()));
      } else if (url.pathname === '/v1/risk') {
        this.send(res, 200, { model: this.source.model(), nodes: this.source.risks() });
      } else if (url.pathname.startsWith('/v1/risk/')) {
        const node = decodeURIComponent(url.pathname.slice('/v1/risk/'.length));
        const report = this.source.risk(node);
        if (report === undefined) this.send(res, 404, { error: `node ${node} is not tracked` });
        else this.send(res, 200, report);
      } else if (url.pathname === '/v1/health') {
        const ready = this.source.ready();
        this.send(res, ready ? 200 : 503, { ready, model: this.source.model() });
      } else {
        this.send(res, 404, { error: 'not found' });
      }
    } catch (err) {
      this.log.error({ err, path: url.pathname }, 'http request failed');
      this.send(res, 500, { error: 'internal error' });
    }
  }

  private send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }
}
