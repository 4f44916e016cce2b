import { execFileSync } from 'node:child_process';
import {
  appendFile,
  chown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { taskRoots } from '../../../../sidecar/src/checkpoint/file-tree/file-tree';
import { restoreFileTree } from '../../../../sidecar/src/checkpoint/file-tree/restore-tree';
import { snapshotFiles } from '../../../../sidecar/src/checkpoint/file-tree/snapshot';

// Issue #10: a task's files travel with its checkpoint, with everything CRIU and the program expect of them.
describe('file tree snapshot and restore', () => {
  let base: string;
  let alloc: string;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'nc-files-'));
    alloc = join(base, 'alloc');
    await mkdir(join(alloc, 'data', 'deep'), { recursive: true });
    await writeFile(join(alloc, 'data', 'db.sqlite'), Buffer.alloc(100_000, 7));
    await writeFile(join(alloc, 'data', 'deep', 'note.txt'), 'hello');
    await link(join(alloc, 'data', 'db.sqlite'), join(alloc, 'data', 'db.hardlink'));
    await symlink('data/deep/note.txt', join(alloc, 'current'));
    execFileSync('/usr/bin/mkfifo', ['-m', '640', join(alloc, 'pipe')]);
    const sparse = await open(join(alloc, 'sparse.img'), 'w');
    await sparse.write(Buffer.from('head'), 0, 4, 0);
    await sparse.write(Buffer.from('tail'), 0, 4, 8 * 1024 * 1024);
    await sparse.close();
    await chown(join(alloc, 'data', 'deep', 'note.txt'), 1234, 5678);
    await utimes(join(alloc, 'data', 'deep', 'note.txt'), 1_600_000_000, 1_600_000_000);
  });
  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('restores contents, modes, owners, mtimes, hard links, symlinks, fifos and holes', async () => {
    const checkpoint = join(base, 'ckpt');
    const tree = await snapshotFiles({
      roots: new Map([['alloc', alloc]]),
      checkpointDir: checkpoint,
      frozen: false,
      maxBytes: 0,
    });
    expect(tree.totalBytes).toBe(100_000 + 5 + 8 * 1024 * 1024 + 4);
    const target = join(base, 'target-alloc');
    await restoreFileTree(checkpoint, tree, new Map([['alloc', target]]));

    expect(await readFile(join(target, 'data', 'db.sqlite'))).toEqual(Buffer.alloc(100_000, 7));
    const a = await lstat(join(target, 'data', 'db.sqlite'));
    const b = await lstat(join(target, 'data', 'db.hardlink'));
    expect(b.ino).toBe(a.ino);
    expect(await readlink(join(target, 'current'))).toBe('data/deep/note.txt');
    expect((await lstat(join(target, 'pipe'))).isFIFO()).toBe(true);
    expect((await lstat(join(target, 'pipe'))).mode & 0o777).toBe(0o640);
    const note = await lstat(join(target, 'data', 'deep', 'note.txt'));
    expect([note.uid, note.gid, Math.round(note.mtimeMs / 1000)]).toEqual([1234, 5678, 1_600_000_000]);
    const sparse = await lstat(join(target, 'sparse.img'));
    expect(sparse.size).toBe(8 * 1024 * 1024 + 4);
    expect(sparse.blocks * 512).toBeLessThan(1024 * 1024);
    const bytes = await readFile(join(target, 'sparse.img'));
    expect(bytes.subarray(0, 4).toString()).toBe('head');
    expect(bytes.subarray(8 * 1024 * 1024).toString()).toBe('tail');
    expect(Math.round((await lstat(join(target, 'data'))).mtimeMs)).toBe(
      Math.round((await lstat(join(alloc, 'data'))).mtimeMs),
    );
  });

  it('hashes again only what changed since the previous round', async () => {
    const first = await snapshotFiles({
      roots: new Map([['alloc', alloc]]),
      checkpointDir: join(base, 'c1'),
      frozen: false,
      maxBytes: 0,
    });
    expect(first.hashedBytes).toBe(first.totalBytes);
    await appendFile(join(alloc, 'data', 'deep', 'note.txt'), ' world');
    const second = await snapshotFiles({
      roots: new Map([['alloc', alloc]]),
      checkpointDir: join(base, 'c2'),
      frozen: true,
      previous: first,
      maxBytes: 0,
    });
    expect(second.hashedBytes).toBe(11);
    const target = join(base, 'target');
    await restoreFileTree(join(base, 'c2'), second, new Map([['alloc', target]]));
    expect(await readFile(join(target, 'data', 'deep', 'note.txt'), 'utf8')).toBe('hello world');
  });

  it('changes nothing when restored onto the directories it was taken from (a rollback)', async () => {
    const checkpoint = join(base, 'ckpt');
    const tree = await snapshotFiles({
      roots: new Map([['alloc', alloc]]),
      checkpointDir: checkpoint,
      frozen: true,
      maxBytes: 0,
    });
    const before = await lstat(join(alloc, 'data', 'db.sqlite'));
    const result = await restoreFileTree(checkpoint, tree, new Map([['alloc', alloc]]));
    expect(result.placedBytes).toBe(0);
    expect((await lstat(join(alloc, 'data', 'db.sqlite'))).ino).toBe(before.ino);
  });

  it('leaves a socket file for CRIU to bind and never removes what the target already holds', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(alloc, 'app.sock'), resolve));
    try {
      const checkpoint = join(base, 'ckpt');
      const tree = await snapshotFiles({
        roots: new Map([['alloc', alloc]]),
        checkpointDir: checkpoint,
        frozen: false,
        maxBytes: 0,
      });
      expect(tree.roots[0]?.entries.find((e) => e.path === 'app.sock')?.kind).toBe('socket');
      const target = join(base, 'target');
      await mkdir(join(target, 'logs'), { recursive: true });
      await writeFile(join(target, 'logs', 'nomad.log'), 'kept');
      await restoreFileTree(checkpoint, tree, new Map([['alloc', target]]));
      expect(await readFile(join(target, 'logs', 'nomad.log'), 'utf8')).toBe('kept');
      await expect(lstat(join(target, 'app.sock'))).rejects.toThrow(/ENOENT/);
    } finally {
      server.close();
    }
  });

  it('refuses files over the limit before copying anything', async () => {
    await expect(
      snapshotFiles({
        roots: new Map([['alloc', alloc]]),
        checkpointDir: join(base, 'c'),
        frozen: false,
        maxBytes: 1000,
      }),
    ).rejects.toMatchObject({ code: 'NC_FILES_TOO_LARGE' });
    await expect(lstat(join(base, 'c'))).rejects.toThrow(/ENOENT/);
  });

  it('refuses content that does not match its digest', async () => {
    const checkpoint = join(base, 'ckpt');
    const tree = await snapshotFiles({
      roots: new Map([['alloc', alloc]]),
      checkpointDir: checkpoint,
      frozen: false,
      maxBytes: 0,
    });
    const data = tree.roots[0]?.entries.find((e) => e.path === 'data/deep/note.txt')?.data ?? '';
    await writeFile(join(checkpoint, 'files', 'data', data), 'HELLO');
    await expect(restoreFileTree(checkpoint, tree, new Map([['alloc', join(base, 't')]]))).rejects.toMatchObject({
      code: 'NC_FILES_CORRUPT',
    });
  });

  it("names a task's writable directories the same on every node", () => {
    const spec = { allocDir: '/n1/alloc', localDir: '/n1/local', binds: { '/srv/x': '/data' } };
    expect([...taskRoots(spec as never)]).toEqual([
      ['alloc', '/n1/alloc'],
      ['local', '/n1/local'],
      ['bind:/data', '/srv/x'],
    ]);
  });
});
