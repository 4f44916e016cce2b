import { DriverError } from './errors';
import type { TaskHandle } from './task-handle';

/** Nomad's task id → the plugin's handle. Lost with the process; RecoverTask refills it. */
export class TaskStore {
  private readonly handles = new Map<string, TaskHandle>();

  has(taskId: string): boolean {
    return this.handles.has(taskId);
  }

  /** The handle of a task Nomad started or recovered here; NC_PLUGIN_TASK_NOT_FOUND otherwise. */
  get(taskId: string): TaskHandle {
    const handle = this.handles.get(taskId);
    if (handle === undefined) {
      throw new DriverError('NC_PLUGIN_TASK_NOT_FOUND', `task ${JSON.stringify(taskId)} is not known to this plugin`, {
        context: { taskId },
      });
    }
    return handle;
  }

  find(taskId: string): TaskHandle | undefined {
    return this.handles.get(taskId);
  }

  set(handle: TaskHandle): void {
    this.handles.set(handle.id, handle);
  }

  delete(taskId: string): void {
    this.handles.delete(taskId);
  }

  get size(): number {
    return this.handles.size;
  }
}
