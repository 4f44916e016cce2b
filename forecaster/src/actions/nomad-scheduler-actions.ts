import { errorCode, errorMessage } from '../../../common/errors';
import type { Logger } from '../../../common/logging';
import { NomadApiError } from '../../../common/nomad-api';
import type { Allocation, AllocationListStub, Job, Node, NomadApi } from '../../../common/nomad-api';
import { SchedulerActionError } from '../errors';
import type { DrainRequest, Reservation, SchedulerActions } from './scheduler-actions';
import type { PrestageOutcome, PrestageTask } from './sidecar-prestager';

/** Copies chained tasks' checkpoints to reserved nodes ahead of a drain (the sidecars' business, by role). */
export interface CheckpointPrestager {
  /** One outcome per task; never throws for a task that was not copied. */
  prestage(tasks: readonly PrestageTask[]): Promise<PrestageOutcome[]>;
}

export interface NomadSchedulerActionsOptions {
  /** The task driver whose tasks are chained. @default "chain" */
  readonly chainDriver?: string;
  /** Priority of placeholder jobs: below every real job, so replacements preempt them. @default 1 */
  readonly placeholderPriority?: number;
  /**
   * The task each placeholder runs: it only has to exist and hold resources. @default exec of /bin/sleep
   * (Nomad's exec driver is enabled by default on Linux clients).
   */
  readonly placeholderTask?: { readonly Driver: string; readonly Config: Readonly<Record<string, unknown>> };
  /** Prefix of placeholder job IDs. @default "nomad-chain-reserve-" */
  readonly jobPrefix?: string;
  /** Pre-stages checkpoints; absent = no pre-staging (the drain's own checkpoint still moves the tasks). */
  readonly prestager?: CheckpointPrestager;
  /** How long a pre-stage waits for the placeholders to be placed (Nomad places them asynchronously). @default 30 s */
  readonly placementWaitMs?: number;
  /** Between looks at the placeholders' placement. @default 500 ms */
  readonly placementPollMs?: number;
}

const META_FENCED = 'nomad_chain.fenced';
const META_REASON = 'nomad_chain.reason';
const MAX_META_CHARS = 500;
/** Nomad preempts only allocations of jobs at least this much lower in priority (scheduler/preemption.go). */
const PREEMPTION_PRIORITY_GAP = 10;
/** A job without a priority runs at Nomad's default (structs.JobDefaultPriority). */
const DEFAULT_JOB_PRIORITY = 50;
const ENABLE_PREEMPTION = 'nomad operator scheduler set-config -preempt-service-scheduler=true';
/** The least ACL policy the forecaster runs with. */
const POLICY_FILE = 'jobs/forecaster.policy.hcl';

interface ChainedGroup {
  readonly alloc: Allocation;
  /** Its tasks run by the chain driver. */
  readonly taskNames: readonly string[];
  readonly cpuMhz: number;
  readonly memoryMb: number;
}

/**
 * SchedulerActions over Nomad's HTTP API: fence = eligibility "ineligible" (+ node meta with the reason),
 * reserve = a low-priority placeholder service job with one group per chained allocation on the node, kept off
 * that node, placed only where the replacements can preempt it: a placeholder that cannot yield would hold the
 * very room its replacement needs, so with service-job preemption off (Nomad's default) none is placed and the
 * reservation says why,
 * drain = node drain with a deadline and the decision's reason in the drain Meta, release = purge the
 * placeholder, unfence = eligible again. The forecaster names nodes by their Nomad node Name; IDs are looked up.
 */
export class NomadSchedulerActions implements SchedulerActions {
  private readonly ids = new Map<string, string>();
  /** Placeholder job → its task groups' names → the chained allocation each holds room for. */
  private readonly reservedFor = new Map<string, ReadonlyMap<string, ChainedGroup>>();
  private readonly driver: string;
  private readonly priority: number;
  private readonly task: { readonly Driver: string; readonly Config: Readonly<Record<string, unknown>> };
  private readonly prefix: string;

  constructor(
    private readonly nomad: NomadApi,
    private readonly log: Logger,
    private readonly options: NomadSchedulerActionsOptions = {},
  ) {
    this.driver = options.chainDriver ?? 'chain';
    this.priority = options.placeholderPriority ?? 1;
    this.task = options.placeholderTask ?? { Driver: 'exec', Config: { command: '/bin/sleep', args: ['2147483'] } };
    this.prefix = options.jobPrefix ?? 'nomad-chain-reserve-';
  }

  async fence(node: string, reason: string): Promise<void> {
    const id = await this.nodeId(node);
    await this.call('fence', node, () => this.nomad.setEligibility(id, false));
    await this.recordMeta(id, node, { [META_FENCED]: new Date().toISOString(), [META_REASON]: clip(reason) });
  }

