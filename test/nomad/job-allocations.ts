import type { Allocation, TaskEvent } from '../../common/nomad-api';
import { GiveUp, waitFor, type NomadCluster } from './nomad-cluster';

/** Every allocation of a job, read whole through the real HTTP API. */
export async function allocationsOf(cluster: NomadCluster, jobId: string): Promise<Allocation[]> {
  const { value } = await cluster.api.listAllocations({ filter: `JobID == "${jobId}"` });
  return Promise.all(value.map(async (stub) => (await cluster.api.getAllocation(stub.ID)).value));
}

/** One job's allocations on the tier's cluster, read through the real HTTP API, and its one task's events. */
export class JobAllocations {
  constructor(
    private readonly cluster: NomadCluster,
    readonly job: string,
    readonly task: string,
  ) {}

  events(alloc: Allocation): TaskEvent[] {
    return alloc.TaskStates?.[this.task]?.Events ?? [];
  }

  /** The task's events as `nomad alloc status` shows them: "Type: message". */
  messages(alloc: Allocation): string[] {
    return this.events(alloc).map((e) => `${e.Type}: ${e.DisplayMessage}`);
  }

  all(): Promise<Allocation[]> {
    return allocationsOf(this.cluster, this.job);
  }

  /** Waits for a running allocation matching `predicate`; gives up once a wanted one fails or restarts instead. */
  async running(predicate: (a: Allocation) => boolean = () => true): Promise<Allocation> {
    return waitFor(`a running ${this.job} allocation`, 300_000, async () => {
      const states: string[] = [];
      for (const alloc of (await this.all()).filter(predicate)) {
        if (alloc.ClientStatus === 'running' && alloc.DesiredStatus === 'run') return alloc;
        const messages = this.messages(alloc);
        const line = `${alloc.ID.slice(0, 8)} on ${alloc.NodeName} ${alloc.ClientStatus}/${alloc.DesiredStatus}: ${JSON.stringify(messages)}`;
        const failing = alloc.ClientStatus === 'failed' || messages.some((m) => m.startsWith('Restarting'));
        if (alloc.DesiredStatus === 'run' && failing) throw new GiveUp(line);
        states.push(line);
      }
      throw new Error(states.join('; ') || 'no matching allocation yet');
    });
  }
}
