import { mkdtempSync, existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import {
  BackgroundCheckpointer,
  backgroundKey,
  TaskLockTable,
} from '../../../../sidecar/src/background/background-checkpointer';
import { SentLedger } from '../../../../sidecar/src/background/sent-ledger';
import type { CheckpointMeta } from '../../../../sidecar/src/checkpoint/manifest';
import { FakeClock } from '../../../fakes/fake-clock';

function meta(taskId: string, n: number): CheckpointMeta {
  return { checkpointId: `${taskId}-${n}`, handoverKey: backgroundKey(taskId) } as unknown as CheckpointMeta;
}

const BUDDY = '10.0.0.9:7450';

/** A sidecar's background checkpointer; a second one on the same data dir is that sidecar restarted. */
async function setup(
  tasks: { taskId: string; phase: string; exit?: { exitCode: number } }[],
  failShipFor: string[] = [],
  dataDir = mkdtempSync(join(tmpdir(), 'nc-bg-data-')),
) {
  const dumps: { taskId: string; leaveRunning: boolean; handoverKey: string }[] = [];
  const forgotten: string[] = [];
  const buddy = { reachable: true };
  const shipped: { checkpointId: string; peer: string }[] = [];
  const dirs: string[] = [];
  let n = 0;
  const log = pino({ level: 'silent' });
  const checkpointer = new BackgroundCheckpointer({
    tasks: { list: () => tasks },
    dumper: {
      dump: async (request) => {
        dumps.push(request);
        const dir = mkdtempSync(join(tmpdir(), 'nc-bg-'));
        dirs.push(dir);
        return { meta: meta(request.taskId, ++n), dir, dumpMs: 12 };
      },
    },
    shipper: {
      ship: async (_dir, m, peer) => {
        if (failShipFor.some((t) => m.checkpointId.startsWith(t))) throw new Error('buddy unreachable');
        shipped.push({ checkpointId: m.checkpointId, peer });
        return { wireBytes: 100 };
      },
    },
    buddy: {
      forget: async (taskId) => {
        if (!buddy.reachable) throw new Error('buddy unreachable');
        forgotten.push(taskId);
        return true;
      },
    },
    sent: await SentLedger.load(join(dataDir, 'background-sent.json'), BUDDY, log),
    locks: new TaskLockTable(),
    clock: new FakeClock(),
    log,
    intervalMs: 1000,
    buddyAddress: BUDDY,
  });
  return { checkpointer, dumps, shipped, dirs, forgotten, buddy };
}

describe('BackgroundCheckpointer', () => {
  it('dumps every running task without stopping it and ships it to the buddy under its background key', async () => {
    const { checkpointer, dumps, shipped, dirs } = await setup([
      { taskId: 'a', phase: 'running' },
      { taskId: 'b', phase: 'exited' },
      { taskId: 'c', phase: 'running' },
    ]);
    await checkpointer.checkpointAll();
    expect(dumps).toEqual([
      { taskId: 'a', leaveRunning: true, handoverKey: 'background/a' },
      { taskId: 'c', leaveRunning: true, handoverKey: 'background/c' },
    ]);
    expect(shipped.map((s) => s.peer)).toEqual(['10.0.0.9:7450', '10.0.0.9:7450']);
    expect(checkpointer.status().get('a')).toMatchObject({ checkpointId: 'a-1', wireBytes: 100, dumpMs: 12 });
    expect(dirs.some(existsSync)).toBe(false);
  });

  it('keeps going when one task fails, and removes the local dump either way', async () => {
    const { checkpointer, shipped, dirs } = await setup(
      [
        { taskId: 'a', phase: 'running' },
        { taskId: 'c', phase: 'running' },
      ],
      ['a'],
    );
    await checkpointer.checkpointAll();
    expect(shipped.map((s) => s.checkpointId)).toEqual(['c-2']);
    expect(checkpointer.status().has('a')).toBe(false);
    expect(dirs.some(existsSync)).toBe(false);
  });
});

describe('BackgroundCheckpointer when tasks leave the node', () => {
  it('has the buddy forget a task that moved away, stopped or was destroyed, and only those', async () => {
    const tasks = [
      { taskId: 'moved', phase: 'running' },
      { taskId: 'stopped', phase: 'running' },
      { taskId: 'destroyed', phase: 'running' },
      { taskId: 'stays', phase: 'running' },
    ];
    const { checkpointer, forgotten, shipped } = await setup(tasks);
    await checkpointer.checkpointAll();
    expect(forgotten).toEqual([]);
    // Migrated and exited tasks stay listed until destroyed; a destroyed one is no longer listed.
    tasks.splice(0, 3, { taskId: 'moved', phase: 'migrated' }, { taskId: 'stopped', phase: 'exited' });
    await checkpointer.checkpointAll();
    expect(forgotten.sort()).toEqual(['destroyed', 'moved', 'stopped']);
    expect([...checkpointer.status().keys()]).toEqual(['stays']);
    // The task still running was checkpointed in both rounds: its newest copy stays on the buddy.
    expect(shipped.filter((s) => s.checkpointId.startsWith('stays')).length).toBe(2);
    await checkpointer.checkpointAll();
    expect(forgotten.length).toBe(3);
  });

  it('keeps the copy of a task that died or is held: it may be the newest whole state left, until destroyed', async () => {
    const tasks: { taskId: string; phase: string; exit?: { exitCode: number } }[] = [
      { taskId: 'killed', phase: 'running' },
      { taskId: 'held', phase: 'running' },
      { taskId: 'done', phase: 'running' },
    ];
    const { checkpointer, forgotten } = await setup(tasks);
    await checkpointer.checkpointAll();
    tasks.splice(
      0,
      3,
      { taskId: 'killed', phase: 'exited', exit: { exitCode: 137 } },
      { taskId: 'held', phase: 'held' },
      { taskId: 'done', phase: 'exited', exit: { exitCode: 0 } },
    );
    await checkpointer.checkpointAll();
    expect(forgotten).toEqual(['done']);
    tasks.splice(0, 1);
    await checkpointer.checkpointAll();
    expect(forgotten.sort()).toEqual(['done', 'killed']);
  });

  it('asks again next round when the buddy could not be told, keeping the entry until it was', async () => {
    const tasks = [{ taskId: 'a', phase: 'running' }];
    const { checkpointer, forgotten, buddy } = await setup(tasks);
    await checkpointer.checkpointAll();
    tasks.pop();
    buddy.reachable = false;
    await checkpointer.checkpointAll();
    expect(forgotten).toEqual([]);
    expect(checkpointer.status().has('a')).toBe(true);
    buddy.reachable = true;
    await checkpointer.checkpointAll();
    expect(forgotten).toEqual(['a']);
    expect(checkpointer.status().size).toBe(0);
  });
});

describe('BackgroundCheckpointer across a restart of its sidecar (issue #13)', () => {
  it('still has the buddy forget a task that left: the list of what it sent is kept in the data dir', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'nc-bg-data-'));
    const before = await setup(
      [
        { taskId: 'left', phase: 'running' },
        { taskId: 'stays', phase: 'running' },
      ],
      [],
      dataDir,
    );
    await before.checkpointer.checkpointAll();
    // Restarted: 'left' was destroyed (moved away) before the next round; the new sidecar never shipped it.
    const after = await setup([{ taskId: 'stays', phase: 'running' }], [], dataDir);
    expect([...after.checkpointer.status().keys()].sort()).toEqual(['left', 'stays']);
    await after.checkpointer.checkpointAll();
    expect(after.forgotten).toEqual(['left']);
    expect([...after.checkpointer.status().keys()]).toEqual(['stays']);
    // Forgotten once: a third start does not ask again.
    const again = await setup([{ taskId: 'stays', phase: 'running' }], [], dataDir);
    await again.checkpointer.checkpointAll();
    expect(again.forgotten).toEqual([]);
  });

  it('keeps a forget the buddy missed for the restarted sidecar to ask again', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'nc-bg-data-'));
    const tasks = [{ taskId: 'a', phase: 'running' }];
    const before = await setup(tasks, [], dataDir);
    await before.checkpointer.checkpointAll();
    tasks.pop();
    before.buddy.reachable = false;
    await before.checkpointer.checkpointAll();
    const after = await setup([], [], dataDir);
    await after.checkpointer.checkpointAll();
    expect(after.forgotten).toEqual(['a']);
  });
});

