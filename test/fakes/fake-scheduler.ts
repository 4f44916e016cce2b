import type { PlacementNode, SchedulerAdapter } from '../../common/scheduler/scheduler-adapter';

export class FakeScheduler implements SchedulerAdapter {
  readonly placements = new Map<string, { node: string; taskId: string }>();
  readonly eligibility = new Map<string, { eligible: boolean; reason: string }>();
  readonly drains: { node: string; deadlineMs: number; reason: string }[] = [];

  constructor(public nodeList: PlacementNode[] = []) {}

  async nodes(): Promise<PlacementNode[]> {
    return this.nodeList;
  }
  async setEligibility(node: string, eligible: boolean, reason: string): Promise<void> {
    this.eligibility.set(node, { eligible, reason });
  }
  async drain(node: string, options: { deadlineMs: number; reason: string }): Promise<void> {
    this.drains.push({ node, ...options });
  }
  async taskPlaced(taskKey: string, node: string, taskId: string): Promise<void> {
    this.placements.set(taskKey, { node, taskId });
  }
}
