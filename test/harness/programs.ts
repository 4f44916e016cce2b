import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { resolveBinary } from '../../common/binaries';

/** An HTTP server for a node's namespace that answers with its name and a per-process request counter. */
export const NAMED_HTTP_SERVER = `
const http = require('http');
let served = 0;
http.createServer((req, res) => { served += 1; res.end(process.argv[1] + ' ' + served); })
  .listen(Number(process.argv[2]), process.argv[3], () => process.stdout.write('listening\\n'));
`;

/** Starts a program inside a node's network namespace and resolves once it prints `ready` (a line). */
export function startInNamespace(
  netnsPath: string,
  argv: readonly string[],
  ready = 'listening',
): Promise<ChildProcess> {
  const child = spawn(resolveBinary('nsenter'), [`--net=${netnsPath}`, '--', ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(ready)) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`${argv.join(' ')} exited ${code}: ${err}`)));
  });
}

export function httpGet(url: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