  async unfence(node: string, reason: string): Promise<void> {
    const id = await this.nodeId(node);
    await this.call('unfence', node, () => this.nomad.setEligibility(id, true));
    await this.recordMeta(id, node, { [META_FENCED]: null, [META_REASON]: clip(`unfenced: ${reason}`) });
  }

  async reserve(node: string, reason: string): Promise<Reservation> {
    const id = await this.nodeId(node);
    const allocs = await this.call('reserve', node, () => this.nomad.nodeAllocations(id));
    // Pending allocations count too: they are about to run on the fenced node and need a place as much.
    const groups = allocs.value
      .filter((a) => a.DesiredStatus === 'run' && (a.ClientStatus === 'running' || a.ClientStatus === 'pending'))
      .flatMap((a) => this.chained(a));
    const jobId = `${this.prefix}${node}`;
    if (groups.length === 0) return { id: '', node, targets: [], tasks: 0 };
    const blocker = await this.call('reserve', node, () => this.preemptionBlocker());
    if (blocker !== undefined) return this.unreserved(node, groups.length, blocker);
    const yielding = groups.filter((g) => jobPriority(g.alloc) - this.priority >= PREEMPTION_PRIORITY_GAP);
    if (yielding.length === 0) {
      return this.unreserved(
        node,
        groups.length,
        `the chained jobs' priorities are less than ${PREEMPTION_PRIORITY_GAP} above the placeholders' ` +
          `(${this.priority}), so Nomad would not let their replacements preempt a placeholder`,
      );
    }
    if (yielding.length < groups.length) {
      const left = groups.filter((g) => !yielding.includes(g)).map((g) => g.alloc.ID);
      this.log.warn({ node, allocs: left, placeholderPriority: this.priority }, 'priority too low to reserve for');
    }
    const job = this.placeholder(jobId, id, yielding, reason);
    await this.call('reserve', node, () => this.nomad.registerJob(job));
    this.reservedFor.set(jobId, new Map(yielding.map((g, i) => [groupName(i, g), g])));
    const targets = await this.placedOn(jobId);
    this.log.info({ node, job: jobId, groups: yielding.length, targets }, 'capacity reserved');
    return { id: jobId, node, targets, tasks: yielding.length };
  }

  /**
   * Start-up check of the token: lists the nodes (node:read, which every action and the event stream need). A
   * refusal stops the start with NC_NOMAD_API_ACL_DENIED, naming the policy: a forecaster that cannot see the
   * cluster must not run as if it could act on it.
   */
  async checkAccess(): Promise<void> {
    let nodes;
    try {
      nodes = await this.nomad.listNodes();
    } catch (err) {
      if (errorCode(err) !== 'NC_NOMAD_API_ACL_DENIED') throw err;
      throw new NomadApiError(
        'NC_NOMAD_API_ACL_DENIED',
        `${describe(err)}; the forecaster needs a token of ${POLICY_FILE}`,
        { cause: err, status: 403 },
      );
    }
    for (const n of nodes.value) this.ids.set(n.Name, n.ID);
  }

  /**
   * Start-up check: warns, with the fix, when placeholders would not be placed. Never throws: reserve checks
   * again each time, so enabling preemption later takes effect without a restart.
   */
  async checkPreemption(): Promise<void> {
    try {
      const blocker = await this.preemptionBlocker();
      if (blocker === undefined) this.log.info('service-job preemption is on: placeholders will reserve capacity');
      else this.log.warn({ problem: blocker, fix: ENABLE_PREEMPTION }, 'placeholders disabled');
    } catch (err) {
      this.log.warn({ err }, 'scheduler configuration not checked');
    }
  }

