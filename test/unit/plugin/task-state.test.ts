import { thrownCode } from './rig';
import { decodeTaskState, encodeTaskState, TASK_STATE_VERSION } from '../../../plugin/src/task-state';

describe('persisted driver state', () => {
  const state = {
    sidecarTaskId: 'alloc_web_0a1b2c3d',
    startedAtUnixMs: 1_700_000_000_000,
    restoredFromCheckpoint: 'ckpt-1',
    msgpackDriverConfig: Buffer.from([0x81, 0xa7, 0x63, 0x6f, 0x6d, 0x6d, 0x61, 0x6e, 0x64]),
  };

  it('round-trips through the bytes Nomad stores', () => {
    expect(TASK_STATE_VERSION).toBeGreaterThan(0);
    expect(decodeTaskState(TASK_STATE_VERSION, encodeTaskState(state))).toEqual(state);
  });

  it('still reads version 1 states, which kept no driver config', () => {
    const v1 = Buffer.from('{"v":1,"sidecarTaskId":"a","startedAtUnixMs":1,"restoredFromCheckpoint":""}');
    expect(decodeTaskState(1, v1)).toEqual({
      sidecarTaskId: 'a',
      startedAtUnixMs: 1,
      restoredFromCheckpoint: '',
      msgpackDriverConfig: Buffer.alloc(0),
    });
  });

  it.each([
    [
      'a current state without its driver config',
      TASK_STATE_VERSION,
      Buffer.from('{"sidecarTaskId":"a","startedAtUnixMs":1,"restoredFromCheckpoint":""}'),
    ],
    ['an unknown version', 7, encodeTaskState(state)],
    ["Nomad's reserved version 0", 0, encodeTaskState(state)],
    ['bytes that are not JSON', TASK_STATE_VERSION, Buffer.from('{')],
    [
      'a state without its sidecar task id',
      TASK_STATE_VERSION,
      Buffer.from('{"startedAtUnixMs":1,"restoredFromCheckpoint":""}'),
    ],
    [
      'a state without its start time',
      TASK_STATE_VERSION,
      Buffer.from('{"sidecarTaskId":"a","restoredFromCheckpoint":""}'),
    ],
  ])('refuses %s with NC_PLUGIN_TASK_STATE_INVALID', (_what, version, bytes) => {
    expect(thrownCode(() => decodeTaskState(version, bytes))).toBe('NC_PLUGIN_TASK_STATE_INVALID');
  });
});
