/**
 * The handover key a task's background checkpoints are filed under on its buddy node. The sidecar that ships
 * them and whoever restores one after the task's node is gone (local mode's migration sequence) must agree on
 * it, so it is written once, here.
 */
export function backgroundKey(taskId: string): string {
  return `background/${taskId}`;
}
