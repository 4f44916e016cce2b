import { diffEnv, planBlockRewrite } from '../../../../../sidecar/src/checkpoint/environ/env-block';

const block = (...entries: string[]): Buffer => Buffer.from(entries.map((e) => `${e}\0`).join(''));

describe('environment block rewrite (issue #11)', () => {
  it('splits differing variables into same-length changes and ones that cannot change in place', () => {
    const diff = diffEnv({ A: 'aaaa', B: 'bb', SAME: 'x', GONE: '1' }, { A: 'cccc', B: 'longer', SAME: 'x', NEW: '2' });
    expect(diff.changes.map((c) => c.name)).toEqual(['A']);
    expect(diff.kept).toEqual([
      { name: 'B', reason: 'length-differs' },
      { name: 'GONE', reason: 'only-in-one' },
      { name: 'NEW', reason: 'only-in-one' },
    ]);
  });

  it('patches the value of NAME=old at its offset and nothing else', () => {
    const bytes = block('PATH=/bin', 'ID=1111', 'IDX=1111');
    const { changes } = diffEnv({ ID: '1111' }, { ID: '2222' });
    const plan = planBlockRewrite(bytes, changes);
    expect(plan.rewritten).toEqual(['ID']);
    for (const p of plan.patches) p.bytes.copy(bytes, p.offset);
    expect(bytes).toEqual(block('PATH=/bin', 'ID=2222', 'IDX=1111'));
  });

  it('keeps a variable the process changed, and one it holds twice with different values', () => {
    const { changes } = diffEnv({ ID: '1111' }, { ID: '2222' });
    expect(planBlockRewrite(block('ID=3333'), changes).kept).toEqual([{ name: 'ID', reason: 'changed-by-process' }]);
    expect(planBlockRewrite(block('ID=1111', 'ID=3333'), changes).patches).toEqual([]);
    expect(planBlockRewrite(block('OTHER=1'), changes).kept).toEqual([{ name: 'ID', reason: 'changed-by-process' }]);
  });

  it('compares byte lengths, not characters', () => {
    expect(diffEnv({ N: 'é' }, { N: 'ab' }).changes.map((c) => c.name)).toEqual(['N']);
    expect(diffEnv({ N: 'é' }, { N: 'a' }).kept).toEqual([{ name: 'N', reason: 'length-differs' }]);
  });
});
