import type { NomadHttp, QueryOptions, QueryResult } from './http';
import type {
  SchedulerConfiguration,
  SchedulerConfigurationResponse,
  SchedulerSetConfigurationResponse,
} from './types';

/** `GET|PUT /v1/operator/scheduler/configuration` (operator:read / operator:write): algorithm and preemption. */
export class OperatorScheduler {
  constructor(private readonly http: NomadHttp) {}

  async get(options: QueryOptions = {}): Promise<QueryResult<SchedulerConfigurationResponse>> {
    return this.http.query<SchedulerConfigurationResponse>('/v1/operator/scheduler/configuration', {}, options);
  }

  /** Replaces the whole configuration; with `casIndex` only if its ModifyIndex is still that (`?cas=`). */
  async set(
    config: SchedulerConfiguration,
    options: { casIndex?: number } = {},
  ): Promise<SchedulerSetConfigurationResponse> {
    return this.http.write<SchedulerSetConfigurationResponse>('PUT', '/v1/operator/scheduler/configuration', config, {
      cas: options.casIndex,
    });
  }
}
