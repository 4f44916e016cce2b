export { ConsulAgent, resolveConsulAgentConfig } from './consul-agent';
export type { AgentService, ConsulAgentOptions, ConsulAgentConfig, HealthCheck, RegisterOptions } from './consul-agent';
export { ConsulApiError, toConsulApiError } from './errors';
export type { ConsulApiErrorCode } from './errors';
