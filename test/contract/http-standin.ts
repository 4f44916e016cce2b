import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The Go harness module (its own go.mod). */
export const CONTRACT_GO_DIR = __dirname;

export interface StandInFailure {
  server: 'nomad' | 'consul';
  method: string;
  path: string;
  problem: string;
}

export interface StandInRequest {
  server: 'nomad' | 'consul';
  method: string;
  path: string;
  query: string;
  token: string;
  body: string;
}

export interface StandInReport {
  failures: StandInFailure[];
  requests: StandInRequest[];
  streamIndexes: string[];
}

export const NOMAD_TOKEN = 'nomad-contract-token';
export const CONSUL_TOKEN = 'consul-contract-token';

/** Fixture identities of test/contract/httpapi/nomad.go. */
export const FIXTURE = {
  nodeA: '5f1c2a9e-0000-4000-8000-00000000000a',
  nodeB: '5f1c2a9e-0000-4000-8000-00000000000b',
  oldAlloc: 'a11c0000-0000-4000-8000-000000000001',
  newAlloc: 'a11c0000-0000-4000-8000-000000000002',
  jobId: 'example-counter',
} as const;

/** The Go stand-ins for Nomad and Consul (test/contract/httpapi), built once into a cache dir and run. */
export class HttpStandIn {
  private constructor(
    private readonly child: ChildProcess,
    readonly nomadAddress: string,
    readonly consulAddress: string,
  ) {}

  static async start(): Promise<HttpStandIn> {
    const cacheDir = path.join(os.tmpdir(), 'nomad-chain-contract-cache');
    mkdirSync(cacheDir, { recursive: true });
    const binary = path.join(cacheDir, 'http-standin');
    try {
      await execFileAsync('go', ['build', '-o', binary, './httpapi/cmd/http-standin'], { cwd: CONTRACT_GO_DIR });
    } catch (err) {
      throw new Error(`building the Go HTTP stand-in failed (needs Go and test/contract's modules): ${String(err)}`);
    }
    const child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: child.stdout });
    const first = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) =>
        reject(new Error(`http-standin exited with ${String(code)} before printing its ports`)),
      );
      child.once('error', reject);
    });
    lines.close();
    const addresses = JSON.parse(first) as { nomad: string; consul: string };
    return new HttpStandIn(child, addresses.nomad, addresses.consul);
  }

  async report(): Promise<StandInReport> {
    const res = await fetch(`${this.nomadAddress}/_standin/report`);
    return (await res.json()) as StandInReport;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin?.end();
    this.child.kill('SIGTERM');
    await exited;
  }
}
