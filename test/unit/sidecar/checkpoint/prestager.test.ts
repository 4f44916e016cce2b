import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { TaskLockTable } from '../../../../sidecar/src/background/background-checkpointer';
import type { CheckpointMeta } from '../../../../sidecar/src/checkpoint/manifest';
import { prestageKey, TaskPrestager } from '../../../../sidecar/src/checkpoint/prestager';
import { FakeClock } from '../../../fakes/fake-clock';

function setup(options: { failShip?: boolean; failDump?: Error } = {}) {
  const dumps: { taskId: string; leaveRunning: boolean; handoverKey: string }[] = [];
  const shipped: { checkpointId: string; handoverKey: string; peer: string }[] = [];
  const dirs: string[] = [];
  const clock = new FakeClock();
  const locks = new TaskLockTable();
  const prestager = new TaskPrestager({
    dumper: {
      dump: async (request) => {
        if (options.failDump !== undefined) throw options.failDump;
        dumps.push(request);
        const dir = mkdtempSync(join(tmpdir(), 'nc-prestage-'));
        dirs.push(dir);
        clock.advance(40);
        const meta = { checkpointId: `ckpt-${dumps.length}`, handoverKey: request.handoverKey } as CheckpointMeta;
        return { meta, dir, dumpMs: 40 };
      },
    },
    shipper: {
      ship: async (_dir, meta, peer) => {
        clock.advance(25);
        if (options.failShip === true)
          throw Object.assign(new Error('peer gone'), { code: 'NC_TRANSFER_PEER_UNAVAILABLE' });
        shipped.push({ checkpointId: meta.checkpointId, handoverKey: meta.handoverKey, peer });
        return { wireBytes: 4096 };
      },
    },
    locks,
    clock,
    log: pino({ level: 'silent' }),
  });
  return { prestager, dumps, shipped, dirs, locks };
}

describe('TaskPrestager', () => {
  it('dumps the task without stopping it and files the copy on the peer under a key no restore asks for', async () => {
    const { prestager, dumps, shipped, dirs } = setup();
    const copy = await prestager.prestage('kv-1', '198.18.0.3:7450');
    expect(dumps).toEqual([{ taskId: 'kv-1', leaveRunning: true, handoverKey: 'prestage/kv-1' }]);
    expect(shipped).toEqual([{ checkpointId: 'ckpt-1', handoverKey: prestageKey('kv-1'), peer: '198.18.0.3:7450' }]);
    expect(copy).toMatchObject({ wireBytes: 4096, dumpMs: 40, shipMs: 25 });
    // The local dump is scratch: only the peer keeps the copy.
    expect(dirs.every((d) => !existsSync(d))).toBe(true);
  });

  it('removes the local dump and reports the transfer error when shipping fails', async () => {
    const { prestager, dirs } = setup({ failShip: true });
    await expect(prestager.prestage('kv-1', '198.18.0.3:7450')).rejects.toMatchObject({
      code: 'NC_TRANSFER_PEER_UNAVAILABLE',
    });
    expect(dirs).toHaveLength(1);
    expect(dirs.every((d) => !existsSync(d))).toBe(true);
  });

  it('passes on the dump refusing a task that is not running (handed over already)', async () => {
    const refused = Object.assign(new Error('task kv-1 is not running'), { code: 'NC_TASK_NOT_RUNNING' });
    const { prestager } = setup({ failDump: refused });
    await expect(prestager.prestage('kv-1', '198.18.0.3:7450')).rejects.toMatchObject({ code: 'NC_TASK_NOT_RUNNING' });
  });

  it('refuses a request without task or peer', async () => {
    const { prestager, dumps } = setup();
    await expect(prestager.prestage('', '198.18.0.3:7450')).rejects.toMatchObject({ code: 'NC_TASK_SPEC_INVALID' });
    await expect(prestager.prestage('kv-1', '')).rejects.toMatchObject({ code: 'NC_TASK_SPEC_INVALID' });
    expect(dumps).toEqual([]);
  });

  it('waits for a migration holding the task lock: the two never dump the task at once', async () => {
    const { prestager, dumps, locks } = setup();
    let releaseMigration: () => void = () => undefined;
    const migration = locks.withTask('kv-1', () => new Promise<void>((resolve) => (releaseMigration = resolve)));
    const prestage = prestager.prestage('kv-1', '198.18.0.3:7450');
    await new Promise((r) => setImmediate(r));
    expect(dumps).toEqual([]);
    releaseMigration();
    await migration;
    await prestage;
    expect(dumps).toHaveLength(1);
  });
});
