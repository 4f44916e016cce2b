import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE } from '../../plugin/src/config';

// The plugin's process contract with go-plugin's host, seen from outside: the launcher in plugin/bin, the
// handshake as the only stdout, hclog-shaped JSON on stderr, exit on SIGTERM, refusal without the cookie.
const LAUNCHER = resolve(__dirname, '../../plugin/bin/chain');

interface Run {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
}

function launch(env: NodeJS.ProcessEnv, onStdout?: (text: string, stop: () => void) => void): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(LAUNCHER, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      onStdout?.(stdout, () => child.kill('SIGTERM'));
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ stdout, stderr, code }));
  });
}

test("without Nomad's magic cookie it exits 1, says what it is on stderr, and prints nothing on stdout", async () => {
  const env = { ...process.env };
  delete env[MAGIC_COOKIE_KEY];
  const run = await launch(env);
  expect(run.code).toBe(1);
  expect(run.stdout).toBe('');
  expect(run.stderr).toContain('This binary is a plugin');
  expect(run.stderr).toContain('NC_PLUGIN_COOKIE_MISMATCH');
});

test('with it, stdout is exactly the handshake line; stderr is hclog JSON; SIGTERM ends it and its socket', async () => {
  let socket = '';
  const run = await launch(
    {
      ...process.env,
      [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE,
      PLUGIN_PROTOCOL_VERSIONS: '2',
      PLUGIN_MIN_PORT: '10000',
      PLUGIN_MAX_PORT: '25000',
    },
    (text, stop) => {
      const match = /^1\|2\|unix\|(\/[^|]+)\|grpc\|\n$/.exec(text);
      if (match?.[1] !== undefined && socket === '') {
        socket = match[1];
        expect(existsSync(socket)).toBe(true);
        stop();
      }
    },
  );
  expect(run.stdout).toMatch(/^1\|2\|unix\|\/[^|]+\|grpc\|\n$/);
  expect(run.code).toBe(0);
  expect(existsSync(dirname(socket))).toBe(false);
  const lines = run.stderr.trim().split('\n');
  expect(lines.length).toBeGreaterThanOrEqual(2);
  for (const line of lines) {
    const entry = JSON.parse(line) as Record<string, unknown>;
    expect(typeof entry['@message']).toBe('string');
    expect(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).toContain(entry['@level']);
    // hclog's timestamp layout: 2006-01-02T15:04:05.000000Z07:00
    expect(entry['@timestamp']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  }
  expect(lines.map((l) => (JSON.parse(l) as Record<string, unknown>)['@message'])).toEqual(
    expect.arrayContaining(['plugin serving', 'plugin stopping; tasks keep running in the sidecar']),
  );
});
