import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointStore, infoFromMeta } from '../../../../sidecar/src/store/checkpoint-store';
import { distinctChunks } from '../../../../sidecar/src/transfer/manifest';
import type { SealedManifest } from '../../../../sidecar/src/transfer/manifest';
import { FakeClock } from '../../../fakes/fake-clock';
import { loadOrCreateStoreKey } from '../../../../sidecar/src/store/store-key';
import {
  makeCheckpointDir,
  pseudoRandom,
  removeAll,
  silentLogger,
  tempDir,
  treeDigest,
} from '../../../contract/transfer/fixtures';

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else out.push(path);
  }
  return out;
}

describe('CheckpointStore', () => {
  let root: string;
  let key: Buffer;
  const open = (maxBytes = 256 * 1024 * 1024, dir = join(root, 'store')): Promise<CheckpointStore> =>
    CheckpointStore.open({ dir, key, maxBytes, logger: silentLogger() });

  beforeEach(async () => {
    root = await tempDir('store');
    key = randomBytes(32);
  });
  afterEach(async () => removeAll(root));

  it('stages a directory and materializes it byte for byte, leaving the source untouched', async () => {
    const src = await makeCheckpointDir(root, 1024 * 1024);
    const before = await treeDigest(src);
    const store = await open();
    const info = await store.stageFromDirectory(src, { handoverKey: 'alloc-2/web' });
    expect(info.manifestDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(store.list().map((c) => c.checkpointId)).toEqual([info.checkpointId]);
    await store.materialize(info.checkpointId, join(root, 'out'));
    expect(await treeDigest(join(root, 'out'))).toEqual(before);
    expect(await treeDigest(src)).toEqual(before);
  });

  it('encrypts at rest: no staged file contains a known plaintext marker', async () => {
    const src = join(root, 'src');
    const marker = 'NOMAD-CHAIN-PLAINTEXT-MARKER-1234567890';
    await makeCheckpointDir(root, 256 * 1024);
    await writeFile(join(root, 'images', 'marker.img'), Buffer.from(marker.repeat(5000)));
    const store = await open();
    await store.stageFromDirectory(join(root, 'images'), { handoverKey: marker, checkpointId: `${marker}-id` });
    const files = await filesUnder(join(root, 'store'));
    // A segment of sealed chunks and the checkpoint's record.
    expect(files.length).toBeGreaterThanOrEqual(2);
    for (const file of files) {
      const content = await readFile(file);
      expect(content.includes(marker)).toBe(false);
      expect(content.includes(Buffer.from(marker).subarray(0, 16))).toBe(false);
      expect(file.includes(marker)).toBe(false);
    }
    expect(src).toBeDefined();
  });

  it('refuses a tampered chunk: coded error and no target directory', async () => {
    const src = await makeCheckpointDir(root, 256 * 1024);
    const store = await open();
    const info = await store.stageFromDirectory(src, { handoverKey: 'k' });
    const [segment] = await filesUnder(join(root, 'store', 'chunks'));
    const bytes = await readFile(segment as string);
    const at = Math.floor(bytes.length / 2);
    bytes.writeUInt8(bytes.readUInt8(at) ^ 0x40, at);
    await writeFile(segment as string, bytes);
    await expect(store.materialize(info.checkpointId, join(root, 'out'))).rejects.toMatchObject({
      code: 'NC_STORE_CHUNK_CORRUPT',
    });
    await expect(stat(join(root, 'out'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(root)).filter((n) => n.startsWith('out'))).toEqual([]);
  });

  it('refuses chunks swapped for each other in their segment: each is sealed for its own digest', async () => {
    const src = join(root, 'two');
    await mkdir(src);
    // Two files of one fixed-size page chunk each: two sealed blobs of equal length, back to back.
    await writeFile(join(src, 'pages-1.img'), pseudoRandom('swap-a', 128 * 1024));
    await writeFile(join(src, 'pages-2.img'), pseudoRandom('swap-b', 128 * 1024));
    const store = await open();
    const info = await store.stageFromDirectory(src, { handoverKey: 'k' });
    const segments = await filesUnder(join(root, 'store', 'chunks'));
    expect(segments).toHaveLength(1);
    const bytes = await readFile(segments[0] as string);
    const half = bytes.length / 2;
    await writeFile(segments[0] as string, Buffer.concat([bytes.subarray(half), bytes.subarray(0, half)]));
    await expect(store.materialize(info.checkpointId, join(root, 'out'))).rejects.toMatchObject({
      code: 'NC_STORE_CHUNK_CORRUPT',
    });
    await expect(stat(join(root, 'out'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a truncated segment, and drops a checkpoint whose segment is cut short on reopening', async () => {
    const src = await makeCheckpointDir(root, 256 * 1024);
    const store = await open();
    const info = await store.stageFromDirectory(src, { handoverKey: 'k' });
    const [victim] = await filesUnder(join(root, 'store', 'chunks'));
    const bytes = await readFile(victim as string);
    await writeFile(victim as string, bytes.subarray(0, bytes.length - 1));
    await expect(store.materialize(info.checkpointId, join(root, 'out'))).rejects.toMatchObject({
      code: 'NC_STORE_CHUNK_CORRUPT',
    });
    await store.close();
    const reopened = await open();
    expect(reopened.list()).toEqual([]);
    await reopened.close();
    expect(await filesUnder(join(root, 'store', 'chunks'))).toEqual([]);
  });

  it('a sidecar killed mid-append leaves nothing filed: a torn segment tail is dropped on reopening', async () => {
    const src = await makeCheckpointDir(root, 256 * 1024);
    const store = await open();
    const info = await store.stageFromDirectory(src, { handoverKey: 'k' });
    await store.close();
    // A second transfer's segment, torn mid-chunk, and no record naming it (the commit never came).
    await writeFile(join(root, 'store', 'chunks', 'segments', '99.seg'), randomBytes(70_000));
    const reopened = await open();
    expect(reopened.list().map((c) => c.checkpointId)).toEqual([info.checkpointId]);
    expect(await filesUnder(join(root, 'store', 'chunks'))).toHaveLength(1);
    await reopened.materialize(info.checkpointId, join(root, 'out'));
    expect(await treeDigest(join(root, 'out'))).toEqual(await treeDigest(src));
  });

  it('a record that outlived a crash mid-deletion does not cost a newer checkpoint its chunks', async () => {
    const dir = async (name: string, files: Record<string, string>): Promise<string> => {
      const path = join(root, name);
      await mkdir(path);
      for (const [file, seed] of Object.entries(files))
        await writeFile(join(path, file), pseudoRandom(seed, 128 * 1024));
      return path;
    };
    const store = await open();
    const x = await store.stageFromDirectory(await dir('x', { 'pages-1.img': 'f', 'pages-2.img': 'g' }), {
      handoverKey: 'x',
      createdAtUnixMs: 1,
    });
    const z = await store.stageFromDirectory(await dir('z', { 'pages-2.img': 'g' }), {
      handoverKey: 'z',
      createdAtUnixMs: 2,
    });
    const recordsDir = join(root, 'store', 'checkpoints');
    const before = new Set(await readdir(recordsDir));
    const [xRecord] = [...before];
    const saved = new Map<string, Buffer>();
    for (const name of before) saved.set(name, await readFile(join(recordsDir, name)));
    store.delete(x.checkpointId);
    const y = await store.stageFromDirectory(await dir('y', { 'pages-1.img': 'f' }), {
      handoverKey: 'y',
      createdAtUnixMs: 3,
    });
    await store.close();
    // X's record comes back, as if the sidecar died before its deletion reached the disk.
    for (const [name, bytes] of saved) await writeFile(join(recordsDir, name), bytes);
    expect(xRecord).toBeDefined();
    const reopened = await open();
    expect(new Set(reopened.list().map((c) => c.checkpointId))).toEqual(
      new Set([x.checkpointId, y.checkpointId, z.checkpointId]),
    );
    reopened.delete(x.checkpointId);
    await reopened.close();
    const again = await open();
    await again.materialize(y.checkpointId, join(root, 'out'));
    expect(await treeDigest(join(root, 'out'))).toEqual(await treeDigest(join(root, 'y')));
  });

  it('refuses a tampered checkpoint record', async () => {
    const src = await makeCheckpointDir(root, 128 * 1024);
    const store = await open();
    const info = await store.stageFromDirectory(src, { handoverKey: 'k' });
    const [record] = await filesUnder(join(root, 'store', 'checkpoints'));
    const bytes = await readFile(record as string);
    bytes.writeUInt8(bytes.readUInt8(30) ^ 1, 30);
    await writeFile(record as string, bytes);
    await expect(store.materialize(info.checkpointId, join(root, 'out'))).rejects.toMatchObject({
      code: 'NC_STORE_MANIFEST_CORRUPT',
    });
    await expect(stat(join(root, 'out'))).rejects.toMatchObject({ code: 'ENOENT' });
    // Reopened, the store drops what it cannot authenticate.
    const reopened = await open();
    expect(reopened.list()).toEqual([]);
  });

  it('keeps checkpoints across a restart, and refuses them under another key', async () => {
    const src = await makeCheckpointDir(root, 128 * 1024);
    const info = await (await open()).stageFromDirectory(src, { handoverKey: 'k' });
    const again = await open();
    expect(again.get(info.checkpointId)?.manifestDigest).toBe(info.manifestDigest);
    await again.materialize(info.checkpointId, join(root, 'out'));
    expect(await treeDigest(join(root, 'out'))).toEqual(await treeDigest(src));
    key = randomBytes(32);
    expect((await open()).list()).toEqual([]);
  });

  it('stays within maxBytes, evicting the least recently used checkpoint', async () => {
    const store = await open(3 * 1024 * 1024);
    const ids: string[] = [];
    for (let i = 0; i < 4; i += 1) {
      const dir = join(root, `src-${i}`);
      await mkdir(dir);
      await writeFile(join(dir, 'pages.img'), pseudoRandom(`evict-${i}`, 1024 * 1024));
      ids.push((await store.stageFromDirectory(dir, { handoverKey: `k${i}` })).checkpointId);
      if (i === 1) store.get(ids[0] as string);
      const used = (await filesUnder(join(root, 'store'))).length;
      expect(used).toBeGreaterThan(0);
      expect(store.usage().usedBytes).toBeLessThanOrEqual(3 * 1024 * 1024);
    }
    expect(store.has(ids[1] as string)).toBe(false);
    expect(store.has(ids[3] as string)).toBe(true);
    let onDisk = 0;
    await store.close();
    for (const f of await filesUnder(join(root, 'store'))) onDisk += (await stat(f)).size;
    expect(onDisk).toBeLessThanOrEqual(3 * 1024 * 1024);
  });

  it('fails with NC_STORE_FULL when a checkpoint cannot fit at all', async () => {
    const store = await open(512 * 1024);
    await writeFile(join(root, 'big.img'), pseudoRandom('big', 1024 * 1024));
    await expect(store.stageFromDirectory(root, { handoverKey: 'k' })).rejects.toMatchObject({ code: 'NC_STORE_FULL' });
    expect(store.list()).toEqual([]);
  });

  it('finds by handover key, waiting for a checkpoint to arrive, and deletes after restore', async () => {
    const src = await makeCheckpointDir(root, 128 * 1024);
    const store = await open();
    expect(await store.find('alloc-9/web', 0)).toBeUndefined();
    expect(await store.find('alloc-9/web', 20)).toBeUndefined();
    const waiting = store.find('alloc-9/web', 60_000);
    const staged = await store.stageFromDirectory(src, { handoverKey: 'alloc-9/web' });
    expect((await waiting)?.checkpointId).toBe(staged.checkpointId);
    // A newer round under the same key replaces the older one.
    const newer = await store.stageFromDirectory(src, { handoverKey: 'alloc-9/web', checkpointId: 'round-2' });
    expect(store.has(staged.checkpointId)).toBe(false);
    expect((await store.find('alloc-9/web', 0))?.checkpointId).toBe('round-2');
    await store.materialize(newer.checkpointId, join(root, 'out'));
    expect(store.delete(newer.checkpointId)).toBe(true);
    await store.close();
    expect(await filesUnder(join(root, 'store', 'chunks'))).toEqual([]);
    expect(await filesUnder(join(root, 'store', 'checkpoints'))).toEqual([]);
  });

  it('refuses a non-empty target, an unknown id and a bad key', async () => {
    const src = await makeCheckpointDir(root, 64 * 1024);
    const store = await open();
    const info = await store.stageFromDirectory(src, { handoverKey: 'k' });
    await expect(store.materialize(info.checkpointId, src)).rejects.toMatchObject({ code: 'NC_STORE_TARGET_EXISTS' });
    await expect(store.materialize('nope', join(root, 'x'))).rejects.toMatchObject({ code: 'NC_STORE_NOT_FOUND' });
    await expect(
      CheckpointStore.open({ dir: join(root, 's2'), key: randomBytes(16), maxBytes: 1000, logger: silentLogger() }),
    ).rejects.toMatchObject({
      code: 'NC_STORE_KEY_INVALID',
    });
  });

  it('makes a node key once and reads it back', async () => {
    const path = join(root, 'keys', 'store.key');
    const a = await loadOrCreateStoreKey(path);
    expect(a.length).toBe(32);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await loadOrCreateStoreKey(path)).equals(a)).toBe(true);
    await writeFile(path, 'short');
    await expect(loadOrCreateStoreKey(path)).rejects.toMatchObject({ code: 'NC_STORE_KEY_INVALID' });
  });
});

// Pushes to one target share chunks (identical tasks, incremental rounds): a push told "have" for a chunk
// must still find it at its commit, whatever other pushes commit or delete meanwhile (bench:drain, 4 moves at once).
describe('CheckpointStore: concurrent pushes sharing chunks', () => {
  const ttlMs = 10 * 60_000;
  let root: string;
  let key: Buffer;
  let clock: FakeClock;
  const open = (maxBytes = 256 * 1024 * 1024): Promise<CheckpointStore> =>
    CheckpointStore.open({
      dir: join(root, 'store'),
      key,
      maxBytes,
      logger: silentLogger(),
      clock,
      pendingTtlMs: ttlMs,
    });
  const digestsOf = (sealed: SealedManifest): Buffer[] =>
    [...distinctChunks(sealed.manifest).keys()].map((hex) => Buffer.from(hex, 'hex'));
  const commitAs = (store: CheckpointStore, id: string, sealed: SealedManifest): Promise<unknown> =>
    store.commit(infoFromMeta({ handoverKey: id, checkpointId: id }, sealed.digest), sealed.bytes);

  beforeEach(async () => {
    root = await tempDir('store-race');
    key = randomBytes(32);
    clock = new FakeClock(undefined, { sleep: 'waits' });
  });
  afterEach(async () => removeAll(root));

  it('a push told "have" for chunks only a restored checkpoint held commits after that checkpoint is deleted', async () => {
    const src = await makeCheckpointDir(root, 256 * 1024);
    const store = await open();
    await store.stageFromDirectory(src, { handoverKey: 'c', checkpointId: 'c' });
    const sealed = await store.readManifest('c');
    // Push A asks HaveChunks: every chunk is held, by checkpoint c alone.
    expect(store.claimChunks(digestsOf(sealed))).toEqual(digestsOf(sealed).map(() => true));
    // c is restored and deleted (a checkpoint is restored at most once) before A commits.
    expect(store.delete('c')).toBe(true);
    await commitAs(store, 'a', sealed);
    await store.materialize('a', join(root, 'out'));
    expect(await treeDigest(join(root, 'out'))).toEqual(await treeDigest(src));
  });

  it("another push committing the same chunks does not cancel the first push's claim", async () => {
    const src = await makeCheckpointDir(root, 256 * 1024);
    const store = await open();
    await store.stageFromDirectory(src, { handoverKey: 'c', checkpointId: 'c' });
    const sealed = await store.readManifest('c');
    store.claimChunks(digestsOf(sealed)); // push A: "have"
    store.claimChunks(digestsOf(sealed)); // push B: "have"
    await commitAs(store, 'b', sealed);
    store.delete('c');
    store.delete('b');
    await commitAs(store, 'a', sealed);
    await store.materialize('a', join(root, 'out'));
    expect(await treeDigest(join(root, 'out'))).toEqual(await treeDigest(src));
    // Every claim was consumed by its commit: deleting the last checkpoint frees the chunks at once.
    store.delete('a');
    expect(store.usage()).toMatchObject({ chunks: 0, pendingBytes: 0 });
    await store.close();
    expect(await filesUnder(join(root, 'store', 'chunks'))).toEqual([]);
  });

  it('a claim no push commits holds its chunks within the bound until it expires, then they go', async () => {
    const store = await open(3 * 1024 * 1024);
    const dirC = join(root, 'c');
    const dirD = join(root, 'd');
    await mkdir(dirC);
    await mkdir(dirD);
    await writeFile(join(dirC, 'pages.img'), pseudoRandom('claimed', 2 * 1024 * 1024));
    await writeFile(join(dirD, 'pages.img'), pseudoRandom('newcomer', 2 * 1024 * 1024));
    await store.stageFromDirectory(dirC, { handoverKey: 'c', checkpointId: 'c' });
    const sealed = await store.readManifest('c');
    store.claimChunks(digestsOf(sealed)); // a push that is told "have" and then never commits
    store.delete('c');
    // Claimed bytes count against maxBytes: no room for d while the claim lasts.
    await expect(store.stageFromDirectory(dirD, { handoverKey: 'd' })).rejects.toMatchObject({ code: 'NC_STORE_FULL' });
    expect(store.usage().usedBytes).toBeLessThanOrEqual(3 * 1024 * 1024);
    clock.advance(ttlMs);
    await store.stageFromDirectory(dirD, { handoverKey: 'd', checkpointId: 'd' });
    expect(store.has('d')).toBe(true);
    expect(store.usage().usedBytes).toBeLessThanOrEqual(3 * 1024 * 1024);
  });
});
