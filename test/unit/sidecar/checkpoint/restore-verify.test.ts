import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { TaskSpec } from '../../../../proto/gen/chain/v1/sidecar';
import type { CheckpointMeta } from '../../../../sidecar/src/checkpoint/manifest';
import { describeImages, writeMeta } from '../../../../sidecar/src/checkpoint/manifest';
import { Restorer } from '../../../../sidecar/src/checkpoint/restore';
import type { TaskRuntime } from '../../../../sidecar/src/runtime/task-runtime';

const log = pino({ level: 'silent' });
const IDENTITY = { taskId: 'x', allocId: 'a', taskName: 'n', jobId: 'j', namespace: 'default' };

// Issue #12: a checkpoint the store materialised was checked chunk by chunk on receipt; one read from disk was not.
describe('Restorer verification', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nc-restore-verify-'));
    await mkdir(join(dir, 'images'), { recursive: true });
    await writeFile(join(dir, 'images', 'pages-1.img'), Buffer.alloc(8192, 5));
    await writeFile(join(dir, 'images', 'core-1.img'), 'core');
    const meta: CheckpointMeta = {
      version: 1,
      checkpointId: 'c1',
      handoverKey: 'k',
      source: IDENTITY,
      spec: TaskSpec.fromPartial({}),
      sourceNode: 'n1',
      createdAtMs: 1,
      mode: 'stop-and-copy',
      files: await describeImages(dir),
    };
    await writeMeta(dir, meta);
    // Altered after its digest was taken: only hashing the image can tell.
    const pages = await readFile(join(dir, 'images', 'pages-1.img'));
    pages[100] = 6;
    await writeFile(join(dir, 'images', 'pages-1.img'), pages);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  function restorer(): { restorer: Restorer; started: jest.Mock } {
    const started = jest.fn().mockResolvedValue({ pid: 1 });
    const runtime = {
      prepareDirs: jest.fn().mockImplementation((_identity: unknown, spec: TaskSpec) => Promise.resolve(spec)),
      startFromImages: started,
    };
    return { restorer: new Restorer({ runtime: runtime as unknown as TaskRuntime, log }), started };
  }

  it('hashes the images of a checkpoint read from disk, and refuses one that does not match before CRIU runs', async () => {
    const { restorer: r, started } = restorer();
    const request = { identity: IDENTITY, checkpointDir: dir, spec: TaskSpec.fromPartial({}) };
    await expect(r.restore(request)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_CORRUPT' });
    await expect(r.restore({ ...request, verifiedByStore: false })).rejects.toMatchObject({
      code: 'NC_CHECKPOINT_CORRUPT',
    });
    expect(started).not.toHaveBeenCalled();
  });

  it('does not hash again the images of a checkpoint the store materialised', async () => {
    const { restorer: r, started } = restorer();
    const request = { identity: IDENTITY, checkpointDir: dir, spec: TaskSpec.fromPartial({}), verifiedByStore: true };
    await expect(r.restore(request)).resolves.toMatchObject({ meta: { checkpointId: 'c1' } });
    expect(started).toHaveBeenCalledTimes(1);
  });

  it('still refuses a store-materialised directory without readable metadata', async () => {
    await writeFile(join(dir, 'checkpoint.json'), '{');
    const { restorer: r, started } = restorer();
    const request = { identity: IDENTITY, checkpointDir: dir, spec: TaskSpec.fromPartial({}), verifiedByStore: true };
    await expect(r.restore(request)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_CORRUPT' });
    expect(started).not.toHaveBeenCalled();
  });
});
