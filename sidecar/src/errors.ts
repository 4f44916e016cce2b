import { NomadChainError } from '../../common/errors';
import type { ErrorContext } from '../../common/errors';

interface FamilyOptions extends ErrorOptions {
  readonly context?: ErrorContext;
  readonly recoverable?: boolean;
}

/** A task could not be started, found, signalled or inspected. */
export class TaskError extends NomadChainError {
  constructor(code: TaskErrorCode, message: string, options: FamilyOptions = {}) {
    super(code, message, options);
  }
}

export type TaskErrorCode =
  | 'NC_TASK_NOT_FOUND'
  | 'NC_TASK_EXISTS'
  | 'NC_TASK_SPEC_INVALID'
  | 'NC_TASK_START_FAILED'
  | 'NC_TASK_NOT_RUNNING'
  | 'NC_TASK_NOT_HELD'
  | 'NC_TASK_RESUME_FAILED'
  | 'NC_TASK_EXEC_FAILED'
  | 'NC_TASK_STATE_UNREADABLE'
  | 'NC_TASK_USER_UNKNOWN'
  | 'NC_RUNC_FAILED';

/** Dumping a task failed; the source task is still running unless the context says otherwise. */
export class CheckpointError extends NomadChainError {
  constructor(code: CheckpointErrorCode, message: string, options: FamilyOptions = {}) {
    super(code, message, options);
  }
}

export type CheckpointErrorCode =
  | 'NC_CHECKPOINT_FAILED'
  | 'NC_CHECKPOINT_NOT_FOUND'
  | 'NC_CHECKPOINT_CORRUPT'
  | 'NC_CHECKPOINT_TRUNCATED'
  | 'NC_FEATURE_UNAVAILABLE'
  | 'NC_LAZY_PAGES_TIMEOUT'
  | 'NC_LAZY_PAGES_FAILED'
  | 'NC_MIGRATION_ROLLBACK_FAILED';

/** Restoring a checkpoint failed; nothing runs from it, and the checkpoint itself is left as it was. */
export class RestoreError extends NomadChainError {
  constructor(code: RestoreErrorCode, message: string, options: FamilyOptions = {}) {
    super(code, message, options);
  }
}

export type RestoreErrorCode = 'NC_RESTORE_FAILED' | 'NC_CHECKPOINT_ALREADY_RESTORED';

/** A task's files could not be taken into, or restored from, its checkpoint. */
export class FileTreeError extends NomadChainError {
  constructor(code: FileTreeErrorCode, message: string, options: FamilyOptions = {}) {
    super(code, message, options);
  }
}

export type FileTreeErrorCode =
  | 'NC_FILES_TOO_LARGE'
  | 'NC_FILES_UNSUPPORTED'
  | 'NC_FILES_UNREADABLE'
  | 'NC_FILES_CORRUPT'
  | 'NC_FILES_RESTORE_FAILED';
