import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { NodeRiskReport } from '../../../forecaster/src/forecaster';
import { ControllerApi } from '../../../local/controller/controller-api';
import { EXAMPLE_SERVICE, startLocalMode, type LocalMode } from '../../../local/local-mode';
import type { MigrationRecord } from '../../../local/migration/migration-record';
import { WebView } from '../../../local/web/web-view';
import { eventually } from '../../harness/eventually';
import { HeadlessBrowser } from './headless-browser';
import { runKv } from './kv-service';
import { summarisePng } from './png-image';

const log = pino({ level: process.env.NOMAD_CHAIN_TEST_LOG ?? 'silent' });
const WIDTH = 1280;
const HEIGHT = 1000;
/** A liveness bound for the page to catch up (it polls every second), not a speed claim. */
const PAGE_MS = 60_000;

/** Resolves once `expression` is true in the page; otherwise fails with what the page shows. */
async function pageShows(browser: HeadlessBrowser, expression: string): Promise<void> {
  await eventually(
    async () => {
      if (await browser.evaluate<boolean>(expression)) return;
      const text = await browser.evaluate<string>('document.body.innerText');
      throw new Error(`the page never showed ${expression}; it shows:\n${text}`);
    },
    PAGE_MS,
    200,
  );
}

/**
 * The forecaster's `/v1/risk` for one node it has drained, typed by the forecaster's own report: the page's view of
 * risk and decisions is checked without training a model (the forecaster's own tests cover how it decides).
 */
function forecasterAnswering(node: string): NodeRiskReport {
  return {
    node,
    pool: 'default',
    nodeClass: 'local',
    risk: 0.93,
    scoredAtMs: Date.now(),
    phase: 'draining',
    prepared: true,
    notices: [],
    reservation: null,
    thresholds: { prewarn: 0.5, exit: 0.3, drain: 0.8, source: 'defaults' },
    decisions: [
      {
        id: 41,
        node,
        pool: 'default',
        nodeClass: 'local',
        atMs: Date.now(),
        action: 'drain',
        risk: 0.93,
        level: 'drain',
        threshold: 0.8,
        thresholdSource: 'defaults',
        reasons: ['risk 0.93 at or above the drain level 0.8'],
      },
    ],
  };
}