  /**
   * Asks each chained task's sidecar on the fenced node to copy the running task to the node its placeholder
   * landed on, so the drain's final checkpoint sends only what changed: the target's store finds chunks by
   * content, whatever key the copy is filed under. Sidecars are found by the transfer address their driver
   * fingerprints on each node. Fails (after trying every task) when any task was not copied.
   */
  async prestage(node: string, reservation: Reservation): Promise<void> {
    const prestager = this.options.prestager;
    const groups = this.reservedFor.get(reservation.id);
    if (reservation.tasks === 0 || prestager === undefined || groups === undefined) return;
    const placed = await this.placeholdersPlaced(reservation.id, groups.size);
    const source = await this.call('prestage', node, async () => this.nomad.getNode(await this.nodeId(node)));
    const sourceAddress = this.transferAddress(source.value);
    const tasks: PrestageTask[] = [];
    const unplaced: string[] = [];
    for (const [name, group] of groups) {
      const stub = placed.find((p) => p.TaskGroup === name);
      if (stub === undefined) {
        unplaced.push(group.alloc.ID);
        continue;
      }
      const target = await this.call('prestage', node, () => this.nomad.getNode(stub.NodeID));
      for (const taskName of group.taskNames) {
        tasks.push({
          allocId: group.alloc.ID,
          taskName,
          sourceNode: node,
          sourceAddress,
          targetNode: stub.NodeName,
          targetAddress: this.transferAddress(target.value),
        });
      }
    }
    const outcomes = await prestager.prestage(tasks);
    const staged = outcomes.filter((o) => o.outcome === 'staged');
    this.log.info(
      {
        node,
        reservation: reservation.id,
        staged: staged.map((o) => ({
          alloc: o.allocId,
          task: o.taskName,
          target: o.targetNode,
          checkpointBytes: o.checkpointBytes,
          wireBytes: o.wireBytes,
        })),
        wireBytes: staged.reduce((sum, o) => sum + o.wireBytes, 0),
        failed: outcomes.filter((o) => o.outcome === 'failed').length,
        unplaced,
      },
      'checkpoints pre-staged',
    );
    if (staged.length < outcomes.length || unplaced.length > 0) {
      throw new SchedulerActionError(
        `pre-staged ${staged.length} of ${outcomes.length} chained tasks on ${node}` +
          (unplaced.length > 0 ? `; ${unplaced.length} allocation(s) without a placed placeholder` : ''),
        { context: { node, reservation: reservation.id, unplaced: unplaced.join(',') } },
      );
    }
  }

  async drain(node: string, request: DrainRequest): Promise<void> {
    const id = await this.nodeId(node);
    await this.call('drain', node, () =>
      this.nomad.drainNode(id, {
        // Never 0: Nomad reads 0 as "no deadline", the opposite of a node about to vanish.
        deadlineMs: Math.max(1000, request.deadlineMs),
        ignoreSystemJobs: true,
        meta: {
          'nomad_chain.decision': String(request.decisionId),
          [META_REASON]: clip(request.reason),
        },
      }),
    );
  }

  async release(reservation: Reservation): Promise<void> {
    if (reservation.id === '') return;
    this.reservedFor.delete(reservation.id);
    try {
      await this.nomad.deregisterJob(reservation.id, { purge: true });
    } catch (err) {
      // Already gone is released.
      if ((err as { code?: string }).code === 'NC_NOMAD_API_NOT_FOUND') return;
      throw new SchedulerActionError(`release of ${reservation.id} failed: ${describe(err)}`, {
        cause: err,
        context: { node: reservation.node, job: reservation.id },
      });
    }
  }

  /** Why a placeholder would not yield to a replacement right now; undefined when it would. */
  private async preemptionBlocker(): Promise<string | undefined> {
    let config;
    try {
      config = (await this.nomad.schedulerConfiguration()).value.SchedulerConfig;
    } catch (err) {
      // Not knowing is treated as off: a placeholder that might not yield is worse than none.
      if (errorCode(err) === 'NC_NOMAD_API_ACL_DENIED') {
        return `the forecaster's Nomad token lacks operator:read (${POLICY_FILE}), so whether replacements may preempt is unknown`;
      }
      throw err;
    }
    if (config === null) return 'Nomad has no scheduler configuration yet (no leader has written one)';
    if (!config.PreemptionConfig.ServiceSchedulerEnabled) {
      return `service-job preemption is off in Nomad's scheduler configuration (enable: ${ENABLE_PREEMPTION})`;
    }
    return undefined;
  }

  private unreserved(node: string, tasks: number, skipped: string): Reservation {
    this.log.warn({ node, tasks, problem: skipped }, 'capacity not reserved');
    return { id: '', node, targets: [], tasks: 0, skipped };
  }

  private chained(alloc: Allocation): ChainedGroup[] {
    const groups = (alloc.Job?.TaskGroups ?? []) as {
      Name?: string;
      Tasks?: { Name?: string; Driver?: string; Resources?: { CPU?: number; MemoryMB?: number } }[];
    }[];
    const group = groups.find((g) => g.Name === alloc.TaskGroup);
    const tasks = (group?.Tasks ?? []).filter((t) => t.Driver === this.driver);
    if (tasks.length === 0) return [];
    const taskNames = tasks.map((t) => t.Name ?? '').filter((n) => n !== '');
    const cpuMhz = tasks.reduce((sum, t) => sum + (t.Resources?.CPU ?? 100), 0);
    const memoryMb = tasks.reduce((sum, t) => sum + (t.Resources?.MemoryMB ?? 300), 0);
    return [{ alloc, taskNames, cpuMhz, memoryMb }];
  }

