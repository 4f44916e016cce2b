import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { WebView, type WebViewOptions } from '../../../../local/web/web-view';

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const close = (server: Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()));

describe('WebView: the live page on the controller API', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map(close));
  });

  async function serve(options: WebViewOptions = {}): Promise<string> {
    const web = new WebView(options);
    const server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (!web.serves(path)) {
        res.writeHead(418);
        res.end();
        return;
      }
      void web.handle(path, res);
    });
    servers.push(server);
    return listen(server);
  }

  it('serves the page and its script at /ui, leads the root there, and leaves the API alone', async () => {
    const base = await serve();
    const root = await fetch(`${base}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/ui');
    const page = await fetch(`${base}/ui`);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toContain('<script src="/ui/view.js"></script>');
    const script = await fetch(`${base}/ui/view.js`);
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(await script.text()).toContain('/v1/event/stream');
    expect((await fetch(`${base}/ui/nothing`)).status).toBe(404);
    expect((await fetch(`${base}/v1/nodes`)).status).toBe(418);
  });

  it('ships a script that parses', () => {
    const source = readFileSync(join(__dirname, '../../../../local/web/view.js'), 'utf8');
    expect(() => new Script(source, { filename: 'view.js' })).not.toThrow();
  });

  it('says when no forecaster runs, relays its risk when one does, and says when it does not answer', async () => {
    const risk = { model: { version: 'v7', featureSpec: 'f' }, nodes: [{ node: 'node1', risk: 0.9, decisions: [] }] };
    const forecaster = createServer((req, res) => {
      res.writeHead(req.url === '/v1/risk' ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(req.url === '/v1/risk' ? risk : {}));
    });
    servers.push(forecaster);
    const forecasterUrl = await listen(forecaster);
    const gone = createServer();
    const goneUrl = await listen(gone);
    await close(gone);

    const none = await serve();
    expect(await (await fetch(`${none}/ui/risk`)).json()).toEqual({ forecaster: null });
    const running = await serve({ forecasterUrl: () => forecasterUrl });
    expect(await (await fetch(`${running}/ui/risk`)).json()).toEqual({ forecaster: forecasterUrl, ...risk });
    const silent = await serve({ forecasterUrl: () => goneUrl });
    expect(await (await fetch(`${silent}/ui/risk`)).json()).toMatchObject({
      forecaster: goneUrl,
      error: expect.any(String) as unknown,
    });
  });
});