describe('SentLedger', () => {
  const lines: { msg?: string; err?: { code?: string } }[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line) as (typeof lines)[0]) });
  const sent = { checkpointId: 'c-1', atUnixMs: 1, wireBytes: 2, dumpMs: 3 };

  beforeEach(() => lines.splice(0));

  it('writes a versioned file naming its buddy', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'nc-bg-data-')), 'background-sent.json');
    const ledger = await SentLedger.load(path, BUDDY, log);
    await ledger.record('t', sent);
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ version: 1, buddy: BUDDY, tasks: { t: sent } });
    await ledger.drop('t');
    expect((await SentLedger.load(path, BUDDY, log)).view().size).toBe(0);
    expect(lines).toEqual([]);
  });

  it.each([
    ['of an unknown version', JSON.stringify({ version: 99, buddy: BUDDY, tasks: { t: sent } })],
    ['not JSON', '{"version": 1, "bud'],
    ['malformed', JSON.stringify({ version: 1, buddy: BUDDY, tasks: { t: { checkpointId: 7 } } })],
  ])('starts empty from a file %s, logging NC_BACKGROUND_LIST_UNREADABLE once', async (_what, content) => {
    const path = join(mkdtempSync(join(tmpdir(), 'nc-bg-data-')), 'background-sent.json');
    await writeFile(path, content);
    expect((await SentLedger.load(path, BUDDY, log)).view().size).toBe(0);
    expect(lines.map((l) => l.err?.code)).toEqual(['NC_BACKGROUND_LIST_UNREADABLE']);
  });

  it('starts empty when its checkpoints went to another buddy', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'nc-bg-data-')), 'background-sent.json');
    await (await SentLedger.load(path, '10.0.0.8:7450', log)).record('t', sent);
    expect((await SentLedger.load(path, BUDDY, log)).view().size).toBe(0);
    expect(lines).toHaveLength(1);
  });
});

describe('TaskLockTable', () => {
  it('runs work on one task in order, and work on different tasks independently', async () => {
    const locks = new TaskLockTable();
    const order: string[] = [];
    let release: () => void = () => undefined;
    const first = locks.withTask('t', () =>
      new Promise<void>((r) => (release = r)).then(() => void order.push('first')),
    );
    const second = locks.withTask('t', async () => void order.push('second'));
    await locks.withTask('other', async () => void order.push('other'));
    expect(order).toEqual(['other']);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['other', 'first', 'second']);
  });

  it('lets the next holder run after a failure', async () => {
    const locks = new TaskLockTable();
    await expect(locks.withTask('t', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(locks.withTask('t', async () => 'ok')).resolves.toBe('ok');
  });
});
