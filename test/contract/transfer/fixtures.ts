import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import type { Logger } from '../../../common/logging';
import { loadTransferTls } from '../../../sidecar/src/transfer/tls';
import type { TransferTls } from '../../../sidecar/src/transfer/tls';

const run = promisify(execFile);
const GEN_CERTS = resolve(__dirname, '../../../scripts/gen-certs.sh');

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `nc-a2-${prefix}-`));
}

/** A CA and node certificates made by scripts/gen-certs.sh (the real openssl CLI). */
export async function makeCerts(dir: string, nodes: readonly string[]): Promise<Record<string, TransferTls>> {
  await run('bash', [GEN_CERTS, dir, ...nodes]);
  const out: Record<string, TransferTls> = {};
  for (const node of nodes) {
    const name = node.split('=')[0] as string;
    out[name] = await loadTransferTls({
      caFile: join(dir, 'ca.crt'),
      certFile: join(dir, `${name}.crt`),
      keyFile: join(dir, `${name}.key`),
    });
  }
  return out;
}

/** Deterministic pseudo-random bytes (fast, reproducible): sha256 in counter mode. */
export function pseudoRandom(seed: string, bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  for (let off = 0, i = 0; off < bytes; off += 32, i += 1) {
    createHash('sha256')
      .update(`${seed}:${i}`)
      .digest()
      .copy(out, off, 0, Math.min(32, bytes - off));
  }
  return out;
}

/** A checkpoint-like directory: a few MB-sized image files (zeros, random, text), small files, a subdirectory. */
export async function makeCheckpointDir(root: string, scaleBytes = 4 * 1024 * 1024): Promise<string> {
  const dir = join(root, 'images');
  await mkdir(join(dir, 'sub'), { recursive: true });
  const text = Buffer.from(
    'heap: {"user":"alice","counter":42,"items":[1,2,3]} '.repeat(Math.ceil(scaleBytes / 50)),
  ).subarray(0, scaleBytes);
  await writeFile(
    join(dir, 'pages-1.img'),
    Buffer.concat([pseudoRandom('pages', scaleBytes), Buffer.alloc(scaleBytes), text]),
  );
  await writeFile(join(dir, 'pages-2.img'), pseudoRandom('pages2', Math.floor(scaleBytes / 2) + 12345));
  await writeFile(join(dir, 'pagemap-1.img'), pseudoRandom('pagemap', 4096));
  await writeFile(join(dir, 'inventory.img'), Buffer.from('inventory'));
  await writeFile(join(dir, 'empty.img'), Buffer.alloc(0));
  await writeFile(join(dir, 'sub', 'core-1.img'), pseudoRandom('core', 70_000), { mode: 0o640 });
  return dir;
}

/** Overwrites `fraction` of a file's bytes in runs of `runBytes`, spread evenly (a task's memory changing). */
export async function mutate(path: string, fraction: number, runBytes = 256 * 1024, seed = 'mutate'): Promise<number> {
  const data = await readFile(path);
  const runs = Math.max(1, Math.round((data.length * fraction) / runBytes));
  const stride = Math.floor(data.length / runs);
  let changed = 0;
  for (let r = 0; r < runs; r += 1) {
    const at = r * stride + Math.floor(stride / 3);
    const len = Math.min(runBytes, data.length - at);
    pseudoRandom(`${seed}:${r}`, len).copy(data, at);
    changed += len;
  }
  await writeFile(path, data);
  return changed;
}

/** path → sha256 and mode of every file under `dir`, to compare trees byte for byte. */
export async function treeDigest(dir: string, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(join(dir, prefix))).sort()) {
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    const st = await stat(join(dir, rel));
    if (st.isDirectory()) {
      out[`${rel}/`] = (st.mode & 0o7777).toString(8);
      Object.assign(out, await treeDigest(dir, rel));
    } else {
      out[rel] = `${(st.mode & 0o7777).toString(8)}:${createHash('sha256')
        .update(await readFile(join(dir, rel)))
        .digest('hex')}`;
    }
  }
  return out;
}

export async function removeAll(...dirs: string[]): Promise<void> {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
}

export { randomBytes };
