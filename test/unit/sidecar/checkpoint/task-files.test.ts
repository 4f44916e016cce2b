import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { TaskSpec } from '../../../../proto/gen/chain/v1/sidecar';
import { treePath } from '../../../../sidecar/src/checkpoint/file-tree/file-tree';
import { restoreTaskFiles, TaskFiles } from '../../../../sidecar/src/checkpoint/file-tree/task-files';
import type { CheckpointMeta } from '../../../../sidecar/src/checkpoint/manifest';
import {
  describeImages,
  manifestDigest,
  verifyCheckpoint,
  writeMeta,
} from '../../../../sidecar/src/checkpoint/manifest';
import { Restorer } from '../../../../sidecar/src/checkpoint/restore';
import { RetainedCheckpoints } from '../../../../sidecar/src/checkpoint/retained';
import type { TaskRuntime } from '../../../../sidecar/src/runtime/task-runtime';
import { FakeClock } from '../../../fakes/fake-clock';

const log = pino({ level: 'silent' });

// Issue #10: a task's files are part of its checkpoint, pinned by the metadata and limited before the freeze.
describe('TaskFiles', () => {
  let base: string;
  let spec: TaskSpec;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'nc-task-files-'));
    spec = TaskSpec.fromPartial({ allocDir: join(base, 'alloc'), localDir: join(base, 'local') });
    await mkdir(join(spec.allocDir, 'data'), { recursive: true });
    await mkdir(join(spec.allocDir, 'logs'), { recursive: true });
    await mkdir(spec.localDir, { recursive: true });
    await writeFile(join(spec.allocDir, 'data', 'db'), Buffer.alloc(4096, 3));
    await writeFile(join(spec.localDir, 'conf'), 'x=1');
  });
  afterEach(() => rm(base, { recursive: true, force: true }));

  /** Takes the task's files into `dir` and writes its metadata, listing whatever images `dir` already holds. */
  async function checkpointWithFiles(
    dir: string,
    checkpointId: string,
    mode: CheckpointMeta['mode'],
  ): Promise<CheckpointMeta> {
    const files = new TaskFiles({ maxBytes: 0, overLimit: 'cold-start' }, log);
    const fileTree = await files.take(
      't',
      (await files.plan('t', spec))?.roots ?? new Map<string, string>(),
      dir,
      false,
    );
    const meta: CheckpointMeta = {
      version: 1,
      checkpointId,
      handoverKey: mode === 'files' ? 'files-ahead/t' : 'k',
      source: { taskId: 't', allocId: 'a', taskName: 'n', jobId: 'j', namespace: 'default' },
      spec,
      sourceNode: 'n1',
      createdAtMs: 1,
      mode,
      files: await describeImages(dir),
      fileTree,
    };
    await writeMeta(dir, meta);
    return meta;
  }

  it('refuses a task over the limit before anything is frozen, naming the option', async () => {
    const files = new TaskFiles({ maxBytes: 1000, overLimit: 'cold-start' }, log);
    await expect(files.plan('t', spec)).rejects.toMatchObject({
      code: 'NC_FILES_TOO_LARGE',
      message: expect.stringContaining('filesMaxSize') as unknown,
    });
  });

  it('refuses, coded and before the freeze, a task whose own directory was removed under it', async () => {
    const files = new TaskFiles({ maxBytes: 0, overLimit: 'cold-start' }, log);
    await rm(spec.allocDir, { recursive: true });
    await expect(files.plan('t', spec)).rejects.toMatchObject({
      code: 'NC_FILES_UNREADABLE',
      message: expect.stringContaining('ENOENT') as unknown,
    });
  });

  it('moves memory only when the operator chose so for a task over the limit', async () => {
    const files = new TaskFiles({ maxBytes: 1000, overLimit: 'memory-only' }, log);
    expect(await files.plan('t', spec)).toBeUndefined();
  });

  it('takes alloc and local, reads again only what changed, and restores into other directories', async () => {
    const files = new TaskFiles({ maxBytes: 0, overLimit: 'cold-start' }, log);
    const roots = (await files.plan('t', spec))?.roots;
    if (roots === undefined) throw new Error('no roots planned');
    const first = await files.take('t', roots, join(base, 'c1'), false);
    expect(first).toMatchObject({ totalBytes: 4096 + 3, hashedBytes: 4096 + 3 });
    await appendFile(join(spec.localDir, 'conf'), '\ny=2');
    const second = await files.take('t', roots, join(base, 'c2'), true);
    expect(second).toMatchObject({ totalBytes: 4096 + 7, hashedBytes: 7 });

    const target = TaskSpec.fromPartial({ allocDir: join(base, 'b-alloc'), localDir: join(base, 'b-local') });
    const placed = await restoreTaskFiles(join(base, 'c2'), second, target);
    expect(placed?.placedBytes).toBe(4096 + 7);
    expect(await readFile(join(target.localDir, 'conf'), 'utf8')).toBe('x=1\ny=2');
    expect(await readFile(join(target.allocDir, 'data', 'db'))).toEqual(Buffer.alloc(4096, 3));
  });

  it("leaves Nomad's log collector files behind: the replacement's collector owns its own", async () => {
    await writeFile(join(spec.allocDir, 'logs', 'web.stdout.0'), 'old logmon output');
    await writeFile(join(spec.allocDir, 'logs', 'app.log'), 'the task writes this itself');
    const files = new TaskFiles({ maxBytes: 0, overLimit: 'cold-start' }, log);
    const roots = (await files.plan('t', spec))?.roots;
    if (roots === undefined) throw new Error('no roots planned');
    const ref = await files.take('t', roots, join(base, 'c'), false);
    const target = TaskSpec.fromPartial({ allocDir: join(base, 'b-alloc'), localDir: join(base, 'b-local') });
    await mkdir(join(target.allocDir, 'logs'), { recursive: true });
    await writeFile(join(target.allocDir, 'logs', 'web.stdout.0'), 'new');
    await restoreTaskFiles(join(base, 'c'), ref, target);
    expect(await readFile(join(target.allocDir, 'logs', 'web.stdout.0'), 'utf8')).toBe('new');
    expect(await readFile(join(target.allocDir, 'logs', 'app.log'), 'utf8')).toBe('the task writes this itself');
  });

  it('is pinned by the checkpoint metadata: an altered tree is refused before any restore', async () => {
    const dir = join(base, 'ckpt');
    await mkdir(join(dir, 'images'), { recursive: true });
    await writeFile(join(dir, 'images', 'pages-1.img'), 'pages');
    const meta = await checkpointWithFiles(dir, 'c1', 'stop-and-copy');
    const fileTree = meta.fileTree;
    if (fileTree === undefined) throw new Error('no file tree');
    expect(manifestDigest(meta)).not.toBe(
      manifestDigest({ ...meta, fileTree: { ...fileTree, sha256: '0'.repeat(64) } }),
    );
    await expect(verifyCheckpoint(dir)).resolves.toMatchObject({ checkpointId: 'c1' });
    await appendFile(treePath(dir), ' ');
    await expect(verifyCheckpoint(dir)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_CORRUPT' });
    await rm(treePath(dir));
    await expect(verifyCheckpoint(dir)).rejects.toMatchObject({ code: 'NC_CHECKPOINT_TRUNCATED' });
  });

  // The README's NC_FILES_CORRUPT reaches whoever asked for the restore, not a generic NC_RESTORE_FAILED.
  it('refuses a checkpoint whose file content does not match its digest, with the files code, before any process', async () => {
    const dir = join(base, 'corrupt');
    await mkdir(join(dir, 'images'), { recursive: true });
    await checkpointWithFiles(dir, 'c2', 'stop-and-copy');
    const data = join(dir, 'files', 'data');
    const [first] = await readdir(data);
    if (first === undefined) throw new Error('no file content in the checkpoint');
    const bytes = await readFile(join(data, first));
    bytes[0] = (bytes[0] ?? 0) ^ 0xff;
    await writeFile(join(data, first), bytes);
    const target = TaskSpec.fromPartial({ allocDir: join(base, 'b-alloc'), localDir: join(base, 'b-local') });
    const runtime = { prepareDirs: jest.fn().mockResolvedValue(target), startFromImages: jest.fn() };
    const restorer = new Restorer({ runtime: runtime as unknown as TaskRuntime, log });
    await expect(
      restorer.restore({
        identity: { taskId: 'x', allocId: 'a', taskName: 'n', jobId: 'j', namespace: 'default' },
        checkpointDir: dir,
        spec,
      }),
    ).rejects.toMatchObject({ code: 'NC_FILES_CORRUPT' });
    expect(runtime.startFromImages).not.toHaveBeenCalled();
  });

  it('never restores a files-only round sent ahead of a freeze: it holds no process', async () => {
    const dir = join(base, 'ahead');
    await mkdir(join(dir, 'images'), { recursive: true });
    await checkpointWithFiles(dir, 'ahead-1', 'files');
    const runtime = { prepareDirs: jest.fn(), startFromImages: jest.fn() };
    const restorer = new Restorer({ runtime: runtime as unknown as TaskRuntime, log });
    await expect(
      restorer.restore({
        identity: { taskId: 'x', allocId: 'a', taskName: 'n', jobId: 'j', namespace: 'default' },
        checkpointDir: dir,
        spec,
      }),
    ).rejects.toMatchObject({ code: 'NC_RESTORE_FAILED' });
    expect(runtime.startFromImages).not.toHaveBeenCalled();
  });
});