  private placeholder(jobId: string, fencedNodeId: string, groups: readonly ChainedGroup[], reason: string): Job {
    const first = groups[0]?.alloc.Job;
    return {
      ID: jobId,
      Name: jobId,
      Namespace: first?.Namespace ?? 'default',
      Type: 'service',
      Priority: this.priority,
      Datacenters: first?.Datacenters ?? ['*'],
      ...(typeof first?.NodePool === 'string' ? { NodePool: first.NodePool } : {}),
      Meta: { 'nomad_chain.reserved_for': fencedNodeId, 'nomad_chain.reason': clip(reason) },
      Constraints: [{ LTarget: '${node.unique.id}', RTarget: fencedNodeId, Operand: '!=' }],
      TaskGroups: groups.map((g, i) => ({
        Name: groupName(i, g),
        Count: 1,
        Meta: { 'nomad_chain.for_alloc': g.alloc.ID },
        Tasks: [
          {
            Name: 'placeholder',
            Driver: this.task.Driver,
            Config: { ...this.task.Config },
            Resources: { CPU: g.cpuMhz, MemoryMB: g.memoryMb },
          },
        ],
      })),
    };
  }

  /** The placeholder's allocations once `groups` are placed, or those placed when the wait ends. */
  private async placeholdersPlaced(jobId: string, groups: number): Promise<AllocationListStub[]> {
    const deadline = Date.now() + (this.options.placementWaitMs ?? 30_000);
    for (;;) {
      const allocs = await this.call('prestage', jobId, () =>
        this.nomad.listAllocations({ filter: `JobID == "${jobId}"` }),
      );
      const placed = allocs.value.filter((a) => a.DesiredStatus === 'run');
      if (placed.length >= groups || Date.now() >= deadline) return placed;
      await new Promise((resolve) => setTimeout(resolve, this.options.placementPollMs ?? 500));
    }
  }

  /** host:port of a node's sidecar transfer port, as the chain driver fingerprints it ("" = none). */
  private transferAddress(node: Node): string {
    return node.Attributes?.[`driver.${this.driver}.transfer_address`] ?? '';
  }

  /** Nodes the placeholder's allocations landed on so far (placement is asynchronous; may be empty). */
  private async placedOn(jobId: string): Promise<string[]> {
    try {
      const allocs = await this.nomad.listAllocations({ filter: `JobID == "${jobId}"` });
      return [...new Set(allocs.value.filter((a) => a.DesiredStatus === 'run').map((a) => a.NodeName))];
    } catch (err) {
      this.log.warn({ err, job: jobId }, 'placeholder placement unknown');
      return [];
    }
  }

  private async nodeId(node: string): Promise<string> {
    const known = this.ids.get(node);
    if (known !== undefined) return known;
    const nodes = await this.call('lookup', node, () => this.nomad.listNodes());
    for (const n of nodes.value) this.ids.set(n.Name, n.ID);
    const id = this.ids.get(node);
    if (id === undefined) throw new SchedulerActionError(`Nomad has no node named ${node}`, { context: { node } });
    return id;
  }

  /** Node meta is advisory (the drain Meta is the record), so an unreachable client only warns. */
  private async recordMeta(id: string, node: string, meta: Record<string, string | null>): Promise<void> {
    try {
      await this.nomad.applyNodeMeta(meta, id);
    } catch (err) {
      this.log.warn({ err, node }, 'node meta not recorded');
    }
  }

  private async call<T>(action: string, node: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new SchedulerActionError(`${action} on ${node} failed: ${describe(err)}`, {
        cause: err,
        context: { node, action },
        recoverable: (err as { recoverable?: boolean }).recoverable === true,
      });
    }
  }
}

/** An error's message with what Nomad itself answered (a refusal's body), which says what really went wrong. */
function describe(err: unknown): string {
  const said = (err as { context?: { detail?: unknown } }).context?.detail;
  return typeof said === 'string' && said !== ''
    ? `${errorMessage(err)} (Nomad: ${JSON.stringify(said)})`
    : errorMessage(err);
}

/** A placeholder group's name: unique in its job, and says which group it holds room for. */
function groupName(index: number, group: ChainedGroup): string {
  return `reserve-${index}-${group.alloc.TaskGroup}`.slice(0, 100);
}

function jobPriority(alloc: Allocation): number {
  const priority = alloc.Job?.Priority;
  return typeof priority === 'number' ? priority : DEFAULT_JOB_PRIORITY;
}

function clip(text: string): string {
  return text.length <= MAX_META_CHARS ? text : `${text.slice(0, MAX_META_CHARS - 1)}…`;
}
