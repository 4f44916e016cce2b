import { TaskState as SidecarTaskState } from '../../proto/gen/chain/v1/sidecar';
import type { TaskInfo } from '../../proto/gen/chain/v1/sidecar';
import { TaskState } from '../../proto/gen/nomad/plugins/drivers/proto/driver';
import type {
  TaskConfig,
  TaskHandle as NomadTaskHandle,
  TaskStatus,
} from '../../proto/gen/nomad/plugins/drivers/proto/driver';
import type { TaskDriverConfig } from './config';
import { encodeTaskState, TASK_STATE_VERSION } from './task-state';
import type { TaskState as PersistedState } from './task-state';
import { timestampFromMs } from './timestamps';

/**
 * One task as the plugin knows it: Nomad's TaskConfig, the decoded driver config, and the persisted state
 * that leads back to the task in the sidecar, which owns the running container.
 */
export class TaskHandle {
  constructor(
    readonly config: TaskConfig,
    readonly driverConfig: TaskDriverConfig,
    readonly state: PersistedState,
  ) {}

  get id(): string {
    return this.config.id;
  }

  get sidecarTaskId(): string {
    return this.state.sidecarTaskId;
  }

  /** The fields every task event carries. */
  get eventSource(): { taskId: string; allocId: string; taskName: string } {
    return { taskId: this.config.id, allocId: this.config.allocId, taskName: this.config.name };
  }

  /** What Nomad stores and hands back on RecoverTask: config must be the TaskConfig Nomad sent. */
  toProto(info: TaskInfo): NomadTaskHandle {
    return {
      version: TASK_STATE_VERSION,
      config: this.config,
      state: nomadTaskState(info.state),
      driverState: encodeTaskState(this.state),
    };
  }

  /** InspectTask's TaskStatus; both timestamps are always set, as Nomad's client dereferences them. */
  status(info: TaskInfo): TaskStatus {
    const state = nomadTaskState(info.state);
    return {
      id: this.config.id,
      name: this.config.name,
      state,
      startedAt: timestampFromMs(info.startedAtUnixMs > 0 ? info.startedAtUnixMs : this.state.startedAtUnixMs),
      completedAt: timestampFromMs(state === TaskState.EXITED ? info.completedAtUnixMs : 0),
      result: state === TaskState.EXITED ? (info.exit ?? { exitCode: 0, signal: 0, oomKilled: false }) : undefined,
    };
  }
}

/** A migrated task has left this node: to Nomad it has exited here. */
export function nomadTaskState(state: SidecarTaskState): TaskState {
  switch (state) {
    case SidecarTaskState.TASK_STATE_RUNNING:
    // Held frozen after a failed post-copy window: still this node's, and resumed here.
    case SidecarTaskState.TASK_STATE_HELD:
      return TaskState.RUNNING;
    case SidecarTaskState.TASK_STATE_EXITED:
    case SidecarTaskState.TASK_STATE_MIGRATED:
      return TaskState.EXITED;
    default:
      return TaskState.UNKNOWN;
  }
}
