import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskIdentity, TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import { TaskError } from '../errors';

/** Bumped whenever the persisted shape changes; a sidecar refuses state it does not understand. */
export const TASK_STATE_VERSION = 1;

/**
 * `held`: frozen by a post-copy hand-over whose pages did not all leave. This node holds the task's only whole
 * memory, so the task stays frozen (not adopted as running, not watched for exits) until it is told to resume.
 */
export type TaskPhase = 'running' | 'exited' | 'migrated' | 'held';

export interface TaskExit {
  readonly exitCode: number;
  readonly signal: number;
  readonly oomKilled: boolean;
}

/** What a sidecar needs to find and adopt a task after it restarted: written on every change. */
export interface TaskRecord {
  readonly version: number;
  readonly taskId: string;
  readonly containerId: string;
  readonly identity: TaskIdentity;
  readonly spec: TaskSpec;
  readonly phase: TaskPhase;
  readonly startedAtMs: number;
  readonly completedAtMs: number;
  readonly exit?: TaskExit;
  readonly restoredFromCheckpoint: string;
  readonly shimPid: number;
}

const RECORD_FILE = 'task.json';

export async function saveRecord(taskDir: string, record: TaskRecord): Promise<void> {
  await mkdir(taskDir, { recursive: true });
  const tmp = join(taskDir, `${RECORD_FILE}.tmp`);
  await writeFile(tmp, JSON.stringify(record, null, 2));
  // rename is atomic: a sidecar killed mid-write leaves the previous record, never half of one.
  await rename(tmp, join(taskDir, RECORD_FILE));
}

export async function loadRecord(taskDir: string): Promise<TaskRecord> {
  const path = join(taskDir, RECORD_FILE);
  let parsed: Partial<TaskRecord>;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<TaskRecord>;
  } catch (cause) {
    throw new TaskError('NC_TASK_STATE_UNREADABLE', 'task state file is missing or not JSON', {
      cause,
      context: { path },
    });
  }
  if (parsed.version !== TASK_STATE_VERSION) {
    throw new TaskError('NC_TASK_STATE_UNREADABLE', `task state version ${String(parsed.version)} is not supported`, {
      context: { path, supported: TASK_STATE_VERSION },
    });
  }
  return parsed as TaskRecord;
}

/** Task directories under `tasksDir`, whether or not their state is readable. */
export async function listTaskDirs(tasksDir: string): Promise<string[]> {
  const entries = await readdir(tasksDir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  return entries.filter((e) => e.isDirectory()).map((e) => join(tasksDir, e.name));
}
