import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import {
  BackgroundCheckpointer,
  backgroundKey,
  TaskLockTable,
} from '../../../../sidecar/src/background/background-checkpointer';
import type { CheckpointMeta } from '../../../../sidecar/src/checkpoint/manifest';
import { FakeClock } from '../../../fakes/fake-clock';

function meta(taskId: string, n: number): CheckpointMeta {
  return { checkpointId: `${taskId}-${n}`, handoverKey: backgroundKey(taskId) } as unknown as CheckpointMeta;
}

function setup(tasks: { taskId: string; phase: string }[], failShipFor: string[] = []) {
  const dumps: { taskId: string; leaveRunning: boolean; handoverKey: string }[] = [];
  const forgotten: string[] = [];
  const buddy = { reachable: true };
  const shipped: { checkpointId: string; peer: string }[] = [];
  const dirs: string[] = [];
  let n = 0;
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
    locks: new TaskLockTable(),
    clock: new FakeClock(),
    log: pino({ level: 'silent' }),
    intervalMs: 1000,
    buddyAddress: '10.0.0.9:7450',
  });
  return { checkpointer, dumps, shipped, dirs, forgotten, buddy };
}

describe('BackgroundCheckpointer', () => {
  it('dumps every running task without stopping it and ships it to the buddy under its background key', async () => {
    const { checkpointer, dumps, shipped, dirs } = setup([
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
    const { checkpointer, shipped, dirs } = setup(
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
    const { checkpointer, forgotten, shipped } = setup(tasks);
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

  it('asks again next round when the buddy could not be told, keeping the entry until it was', async () => {
    const tasks = [{ taskId: 'a', phase: 'running' }];
    const { checkpointer, forgotten, buddy } = setup(tasks);
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
