/**
 * The handover key a task's background checkpoints are filed under on its buddy node. The sidecar that ships
 * them and whoever restores one after the task's node is gone (local mode's migration sequence) must agree on
 * it, so it is written once, here.
 */
export function backgroundKey(taskId: string): string {
  return `background/${taskId}`;
}

/**
 * The key a task's files sent ahead of its freeze are filed under on the target: a newer round replaces the older
 * one. The sidecar that sends them and the migration sequence that drops them after a rollback agree on it here.
 */
export function filesAheadKey(taskId: string): string {
  return `files-ahead/${taskId}`;
}
