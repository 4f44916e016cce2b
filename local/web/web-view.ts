import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { errorMessage } from '../../common/errors';

/** Where the page is served on the controller's API. */
export const WEB_VIEW_PATH = '/ui';

/** The page's own files, beside this module: plain HTML and JavaScript, no build step. */
const FILES: Readonly<Record<string, { readonly file: string; readonly type: string }>> = {
  [WEB_VIEW_PATH]: { file: 'index.html', type: 'text/html; charset=utf-8' },
  [`${WEB_VIEW_PATH}/`]: { file: 'index.html', type: 'text/html; charset=utf-8' },
  [`${WEB_VIEW_PATH}/view.js`]: { file: 'view.js', type: 'text/javascript; charset=utf-8' },
};

export interface WebViewOptions {
  /**
   * The forecaster's HTTP API once it runs (`npm start -- -forecaster DIR`): the page shows its risk and decisions
   * through `/ui/risk`, on the controller's origin. @default no forecaster
   */
  readonly forecasterUrl?: () => string | undefined;
  /** How long `/ui/risk` waits for the forecaster. @default 2000 */
  readonly forecasterTimeoutMs?: number;
}

/**
 * The live view of local mode, served by the controller's API at `/ui`: the page reads the API's own endpoints
 * and follows its event stream. Only the forecaster's risk is fetched here, since the forecaster listens on a
 * port of its own.
 */
export class WebView {
  constructor(private readonly options: WebViewOptions = {}) {}

  /** Whether a GET of `pathname` is the page's (the root leads to it). */
  serves(pathname: string): boolean {
    return pathname === '/' || pathname === WEB_VIEW_PATH || pathname.startsWith(`${WEB_VIEW_PATH}/`);
  }

  async handle(pathname: string, res: ServerResponse): Promise<void> {
    if (pathname === '/') {
      res.writeHead(302, { location: WEB_VIEW_PATH });
      res.end();
      return;
    }
    if (pathname === `${WEB_VIEW_PATH}/risk`) return this.risk(res);
    const served = FILES[pathname];
    if (served === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify({ error: `no page ${pathname}` })}\n`);
      return;
    }
    const body = await readFile(join(__dirname, served.file));
    res.writeHead(200, { 'content-type': served.type, 'cache-control': 'no-cache' });
    res.end(body);
  }

  /** The forecaster's `/v1/risk`, or why there is none: its absence is a state the page shows, not an error. */
  private async risk(res: ServerResponse): Promise<void> {
    const url = this.options.forecasterUrl?.();
    let body: unknown = { forecaster: null };
    if (url !== undefined) {
      try {
        const answer = await fetch(`${url}/v1/risk`, {
          signal: AbortSignal.timeout(this.options.forecasterTimeoutMs ?? 2000),
        });
        body = { forecaster: url, ...((await answer.json()) as object) };
      } catch (err) {
        body = { forecaster: url, error: errorMessage(err) };
      }
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
  }
}
