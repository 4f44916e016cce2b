import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { SystemClock } from '../../../../common/clock';
import { AwsImdsSource } from '../../../../sidecar/src/telemetry/signals/aws-imds';
import { AzureScheduledEventsSource } from '../../../../sidecar/src/telemetry/signals/azure-scheduled-events';
import { GcpMetadataSource } from '../../../../sidecar/src/telemetry/signals/gcp-metadata';

// Each metadata service is played by a small HTTP server on 127.0.0.1:0 answering as its documentation says:
// paths, required headers, status codes and payload shapes.
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function serve(handler: Handler): Promise<{ server: Server; url: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(`${req.method ?? ''} ${req.url ?? ''}`);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

const close = (server: Server): Promise<void> => {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
};

describe('AWS IMDSv2', () => {
  const state = {
    tokens: new Set<string>(),
    issued: 0,
    action: undefined as object | undefined,
    rebalance: undefined as object | undefined,
    scheduled: [] as object[],
  };
  let imds: Awaited<ReturnType<typeof serve>>;

  beforeAll(async () => {
    imds = await serve((req, res) => {
      if (req.method === 'PUT' && req.url === '/latest/api/token') {
        const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
        if (!(ttl >= 1 && ttl <= 21600)) return void res.writeHead(400).end();
        state.issued += 1;
        const token = `token-${state.issued}`;
        state.tokens.add(token);
        res
          .writeHead(200, { 'content-type': 'text/plain', 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) })
          .end(token);
        return;
      }
      if (req.method !== 'GET') return void res.writeHead(405).end();
      // IMDSv2 only: no token or an unknown one is 401.
      if (!state.tokens.has(String(req.headers['x-aws-ec2-metadata-token']))) return void res.writeHead(401).end();
      const doc =
        req.url === '/latest/meta-data/spot/instance-action'
          ? state.action
          : req.url === '/latest/meta-data/events/recommendations/rebalance'
            ? state.rebalance
            : req.url === '/latest/meta-data/events/maintenance/scheduled'
              ? state.scheduled
              : undefined;
      if (doc === undefined)
        return void res.writeHead(404, { 'content-type': 'text/html' }).end('<html>404 - Not Found</html>');
      res.writeHead(200, { 'content-type': 'text/plain' }).end(JSON.stringify(doc));
    });
  });
  afterAll(() => close(imds.server));

  it('asks with a session token and reports nothing while nothing is posted', async () => {
    const aws = new AwsImdsSource(new SystemClock(), { endpoint: imds.url });
    expect(await aws.poll()).toEqual([]);
    expect(imds.hits[0]).toBe('PUT /latest/api/token');
    expect(state.issued).toBe(1);
    await aws.poll();
    expect(state.issued).toBe(1);
  });

  it('reports the spot instance-action with its time, the rebalance recommendation and active scheduled events', async () => {
    state.action = { action: 'terminate', time: '2026-11-25T10:02:00Z' };
    state.rebalance = { noticeTime: '2026-11-25T09:58:00Z' };
    state.scheduled = [
      {
        NotBefore: '21 Jan 2027 09:00:43 GMT',
        Code: 'system-reboot',
        Description: 'scheduled reboot',
        EventId: 'instance-event-0d59937288b749b32',
        NotAfter: '21 Jan 2027 09:17:23 GMT',
        State: 'active',
      },
      {
        NotBefore: '1 Jan 2026 09:00:00 GMT',
        Code: 'instance-stop',
        Description: '[Completed] stop',
        EventId: 'instance-event-1',
        NotAfter: '1 Jan 2026 10:00:00 GMT',
        State: 'completed',
      },
    ];
    const aws = new AwsImdsSource(new SystemClock(), { endpoint: imds.url });
    expect(await aws.poll()).toEqual([
      {
        source: 'aws-imds',
        kind: 'spot-interruption',
        deadlineMs: Date.parse('2026-11-25T10:02:00Z'),
        detail: 'terminate',
      },
      {
        source: 'aws-imds',
        kind: 'rebalance-recommendation',
        deadlineMs: 0,
        detail: 'noticeTime 2026-11-25T09:58:00Z',
      },
      {
        source: 'aws-imds',
        kind: 'scheduled-maintenance',
        deadlineMs: Date.UTC(2027, 0, 21, 9, 0, 43),
        detail: 'system-reboot instance-event-0d59937288b749b32',
      },
    ]);
  });

  it('fetches a new token when the service no longer accepts the old one', async () => {
    const aws = new AwsImdsSource(new SystemClock(), { endpoint: imds.url });
    await aws.poll();
    const before = state.issued;
    state.tokens.clear();
    expect((await aws.poll()).map((n) => n.kind)).toContain('spot-interruption');
    expect(state.issued).toBe(before + 1);
  });

  it('fails with NC_SIGNAL_SOURCE_FAILED when the service is unreachable', async () => {
    const aws = new AwsImdsSource(new SystemClock(), { endpoint: 'http://127.0.0.1:9', timeoutMs: 500 });
    await expect(aws.poll()).rejects.toMatchObject({ code: 'NC_SIGNAL_SOURCE_FAILED' });
  });
});

