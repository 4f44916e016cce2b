import type { NomadHttp } from './http';
import type { Job, JobDeregisterResponse, JobRegisterRequest, JobRegisterResponse, JobsParseRequest } from './types';

/** `PUT /v1/jobs/parse`, `PUT /v1/jobs`, `DELETE /v1/job/:id`. */
export class Jobs {
  constructor(private readonly http: NomadHttp) {}

  /** HCL2 job specification to Nomad's JSON job, parsed by Nomad itself so no HCL parser lives here. */
  async parse(jobHcl: string): Promise<Job> {
    const request: JobsParseRequest = { JobHCL: jobHcl, Canonicalize: true };
    return this.http.write<Job>('PUT', '/v1/jobs/parse', request);
  }

  async register(job: Job): Promise<JobRegisterResponse> {
    const request: JobRegisterRequest = { Job: job };
    return this.http.write<JobRegisterResponse>('PUT', '/v1/jobs', request);
  }

  async deregister(jobId: string, options: { purge?: boolean } = {}): Promise<JobDeregisterResponse> {
    return this.http.write<JobDeregisterResponse>('DELETE', `/v1/job/${encodeURIComponent(jobId)}`, undefined, {
      namespace: this.http.config.namespace,
      purge: options.purge === true ? 'true' : undefined,
    });
  }
}
