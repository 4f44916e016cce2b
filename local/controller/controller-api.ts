import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { errorCode, errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logging';
import type { JobRunner } from '../job/job-runner';
import type { WebView } from '../web/web-view';
import type { LocalController } from './local-controller';

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      try {
        resolve(body.trim() === '' ? {} : (JSON.parse(body) as Record<string, unknown>));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

const NOT_FOUND = new Set(['NC_CLUSTER_NO_NODE', 'NC_CONTROLLER_NO_RESERVATION', 'NC_JOB_NOT_RUNNING']);
/** A job file local mode cannot run, or a job already running: the request's fault, not the controller's. */
const REFUSED = new Set(['NC_JOB_FILE_INVALID', 'NC_JOB_UNSUPPORTED', 'NC_JOB_FIELD_INVALID']);
const CONFLICT = new Set(['NC_JOB_ALREADY_RUNNING']);

function statusOf(err: unknown): number {
  const code = errorCode(err) ?? '';
  if (NOT_FOUND.has(code)) return 404;
  if (REFUSED.has(code)) return 400;
  return CONFLICT.has(code) ? 409 : 500;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

/**
 * The local controller's HTTP API on loopback, shaped after Nomad's (`/v1/nodes`, `/v1/node/:id/drain`,
 * `/v1/node/:id/eligibility`, `/v1/jobs`, `/v1/job/:id`; `/v1/node/:id/reserve` and `/v1/node/:id/prestage` are local
 * mode's own) so `npm run cluster -- drain NODE` feels like `nomad node drain`. A job is given as its file's path
 * (`{"path", "baseDir"}`): the API listens on loopback only, for commands run on this machine. Given a `WebView`, it
 * also serves the live page of local mode at `/ui` (local/web/).
 */
export class ControllerApi {
  private server: Server | undefined;

  constructor(
    private readonly controller: LocalController,
    private readonly log: Logger,
    private readonly heartbeatMs = 10_000,
    private readonly jobs?: JobRunner,
    private readonly web?: WebView,
  ) {}

  listen(port = 0): Promise<number> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.warn({ err, url: req.url }, 'controller API request failed');
        send(res, statusOf(err), {
          error: errorMessage(err),
          code: errorCode(err),
        });
      });
    });
    this.server = server;
    return new Promise((resolve) => {
      server.listen(port, '127.0.0.1', () => {
        const address = server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : 0);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
  }

  /** ndjson, one `{"Index":N,"Event":{…}}` per event, `{}` as a heartbeat, resumable from `index` (like Nomad's). */
  private stream(req: IncomingMessage, res: ServerResponse, index: number): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const write = (e: { index: number; event: unknown }): void =>
      void res.write(`${JSON.stringify({ Index: e.index, Event: e.event })}\n`);
    res.write('{}\n');
    for (const e of this.controller.events.since(index)) write(e);
    const unsubscribe = this.controller.events.subscribe(write);
    const heartbeat = setInterval(() => res.write('{}\n'), this.heartbeatMs);
    req.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
    });
  }

  /** A replay's trace node with no local node behind it: the action does nothing, and the answer says so. */
  private virtual(res: ServerResponse, node: string, action: string): void {
    const detail = `${node} is a replay node with no local node (virtual or gone): ${action} did nothing`;
    this.log.info({ node, action }, 'action on a virtual node ignored');
    if (action === 'reserve') return send(res, 200, { id: '', node, targets: [], tasks: 0, virtual: true, detail });
    if (action === 'drain') return send(res, 200, []);
    send(res, 200, { node, virtual: true, detail });
  }

  /** `nomad job run | status | stop`, local mode's way. */
  private async job(req: IncomingMessage, res: ServerResponse, parts: readonly string[]): Promise<void> {
    const jobs = this.jobs;
    if (jobs === undefined) return;
    const name = parts[2];
    if (req.method === 'GET' && parts[1] === 'jobs') return send(res, 200, jobs.status());
    if (req.method === 'GET' && name !== undefined) return send(res, 200, jobs.status(name)[0]);
    if (req.method === 'DELETE' && name !== undefined) return send(res, 200, await jobs.stop(name));
    if (req.method === 'POST' && parts[1] === 'jobs') {
      const body = await readJson(req);
      if (typeof body.path !== 'string' || !body.path.startsWith('/'))
        return send(res, 400, { error: 'path (the job file, absolute) is required' });
      const baseDir = typeof body.baseDir === 'string' && body.baseDir.startsWith('/') ? body.baseDir : '/';
      return send(res, 200, await jobs.run(await jobs.load(body.path, baseDir)));
    }
    send(res, 404, { error: `no route ${req.method ?? ''} ${req.url ?? ''}` });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter((p) => p !== '');
    if (req.method === 'GET' && this.web?.serves(url.pathname) === true) return this.web.handle(url.pathname, res);
    if (req.method === 'GET' && url.pathname === '/v1/nodes')
      return send(
        res,
        200,
        (await this.controller.nodes()).map((n) => ({ ...n, name: this.controller.publicName(n.name) })),
      );
    if (req.method === 'GET' && url.pathname === '/v1/tasks') return send(res, 200, this.controller.tasks());
    if (req.method === 'GET' && url.pathname === '/v1/migrations') return send(res, 200, this.controller.migrations());
    if (req.method === 'GET' && url.pathname === '/v1/reservations')
      return send(res, 200, this.controller.reservationsHeld());
    if (req.method === 'GET' && url.pathname === '/v1/event/stream')
      return this.stream(req, res, Number(url.searchParams.get('index') ?? 0));
    if (this.jobs !== undefined && (parts[1] === 'jobs' || parts[1] === 'job')) return this.job(req, res, parts);
    if (req.method === 'DELETE' && parts[1] === 'reservation' && parts[2] !== undefined) {
      this.controller.release(parts[2]);
      return send(res, 200, { released: parts[2] });
    }
    if (req.method === 'POST' && parts[0] === 'v1' && parts[1] === 'node' && parts[2] !== undefined) {
      const body = await readJson(req);
      if (this.controller.isVirtual(parts[2])) return this.virtual(res, parts[2], parts[3] ?? '');
      parts[2] = this.controller.resolveNode(parts[2]);
      if (parts[3] === 'drain') {
        const reason = typeof body.reason === 'string' ? body.reason : 'drained by an operator';
        return send(res, 200, await this.controller.drainNode(parts[2], reason));
      }
      if (parts[3] === 'reserve')
        return send(
          res,
          200,
          await this.controller.reserve(parts[2], typeof body.reason === 'string' ? body.reason : 'reserved'),
        );
      if (parts[3] === 'prestage') {
        if (typeof body.reservation !== 'string' || body.reservation === '')
          return send(res, 400, { error: 'reservation (the id reserve answered) is required' });
        return send(res, 200, await this.controller.prestage(parts[2], body.reservation));
      }
      if (parts[3] === 'preempt') return send(res, 200, await this.controller.preempt(parts[2]));
      if (parts[3] === 'return') {
        await this.controller.nodeReturned(parts[2]);
        return send(res, 200, { node: parts[2], up: true });
      }
      if (parts[3] === 'eligibility') {
        if (body.Eligibility !== 'eligible' && body.Eligibility !== 'ineligible') {
          return send(res, 400, { error: 'Eligibility must be "eligible" or "ineligible"' });
        }
        // The caller's own reason (the forecaster names its decision) is what the change is logged with.
        const reason = typeof body.reason === 'string' && body.reason !== '' ? body.reason : 'set by an operator';
        await this.controller.setEligibility(parts[2], body.Eligibility === 'eligible', reason);
        return send(res, 200, { node: parts[2], eligible: body.Eligibility === 'eligible' });
      }
    }
    send(res, 404, { error: `no route ${req.method ?? ''} ${url.pathname}` });
  }
}
