import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

// Runs the Go contract harness (test/contract, its own go.mod), where HashiCorp's libraries play Nomad's
// side: go-plugin's client launches plugin/bin/chain with Nomad's handshake and calls every driver RPC.
// The Go stubs are regenerated from the project's .proto first, so the harness never tests stale ones.
const ROOT = resolve(__dirname, '../..');
const GO_DIR = resolve(ROOT, 'test/contract');
const run = promisify(execFile);
const MAX_BUFFER = 64 * 1024 * 1024;

async function go(args: string[], timeoutMs: number): Promise<string> {
  try {
    const { stdout } = await run('go', args, { cwd: GO_DIR, timeout: timeoutMs, maxBuffer: MAX_BUFFER });
    return stdout;
  } catch (err) {
    const failed = err as { stdout?: string; stderr?: string; message: string };
    // The whole Go output, so the failing test and the plugin's log lines are in the Jest report.
    throw new Error(`go ${args.join(' ')} failed: ${failed.message}\n${failed.stdout ?? ''}\n${failed.stderr ?? ''}`);
  }
}

beforeAll(async () => {
  await run('bash', [resolve(ROOT, 'scripts/gen-go-proto.sh')], { cwd: ROOT, timeout: 300_000 });
}, 300_000);

test('the Go harness is gofmt-clean and passes go vet', async () => {
  const { stdout } = await run('gofmt', ['-l', '.'], { cwd: GO_DIR });
  expect(stdout.split('\n').filter((f) => f !== '' && !f.startsWith('gen/'))).toEqual([]);
  await go(['vet', './...'], 300_000);
}, 300_000);

test('go test ./... passes: go-plugin handshake, every driver RPC, reattach, recovery, shutdown', async () => {
  const stdout = await go(['test', '-count=1', './...'], 900_000);
  expect(stdout).toMatch(/^ok\s+nomad-chain\/contract\/plugin\b/m);
  expect(stdout).not.toMatch(/^(FAIL|--- FAIL)/m);
}, 900_000);
