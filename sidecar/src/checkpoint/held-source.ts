import { TaskError } from '../errors';
import type { TaskRuntime } from '../runtime/task-runtime';
import type { Dumper } from './dump';

export interface HeldSourceDeps {
  readonly runtime: Pick<TaskRuntime, 'held' | 'released'>;
  readonly dumper: Pick<Dumper, 'recoverSource'>;
}

/**
 * Resumes a source held frozen after its post-copy window failed (lazy-dump.ts). The caller has made sure the
 * copy restored on the target is gone: only then is this node's memory the one copy to run. A task that already
 * runs is left alone, so a resume repeated after a crash is harmless.
 */
export async function resumeHeldSource(deps: HeldSourceDeps, taskId: string): Promise<void> {
  const held = deps.runtime.held(taskId);
  if (held === undefined) return;
  if (!(await deps.dumper.recoverSource(held.containerId, held.networkNamespace))) {
    throw new TaskError('NC_TASK_RESUME_FAILED', 'the held task did not run again when resumed; it is left frozen', {
      context: { taskId, containerId: held.containerId },
    });
  }
  await deps.runtime.released(taskId);
}
