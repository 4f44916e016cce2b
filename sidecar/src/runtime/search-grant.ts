import { resolveBinary } from '../../../common/binaries';
import { errorMessage } from '../../../common/errors';
import { TaskError } from '../errors';
import { runCommand, tail } from './run-command';
import { unsearchableAncestors } from './searchable-path';

export interface SearchGrantConfig {
  /** Host uid of the tasks' root (the first id of their user namespace). */
  readonly hostRootUid: number;
  readonly commandTimeoutMs: number;
}

/**
 * Lets the tasks' root search down to the directories bound into a task, by an ACL entry for that one uid
 * (search only: it still cannot list them), on each ancestor that others cannot search. Nomad keeps its
 * data_dir at 0700, and CRIU restores a user-namespaced task's bind mounts from inside its namespace
 * (mnt-v2 open_tree), where that mode reads "Permission denied" and the restore fails. runc's own start
 * opens bind sources from outside and never needed this.
 */
export class SearchGrant {
  constructor(private readonly config: SearchGrantConfig) {}

  /** Grants what is missing for every path; returns the directories it changed. */
  async allow(paths: readonly string[]): Promise<string[]> {
    const granted: string[] = [];
    for (const path of paths.filter((p) => p !== '')) {
      for (const { dir } of await unsearchableAncestors(path)) {
        if (granted.includes(dir)) continue;
        await this.grant(dir);
        granted.push(dir);
      }
    }
    return granted;
  }

  private async grant(dir: string): Promise<void> {
    const entry = `u:${this.config.hostRootUid}:x`;
    let failure: string | undefined;
    try {
      const result = await runCommand(resolveBinary('setfacl'), ['-m', entry, dir], {
        timeoutMs: this.config.commandTimeoutMs,
      });
      if (result.exitCode !== 0) failure = tail(result.stderr) || `setfacl exited with ${String(result.exitCode)}`;
    } catch (err) {
      failure = errorMessage(err);
    }
    if (failure !== undefined) {
      throw new TaskError(
        'NC_TASK_START_FAILED',
        `the task's user namespace cannot search ${dir} and setfacl ${entry} failed: ${failure}`,
        { context: { dir } },
      );
    }
  }
}
