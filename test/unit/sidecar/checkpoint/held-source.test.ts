import { errorCode } from '../../../../common/errors';
import { resumeHeldSource } from '../../../../sidecar/src/checkpoint/held-source';
import { TaskError } from '../../../../sidecar/src/errors';

function deps(phase: 'held' | 'running' | 'exited', runsAgain = true) {
  const calls: string[] = [];
  return {
    calls,
    deps: {
      runtime: {
        held: (taskId: string) => {
          calls.push(`held ${taskId}`);
          if (phase === 'running') return undefined;
          if (phase !== 'held') throw new TaskError('NC_TASK_NOT_HELD', `task is ${phase}, not held`);
          return { containerId: 'c1', networkNamespace: '/run/netns/n1' };
        },
        released: async (taskId: string) => {
          calls.push(`released ${taskId}`);
        },
      },
      dumper: {
        recoverSource: async (containerId: string, netns: string) => {
          calls.push(`recover ${containerId} ${netns}`);
          return runsAgain;
        },
      },
    },
  };
}

// Issue #12 item 2: a source held by a failed post-copy window runs again only when told.
describe('resumeHeldSource', () => {
  it('thaws a held task (network lock removed, container resumed) and marks it running', async () => {
    const { calls, deps: d } = deps('held');
    await resumeHeldSource(d, 't1');
    expect(calls).toEqual(['held t1', 'recover c1 /run/netns/n1', 'released t1']);
  });

  it('leaves a task that already runs alone: a resume repeated after a crash is harmless', async () => {
    const { calls, deps: d } = deps('running');
    await resumeHeldSource(d, 't1');
    expect(calls).toEqual(['held t1']);
  });

  it('refuses a task that is neither held nor running', async () => {
    const { deps: d } = deps('exited');
    await expect(resumeHeldSource(d, 't1')).rejects.toMatchObject({ code: 'NC_TASK_NOT_HELD' });
  });

  it('a container that does not run again stays held, with a coded error', async () => {
    const { calls, deps: d } = deps('held', false);
    const err = await resumeHeldSource(d, 't1').catch((e: unknown) => e);
    expect(errorCode(err)).toBe('NC_TASK_RESUME_FAILED');
    expect(calls).not.toContain('released t1');
  });
});
