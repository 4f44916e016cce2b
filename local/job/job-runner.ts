import type { Logger } from '../../common/logging';
import type { LocalController } from '../controller/local-controller';
import { JobFileError } from './errors';
import { loadJobFile, type LocalJob } from './job-file';
import { waitForCheck } from './service-check';
import type { ServiceRoutes } from './service-routes';

export interface JobRunnerDeps {
  readonly controller: LocalController;
  readonly routes: ServiceRoutes;
  /** A node's address on the cluster's bridge. */
  readonly addressOf: (node: string) => string;
  /** HAProxy's loopback port of a frontend. */
  readonly portOf: (frontend: string) => number;
  /** Where templates' inline data is written. */
  readonly filesDir: string;
  readonly log: Logger;
}

/** Where one service of a job runs now (it changes as drains move it) and where HAProxy serves it. */
export interface ServiceStatus {
  readonly service: string;
  readonly group: string;
  readonly task: string;
  readonly node: string;
  readonly address: string;
  readonly taskId: string;
  readonly routerUrl: string;
}

export interface JobStatus {
  readonly job: string;
  readonly file: string;
  readonly services: readonly ServiceStatus[];
  readonly ignored: readonly string[];
}

/** Local mode's `nomad job run | status | stop`: a job file's chained tasks, run by the local controller. */
export class JobRunner {
  private readonly jobs = new Map<string, LocalJob>();

  constructor(private readonly deps: JobRunnerDeps) {}

  /** Reads a job file; `baseDir` is what `file("…")` in it is relative to. */
  load(file: string, baseDir: string): Promise<LocalJob> {
    return loadJobFile(file, { baseDir, filesDir: this.deps.filesDir });
  }

  async run(job: LocalJob): Promise<JobStatus> {
    if (this.jobs.has(job.name))
      throw new JobFileError('NC_JOB_ALREADY_RUNNING', `job "${job.name}" is already running (stop it first)`, {
        context: { job: job.name },
      });
    const placed = this.deps.controller.tasks();
    const taken = job.services.find((s) => placed[s.definition.name] !== undefined);
    if (taken !== undefined)
      throw new JobFileError(
        'NC_JOB_ALREADY_RUNNING',
        `service "${taken.definition.name}" of job "${job.name}" is already running`,
        { context: { job: job.name, service: taken.definition.name } },
      );
    const claimed: string[] = [];
    const started: string[] = [];
    this.jobs.set(job.name, job);
    try {
      for (const service of job.services) {
        this.deps.routes.claim(service.definition.name);
        claimed.push(service.definition.name);
        await this.deps.controller.runService(service.definition, (i) => waitForCheck(i, service.check));
        started.push(service.definition.name);
      }
    } catch (err) {
      // All or nothing, as a job is one unit to its operator.
      for (const service of job.services.filter((s) => started.includes(s.definition.name)))
        await this.deps.controller
          .stopService(service.definition.name, service.killSignal, service.killTimeoutMs)
          .catch((stopErr: unknown) =>
            this.deps.log.warn({ err: stopErr, job: job.name }, 'cannot stop a started service'),
          );
      for (const name of claimed) await this.deps.routes.retire(name);
      this.jobs.delete(job.name);
      throw err;
    }
    this.deps.log.info({ job: job.name, file: job.file, services: started }, 'job running');
    return this.statusOf(job);
  }

  /** Every job local mode runs, or the one named. */
  status(name?: string): JobStatus[] {
    if (name === undefined) return [...this.jobs.values()].map((job) => this.statusOf(job));
    return [this.statusOf(this.job(name))];
  }

  async stop(name: string): Promise<JobStatus> {
    const job = this.job(name);
    const status = this.statusOf(job);
    for (const service of job.services) {
      await this.deps.controller.stopService(service.definition.name, service.killSignal, service.killTimeoutMs);
      await this.deps.routes.retire(service.definition.name);
    }
    this.jobs.delete(name);
    this.deps.log.info({ job: name }, 'job stopped');
    return status;
  }

  private job(name: string): LocalJob {
    const job = this.jobs.get(name);
    if (job === undefined)
      throw new JobFileError(
        'NC_JOB_NOT_RUNNING',
        `no job "${name}" runs in local mode (running: ${[...this.jobs.keys()].join(', ') || 'none'})`,
        { context: { job: name } },
      );
    return job;
  }

  private statusOf(job: LocalJob): JobStatus {
    const placed = this.deps.controller.tasks();
    return {
      job: job.name,
      file: job.file,
      ignored: job.ignored,
      services: job.services.map((s) => {
        const task = placed[s.definition.name];
        const frontend = this.deps.routes.frontendOf(s.definition.name);
        return {
          service: s.definition.name,
          group: s.group,
          task: s.task,
          node: task?.node ?? '',
          address: task === undefined ? '' : `${this.deps.addressOf(task.node)}:${s.definition.port}`,
          taskId: task?.taskId ?? '',
          routerUrl: frontend === undefined ? '' : `http://127.0.0.1:${this.deps.portOf(frontend)}`,
        };
      }),
    };
  }
}