describe('RetainedCheckpoints', () => {
  let base: string;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'nc-retained-'));
  });
  afterEach(() => rm(base, { recursive: true, force: true }));

  const dumped = async (id: string): Promise<{ dir: string; meta: CheckpointMeta }> => {
    const dir = join(base, 'dumps', id);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'checkpoint.json'), '{}');
    return { dir, meta: { checkpointId: id } as CheckpointMeta };
  };

  it('keeps a hand-over copy until it is released', async () => {
    const retained = new RetainedCheckpoints(
      { dir: join(base, 'retained'), retentionMs: 60_000 },
      new FakeClock(undefined, { sleep: 'waits' }),
      log,
    );
    const { dir, meta } = await dumped('c1');
    await retained.keep(dir, meta);
    expect(await retained.path('c1')).toBe(join(base, 'retained', 'c1'));
    expect(await retained.path('../dumps')).toBeUndefined();
    expect(await retained.release('c1')).toBe(true);
    expect(await retained.path('c1')).toBeUndefined();
    expect(await retained.release('c1')).toBe(false);
  });

  it('drops copies older than the retention when it keeps a new one', async () => {
    const retained = new RetainedCheckpoints(
      { dir: join(base, 'retained'), retentionMs: 60_000 },
      new FakeClock(undefined, { sleep: 'waits' }),
      log,
    );
    const old = await dumped('old');
    await retained.keep(old.dir, old.meta);
    await utimes(join(base, 'retained', 'old'), 1, 1);
    const fresh = await dumped('fresh');
    await retained.keep(fresh.dir, fresh.meta);
    expect(await retained.path('old')).toBeUndefined();
    expect(await retained.path('fresh')).toBeDefined();
  });
});
