import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TaskSpec } from '../../../../proto/gen/chain/v1/sidecar';
import type { CheckpointMeta } from '../../../../sidecar/src/checkpoint/manifest';
import {
  describeImages,
  manifestDigest,
  verifyCheckpoint,
  writeMeta,
} from '../../../../sidecar/src/checkpoint/manifest';

describe('checkpoint manifest', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'a1-manifest-'));
    await mkdir(join(dir, 'images', 'sub'), { recursive: true });
    await writeFile(join(dir, 'images', 'pages-1.img'), Buffer.alloc(8192, 1));
    await writeFile(join(dir, 'images', 'sub', 'x.img'), 'x');
    const meta: CheckpointMeta = {
      version: 1,
      checkpointId: 'c1',
      handoverKey: 'k',
      source: { taskId: 't', allocId: 'a', taskName: 'n', jobId: 'j', namespace: 'default' },
      spec: TaskSpec.fromPartial({ argv: ['/bin/true'] }),
      sourceNode: 'n1',
      createdAtMs: 1,
      mode: 'stop-and-copy',
      files: await describeImages(dir),
    };
    await writeMeta(dir, meta);
  });

  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('verifies an intact checkpoint and names its content by digest', async () => {
    const meta = await verifyCheckpoint(dir);
    expect(meta.files.map((f) => f.path)).toEqual(['pages-1.img', 'sub/x.img']);
    expect(manifestDigest(meta)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses missing, short, altered and unlisted files with distinct codes', async () => {
    await truncate(join(dir, 'images', 'pages-1.img'), 10);
    await expect(verifyCheckpoint(dir)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_TRUNCATED' });
    await writeFile(join(dir, 'images', 'pages-1.img'), Buffer.alloc(8192, 2));
    await expect(verifyCheckpoint(dir)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_CORRUPT' });
    await writeFile(join(dir, 'images', 'pages-1.img'), Buffer.alloc(8192, 1));
    await writeFile(join(dir, 'images', 'extra.img'), 'e');
    await expect(verifyCheckpoint(dir)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_CORRUPT' });
    await rm(join(dir, 'images', 'extra.img'));
    await rm(join(dir, 'images', 'sub', 'x.img'));
    await expect(verifyCheckpoint(dir)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_TRUNCATED' });
  });

  it('refuses a directory without metadata or with an unknown format', async () => {
    await expect(verifyCheckpoint(join(dir, 'images'))).rejects.toMatchObject({ code: 'NC_CHECKPOINT_NOT_FOUND' });
    await writeFile(join(dir, 'checkpoint.json'), JSON.stringify({ version: 99, files: [], checkpointId: 'c' }));
    await expect(verifyCheckpoint(dir)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_CORRUPT' });
    await writeFile(join(dir, 'checkpoint.json'), '{');
    await expect(verifyCheckpoint(dir)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_CORRUPT' });
  });

  it('lists each image with the size and sha256 of the same bytes, whole-read or streamed', async () => {
    const big = Buffer.alloc(16 * 1024 * 1024 + 5, 7);
    await writeFile(join(dir, 'images', 'empty.img'), Buffer.alloc(0));
    await writeFile(join(dir, 'images', 'pages-2.img'), big);
    const digest = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
    expect(await describeImages(dir)).toEqual([
      { path: 'empty.img', sizeBytes: 0, sha256: digest(Buffer.alloc(0)) },
      { path: 'pages-1.img', sizeBytes: 8192, sha256: digest(Buffer.alloc(8192, 1)) },
      { path: 'pages-2.img', sizeBytes: big.length, sha256: digest(big) },
      { path: 'sub/x.img', sizeBytes: 1, sha256: digest('x') },
    ]);
  });
});
