import { StageTimes, timed, timedAsync } from '../../../../sidecar/src/transfer/stage-times';

describe('StageTimes', () => {
  it('sums calls and bytes per stage, and resets on request', async () => {
    const stages = new StageTimes();
    expect(stages.time('hash', 10, () => 'a')).toBe('a');
    expect(timed(stages, 'hash', 5, () => 1)).toBe(1);
    await expect(timedAsync(stages, 'send', 7, () => Promise.resolve(2))).resolves.toBe(2);
    await expect(stages.timeAsync('send', 1, () => Promise.reject(new Error('x')))).rejects.toThrow('x');
    const snap = stages.snapshot(true);
    expect(snap.hash).toMatchObject({ bytes: 15, calls: 2 });
    expect(snap.send).toMatchObject({ bytes: 8, calls: 2 });
    expect(snap.hash?.ms).toBeGreaterThanOrEqual(0);
    expect(stages.snapshot()).toEqual({});
  });

  it('runs the function unmeasured without an account', async () => {
    expect(timed(undefined, 'x', 1, () => 3)).toBe(3);
    await expect(timedAsync(undefined, 'x', 1, () => Promise.resolve(4))).resolves.toBe(4);
  });
});
