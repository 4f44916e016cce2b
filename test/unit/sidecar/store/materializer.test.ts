import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { materializeTree } from '../../../../sidecar/src/store/materializer';
import { ContentDefinedChunker } from '../../../../sidecar/src/transfer/chunker';
import { ManifestBuilder } from '../../../../sidecar/src/transfer/manifest';
import type { Manifest } from '../../../../proto/gen/chain/v1/transfer';
import { pseudoRandom } from '../../../contract/transfer/fixtures';

// Issue #12: a small task's checkpoint is ~30 files; several are written at once.
describe('materializeTree', () => {
  let root: string;
  let manifest: Manifest;
  const chunks = new Map<string, Buffer>();
  const files = new Map<string, { data: Buffer; mode: number }>();

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'nc-materialize-'));
    const src = join(root, 'src');
    await mkdir(join(src, 'images', 'deep'), { recursive: true });
    files.clear();
    for (let i = 0; i < 20; i += 1) {
      const name = i % 3 === 0 ? `images/deep/f-${i}.img` : `images/f-${i}.img`;
      files.set(name, { data: pseudoRandom(`m${i}`, i * 7001), mode: i % 2 === 0 ? 0o640 : 0o600 });
    }
    files.set('checkpoint.json', { data: Buffer.from('{}'), mode: 0o644 });
    for (const [name, { data, mode }] of files) {
      await writeFile(join(src, name), data);
      await chmod(join(src, name), mode);
    }
    const builder = new ManifestBuilder();
    chunks.clear();
    for await (const event of new ContentDefinedChunker().chunkDirectory(src)) {
      builder.add(event);
      if (event.kind === 'chunk') chunks.set(event.digest.toString('hex'), Buffer.from(event.data));
    }
    manifest = builder.seal().manifest;
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('writes every file with its bytes and mode', async () => {
    const target = join(root, 'out');
    await materializeTree(manifest, target, async (hex) => chunks.get(hex) as Buffer, undefined);
    for (const [name, { data, mode }] of files) {
      expect((await readFile(join(target, name))).equals(data)).toBe(true);
      expect((await stat(join(target, name))).mode & 0o7777).toBe(mode);
    }
    expect((await readdir(root)).sort()).toEqual(['out', 'src']);
  });

  it('leaves neither the target nor its partial copy when one chunk cannot be read, whichever file needs it', async () => {
    const bad = [...chunks.keys()][Math.floor(chunks.size / 2)];
    const failure = Object.assign(new Error('corrupt'), { code: 'NC_STORE_CHUNK_CORRUPT' });
    const read = async (hex: string): Promise<Buffer> => {
      if (hex === bad) throw failure;
      return chunks.get(hex) as Buffer;
    };
    await expect(materializeTree(manifest, join(root, 'out'), read, undefined)).rejects.toBe(failure);
    expect(await readdir(root)).toEqual(['src']);
  });
});