describe('GCP metadata server', () => {
  const values: Record<string, { text: string; etag: number }> = {
    '/computeMetadata/v1/instance/preempted': { text: 'FALSE', etag: 1 },
    '/computeMetadata/v1/instance/maintenance-event': { text: 'NONE', etag: 1 },
  };
  const waiting: (() => void)[] = [];
  let gce: Awaited<ReturnType<typeof serve>>;
  let wrongFlavor = false;

  const set = (path: string, text: string): void => {
    const v = values[path] as { text: string; etag: number };
    v.text = text;
    v.etag += 1;
    for (const wake of waiting.splice(0)) wake();
  };

  beforeAll(async () => {
    gce = await serve((req, res) => {
      if (req.headers['metadata-flavor'] !== 'Google')
        return void res.writeHead(403).end('Missing Metadata-Flavor:Google header.');
      const url = new URL(req.url ?? '/', 'http://x');
      const v = values[url.pathname];
      if (v === undefined) return void res.writeHead(404).end();
      const answer = (): void => {
        res
          .writeHead(200, {
            'metadata-flavor': wrongFlavor ? 'Other' : 'Google',
            etag: String(v.etag),
            'content-type': 'application/text',
          })
          .end(v.text);
      };
      // wait_for_change: hang until the value's etag differs from last_etag, or timeout_sec passes.
      if (url.searchParams.get('wait_for_change') === 'true' && url.searchParams.get('last_etag') === String(v.etag)) {
        const timer = setTimeout(answer, Number(url.searchParams.get('timeout_sec') ?? 60) * 1000);
        waiting.push(() => {
          clearTimeout(timer);
          answer();
        });
        req.on('close', () => clearTimeout(timer));
        return;
      }
      answer();
    });
  });
  afterAll(() => close(gce.server));

  it('sees preempted and maintenance-event changes through hanging GETs with the last etag', async () => {
    const gcp = new GcpMetadataSource(new SystemClock(), pino({ level: 'silent' }), {
      endpoint: gce.url,
      watchTimeoutS: 30,
    });
    try {
      expect(await gcp.poll()).toEqual([]);
      // Both keys are now watched: a hanging GET per key.
      await waitFor(() => waiting.length === 2);
      expect(gce.hits.filter((h) => h.includes('wait_for_change=true&last_etag=1&timeout_sec=30'))).toHaveLength(2);

      const before = Date.now();
      set('/computeMetadata/v1/instance/preempted', 'TRUE');
      await waitFor(async () => (await gcp.poll()).length === 1);
      const [notice] = await gcp.poll();
      expect(notice).toMatchObject({ source: 'gcp-metadata', kind: 'preempted', detail: 'instance/preempted TRUE' });
      expect(notice?.deadlineMs).toBeGreaterThanOrEqual(before + 30_000);

      set('/computeMetadata/v1/instance/maintenance-event', 'TERMINATE_ON_HOST_MAINTENANCE');
      await waitFor(async () => (await gcp.poll()).length === 2);
      expect((await gcp.poll()).map((n) => n.kind)).toEqual(['preempted', 'maintenance-terminate']);
    } finally {
      gcp.close();
    }
  });

  it('refuses an answer without Metadata-Flavor: Google', async () => {
    wrongFlavor = true;
    const gcp = new GcpMetadataSource(new SystemClock(), pino({ level: 'silent' }), { endpoint: gce.url });
    try {
      await expect(gcp.poll()).rejects.toMatchObject({ code: 'NC_SIGNAL_SOURCE_FAILED' });
    } finally {
      wrongFlavor = false;
      gcp.close();
    }
  });
});

describe('Azure Scheduled Events', () => {
  let doc: object = { DocumentIncarnation: 0, Events: [] };
  let azure: Awaited<ReturnType<typeof serve>>;

  beforeAll(async () => {
    azure = await serve((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      // Without the Metadata: true header IMDS answers 400 Bad Request.
      if (req.headers.metadata !== 'true')
        return void res.writeHead(400).end('{"error":"Bad request. Required metadata header not specified"}');
      if (url.pathname !== '/metadata/scheduledevents' || url.searchParams.get('api-version') !== '2020-07-01') {
        return void res.writeHead(400).end('{"error":"Bad request"}');
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
    });
  });
  afterAll(() => close(azure.server));

  it('reports nothing for an empty Events array, then a Preempt event for this VM with its NotBefore', async () => {
    const source = new AzureScheduledEventsSource({ endpoint: azure.url, vmName: 'myspotvm' });
    expect(await source.poll()).toEqual([]);
    doc = {
      DocumentIncarnation: 1,
      Events: [
        {
          EventId: 'A123BC45-1234-5678-AB90-ABCDEF123456',
          EventStatus: 'Scheduled',
          EventType: 'Preempt',
          ResourceType: 'VirtualMachine',
          Resources: ['myspotvm'],
          NotBefore: 'Tue, 16 Mar 2027 00:58:46 GMT',
          Description: '',
          EventSource: 'Platform',
          DurationInSeconds: -1,
        },
        {
          EventId: 'C7061BAC-AFDC-4513-B24B-AA5F13A16123',
          EventStatus: 'Scheduled',
          EventType: 'Freeze',
          ResourceType: 'VirtualMachine',
          Resources: ['othervm'],
          NotBefore: 'Mon, 11 Apr 2027 22:26:58 GMT',
          Description: 'memory-preserving Live Migration',
          EventSource: 'Platform',
          DurationInSeconds: 5,
        },
      ],
    };
    expect(await source.poll()).toEqual([
      {
        source: 'azure-scheduled-events',
        kind: 'preempt',
        deadlineMs: Date.UTC(2027, 2, 16, 0, 58, 46),
        detail: 'A123BC45-1234-5678-AB90-ABCDEF123456 Scheduled',
      },
    ]);
    expect(azure.hits.every((h) => h === 'GET /metadata/scheduledevents?api-version=2020-07-01')).toBe(true);
  });

  it('fails with NC_SIGNAL_SOURCE_FAILED on an unexpected answer', async () => {
    const source = new AzureScheduledEventsSource({ endpoint: azure.url, apiVersion: '1999-01-01' });
    await expect(source.poll()).rejects.toMatchObject({ code: 'NC_SIGNAL_SOURCE_FAILED' });
  });
});

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