describe('local mode: the live web view in a real browser (issue #14)', () => {
  let local: LocalMode | undefined;
  let api: ControllerApi | undefined;
  let browser: HeadlessBrowser | undefined;
  let forecaster: Server | undefined;
  afterEach(async () => {
    await browser?.close();
    await new Promise((resolve) => (forecaster === undefined ? resolve(undefined) : forecaster.close(resolve)));
    await api?.close();
    await local?.stop(true);
  });

  it('shows the nodes, the task, and a drain: its migration in flight, then done with its freeze', async () => {
    // The browser first: without one the test fails at once, saying what to install.
    const page = await HeadlessBrowser.launch(WIDTH, HEIGHT);
    browser = page;
    // The sequence waits after the hand-over until the page shows the migration in flight: what a person watching
    // would see for the length of a freeze, held long enough for a one-second poll to catch it.
    let inFlight: unknown = 'never reached the hand-over';
    const mode = await startLocalMode(
      {
        cluster: { nodes: 3, services: [EXAMPLE_SERVICE.name] },
        afterStep: async (r: MigrationRecord) => {
          if (r.step !== 'handed-over') return;
          const shown = `document.querySelector('[data-migration="${r.id}"][data-step="handed-over"]') !== null`;
          inFlight = await pageShows(page, shown).then(
            () => 'seen',
            (err: unknown) => err,
          );
        },
      },
      log,
    );
    local = mode;
    const { placed } = await runKv(mode);
    const risk = { model: { version: 'test-model', featureSpec: 'v1' }, nodes: [forecasterAnswering(placed.node)] };
    forecaster = createServer((_req, res) => res.end(JSON.stringify(risk)));
    const forecasterServer = forecaster;
    await new Promise<void>((resolve) => forecasterServer.listen(0, '127.0.0.1', resolve));
    const forecasterUrl = `http://127.0.0.1:${(forecasterServer.address() as AddressInfo).port}`;
    api = new ControllerApi(mode.controller, log, 1000, undefined, new WebView({ forecasterUrl: () => forecasterUrl }));
    const base = `http://127.0.0.1:${await api.listen()}`;

    await page.navigate(`${base}/`);
    expect(await page.evaluate<string>('location.pathname')).toBe('/ui');
    const names = mode.cluster.nodes.map((n) => n.name);
    await pageShows(page, `document.querySelectorAll('#nodes tr[data-node]').length === ${names.length}`);
    await pageShows(page, `document.getElementById('live').className === 'up'`);
    expect(
      await page.evaluate<string[]>(
        `[...document.querySelectorAll('#nodes tr[data-node]')].map((r) => r.dataset.node)`,
      ),
    ).toEqual(names);
    expect(
      await page.evaluate<string[]>(
        `[...document.querySelectorAll('#nodes tr[data-node]')].map((r) => r.dataset.eligibility)`,
      ),
    ).toEqual(names.map(() => 'eligible'));
    await pageShows(page, `document.querySelector('#tasks tr[data-task="kv"]')?.dataset.node === '${placed.node}'`);
    expect(await page.evaluate<number>(`document.querySelectorAll('[data-migration]').length`)).toBe(0);

    // Drained as an operator would, through the API; the page is not reloaded: all it shows next came live.
    const answer = await fetch(`${base}/v1/node/${placed.node}/drain`, {
      method: 'POST',
      body: JSON.stringify({ reason: 'drained by the web view test' }),
    });
    const [outcome] = (await answer.json()) as { outcome: string; migration: MigrationRecord }[];
    expect(inFlight).toBe('seen');
    expect(outcome?.outcome).toBe('moved');
    const record = outcome?.migration as MigrationRecord;
    expect(record.freezeMs).toBeGreaterThan(0);

    await pageShows(page, `document.querySelector('[data-migration="${record.id}"]')?.dataset.step === 'done'`);
    const row = await page.evaluate<{ task: string; freeze: string; text: string; freezeWidth: number }>(`(() => {
      const row = document.querySelector('[data-migration="${record.id}"]');
      return {
        task: row.dataset.task,
        freeze: row.dataset.freezeMs,
        text: row.innerText,
        freezeWidth: row.querySelector('.freeze').getBoundingClientRect().width,
      };
    })()`);
    expect(row.task).toBe('kv');
    expect(row.freeze).toBe(String(record.freezeMs));
    expect(row.text).toContain(`${placed.node} → ${record.target.node}`);
    expect(row.text).toContain(`frozen ${record.freezeMs} ms`);
    expect(row.freezeWidth).toBeGreaterThan(0);
    await pageShows(
      page,
      `document.querySelector('#tasks tr[data-task="kv"]')?.dataset.node === '${record.target.node}'`,
    );
    await pageShows(page, `document.querySelector('#events li[data-type="drain-complete"]') !== null`);
    expect(
      await page.evaluate<string>(`document.querySelector('#events li[data-type="drain-started"]').innerText`),
    ).toContain('drained by the web view test');
    await pageShows(
      page,
      `document.querySelector('#nodes tr[data-node="${placed.node}"]').dataset.eligibility === 'drained'`,
    );

    // The forecaster's side: the node's risk and phase, and its decision with the reason it gave.
    expect(
      await page.evaluate<string>(
        `document.querySelector('#nodes tr[data-node="${placed.node}"] td:last-child').innerText`,
      ),
    ).toBe('0.93 (draining)');
    expect(
      await page.evaluate<string>(`document.querySelector('#decisions li[data-action="drain"]').innerText`),
    ).toContain('risk 0.93 at or above the drain level 0.8');
    expect(await page.evaluate<string>(`document.getElementById('forecaster').innerText`)).toContain('test-model');

    const png = await page.screenshot();
    const dir = join(tmpdir(), 'nc-web-view');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'drained.png'), png);
    const image = summarisePng(png);
    expect({ width: image.width, height: image.height }).toEqual({ width: WIDTH, height: HEIGHT });
    // A blank or single-colour page has one colour; text, tables and the timeline's bars have many.
    expect(image.colours).toBeGreaterThan(16);
  });
});
