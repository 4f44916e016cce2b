import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

const BINARY = 'chromium-headless-shell';

/** Debian's headless Chromium on PATH; its absence fails the test with what to run, never skips it. */
export function findChromium(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, BINARY);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new Error(
    `${BINARY} is not installed: run \`npm run setup\` (it installs Debian's ${BINARY}), or ` +
      `\`apt-get install --no-install-recommends ${BINARY}\``,
  );
}

interface CdpMessage {
  readonly id?: number;
  readonly method?: string;
  readonly sessionId?: string;
  readonly result?: Record<string, unknown>;
  readonly error?: { readonly message: string };
  readonly params?: Record<string, unknown>;
}

/**
 * A real headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages
 * ended by NUL on fds 3 and 4), so no WebSocket client and no browser download is needed. One page per browser.
 */
export class HeadlessBrowser {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (m: CdpMessage) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Set<(m: CdpMessage) => void>();
  private exited: Error | undefined;
  private stderr = '';
  /** The DevTools session of the one page. */
  private session = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly profileDir: string,
  ) {
    const output = child.stdio[4] as Readable;
    let buffered = Buffer.alloc(0);
    output.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (let end = buffered.indexOf(0); end >= 0; end = buffered.indexOf(0)) {
        this.dispatch(JSON.parse(buffered.subarray(0, end).toString()) as CdpMessage);
        buffered = buffered.subarray(end + 1);
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-4000)));
    child.once('exit', (code, signal) => {
      this.exited = new Error(`${BINARY} exited (${code ?? signal}): ${this.stderr}`);
      for (const { reject } of this.pending.values()) reject(this.exited);
      this.pending.clear();
    });
  }

  /** Starts the browser with one blank page of `width` x `height` CSS pixels, attached. */
  static async launch(width: number, height: number): Promise<HeadlessBrowser> {
    const binary = findChromium();
    const profileDir = mkdtempSync(join(tmpdir(), 'nc-chromium-'));
    // --no-sandbox: the integration tier runs as root, where Chromium's sandbox refuses to start.
    const child = spawn(
      binary,
      [
        '--no-sandbox',
        '--remote-debugging-pipe',
        `--user-data-dir=${profileDir}`,
        `--window-size=${width},${height}`,
        '--hide-scrollbars',
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
    );
    const browser = new HeadlessBrowser(child, profileDir);
    const targets = (await browser.send('Target.getTargets')).targetInfos as { targetId: string; type: string }[];
    const page = targets.find((t) => t.type === 'page');
    if (page === undefined) throw new Error(`${BINARY} opened no page`);
    browser.session = (await browser.send('Target.attachToTarget', { targetId: page.targetId, flatten: true }))
      .sessionId as string;
    await browser.send('Page.enable');
    return browser;
  }

  /** Loads `url` and resolves once its load event fired. */
  async navigate(url: string): Promise<void> {
    const loaded = this.next('Page.loadEventFired');
    const answer = await this.send('Page.navigate', { url });
    if (typeof answer.errorText === 'string') throw new Error(`${url}: ${answer.errorText}`);
    await loaded;
  }

  /** The value of a JavaScript expression in the page (awaited if a promise); a thrown error fails. */
  async evaluate<T>(expression: string): Promise<T> {
    const answer = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    const exception = answer.exceptionDetails as { text: string; exception?: { description?: string } } | undefined;
    if (exception !== undefined)
      throw new Error(`${expression}: ${exception.exception?.description ?? exception.text}`);
    return (answer.result as { value: T }).value;
  }

  /** The page's viewport as PNG. */
  async screenshot(): Promise<Buffer> {
    const answer = await this.send('Page.captureScreenshot', { format: 'png' });
    return Buffer.from(answer.data as string, 'base64');
  }

  async close(): Promise<void> {
    if (this.exited === undefined) {
      const gone = new Promise((resolve) => this.child.once('exit', resolve));
      await this.send('Browser.close', {}, false).catch(() => this.child.kill('SIGKILL'));
      await gone;
    }
    rmSync(this.profileDir, { recursive: true, force: true });
  }

  private send(method: string, params: object = {}, onPage = true): Promise<Record<string, unknown>> {
    if (this.exited !== undefined) return Promise.reject(this.exited);
    const id = ++this.nextId;
    const message = { id, method, params, ...(onPage && this.session !== '' ? { sessionId: this.session } : {}) };
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (m) =>
          m.error !== undefined ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result ?? {}),
        reject,
      });
      (this.child.stdio[3] as Writable).write(`${JSON.stringify(message)}\0`);
    });
  }

  private next(method: string): Promise<void> {
    return new Promise((resolve) => {
      const listener = (m: CdpMessage): void => {
        if (m.method !== method) return;
        this.listeners.delete(listener);
        resolve();
      };
      this.listeners.add(listener);
    });
  }

  private dispatch(message: CdpMessage): void {
    if (message.id !== undefined) {
      this.pending.get(message.id)?.resolve(message);
      this.pending.delete(message.id);
      return;
    }
    for (const listener of [...this.listeners]) listener(message);
  }
}
