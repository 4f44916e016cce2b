import { LRUCache } from 'lru-cache';
import type { Logger } from '../../../../common/logging';
import { errorMessage } from '../../../../common/errors';
import type { TaskSpec } from '../../../../proto/gen/chain/v1/sidecar';
import { FileTreeError } from '../../errors';
import type { FileTreeRef } from '../manifest';
import { sha256File } from '../manifest';
import type { FileTree } from './file-tree';
import { readTree, taskRoots, treePath } from './file-tree';
import type { RestoredFiles } from './restore-tree';
import { restoreFileTree } from './restore-tree';
import { measureFiles, snapshotFiles } from './snapshot';

/** What a migration does with a task whose files are over the limit: refuse to move it, or move memory alone. */
export type FilesOverLimit = 'cold-start' | 'memory-only';

export interface TaskFilesConfig {
  /** Largest total of a task's files a checkpoint carries; 0 = no limit. */
  readonly maxBytes: number;
  readonly overLimit: FilesOverLimit;
}

/** The directories one dump takes, decided before the freeze. */
export interface FilesPlan {
  readonly roots: ReadonlyMap<string, string>;
  /** Regular files' bytes when planned (the task may still be writing). */
  readonly totalBytes: number;
}

/** Trees kept per task for change detection; a task not dumped for this many dumps of others is read whole. */
const REMEMBERED_TASKS = 256;

/**
 * A task's writable directories as part of each of its checkpoints: measured before the freeze (over the
 * limit, the migration is refused or goes without them, as configured), taken during it so that files and
 * memory describe the same instant, and laid into the restored task's own directories before CRIU opens
 * them. The last tree of each task is kept, so the next round reads and hashes only what changed.
 */
export class TaskFiles {
  private readonly previous = new LRUCache<string, FileTree>({ max: REMEMBERED_TASKS });

  constructor(
    private readonly config: TaskFilesConfig,
    private readonly log: Logger,
  ) {}

  /**
   * Before the freeze: which directories the dump takes; undefined = memory only. Throws NC_FILES_TOO_LARGE
   * or NC_FILES_UNSUPPORTED.
   */
  async plan(taskId: string, spec: TaskSpec): Promise<FilesPlan | undefined> {
    const roots = taskRoots(spec);
    let totalBytes: number;
    try {
      ({ totalBytes } = await measureFiles(roots));
    } catch (cause) {
      // Before the freeze: a task whose own directories cannot be read (one removed under it) keeps running.
      throw new FileTreeError('NC_FILES_UNREADABLE', `the task's files cannot be read: ${errorMessage(cause)}`, {
        cause,
        context: { taskId },
      });
    }
    const { maxBytes, overLimit } = this.config;
    if (maxBytes === 0 || totalBytes <= maxBytes) return { roots, totalBytes };
    if (overLimit === 'memory-only') {
      this.log.warn({ taskId, totalBytes, maxBytes }, 'task files over filesMaxSize: moving memory only');
      return undefined;
    }
    throw new FileTreeError(
      'NC_FILES_TOO_LARGE',
      `the task's files add up to ${totalBytes} bytes, over the ${maxBytes}-byte limit (filesMaxSize)`,
      { context: { taskId, totalBytes, maxBytes } },
    );
  }

  /**
   * Takes the planned directories into `<checkpointDir>/files/`. `frozen`: nothing writes them any more,
   * so contents are hard-linked rather than copied.
   */
  async take(
    taskId: string,
    roots: ReadonlyMap<string, string>,
    checkpointDir: string,
    frozen: boolean,
  ): Promise<FileTreeRef> {
    const previous = this.previous.get(taskId);
    const tree = await snapshotFiles({
      roots,
      checkpointDir,
      frozen,
      maxBytes: 0,
      ...(previous !== undefined ? { previous } : {}),
    });
    this.previous.set(taskId, tree);
    return {
      sha256: await sha256File(treePath(checkpointDir)),
      totalBytes: tree.totalBytes,
      hashedBytes: tree.hashedBytes,
      entries: tree.roots.reduce((sum, root) => sum + root.entries.length, 0),
    };
  }
}

/**
 * Lays a checkpoint's files into the directories of `spec` (the restored task's own, filled in), before
 * CRIU restores the processes that hold them open. A checkpoint without files changes nothing.
 */
export async function restoreTaskFiles(
  checkpointDir: string,
  fileTree: FileTreeRef | undefined,
  spec: TaskSpec,
): Promise<RestoredFiles | undefined> {
  if (fileTree === undefined) return undefined;
  return restoreFileTree(checkpointDir, await readTree(checkpointDir), taskRoots(spec));
}
