export { ConsulRouter, resolveConsulRouterConfig, serviceCheckId } from './consul-router';
export type {
  AgentService,
  ConsulRouterOptions,
  ConsulRouterConfig,
  HealthCheck,
  RegisterOptions,
} from './consul-router';
export { ConsulApiError, toConsulApiError } from './errors';
export type { ConsulApiErrorCode } from './errors';
