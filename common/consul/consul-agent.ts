import Consul from 'consul';
import { deepFreeze } from '../config';
import { ConfigError } from '../config-error';
import type { Instance } from '../router';
import { ConsulApiError, toConsulApiError } from './errors';

export interface ConsulAgentOptions {
  /** Consul agent HTTP address: the agent on this node, where Nomad registers its services. @default 'http://127.0.0.1:8500' */
  readonly address?: string;
  /** ACL token, sent as `X-Consul-Token`. @default none */
  readonly token?: string;
  /** Limit for one call. @default 5000 */
  readonly timeoutMs?: number;
}

export interface ConsulAgentConfig {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly token: string | undefined;
  readonly timeoutMs: number;
}

/** How Consul decides an instance is healthy. `ttl`: passing only while someone renews it (nobody here does). */
export type HealthCheck =
  | { readonly kind: 'http'; readonly path: string; readonly intervalMs: number; readonly timeoutMs: number }
  | { readonly kind: 'tcp'; readonly intervalMs: number; readonly timeoutMs: number }
  | { readonly kind: 'ttl'; readonly ttlMs: number };

export interface RegisterOptions {
  readonly check: HealthCheck;
  /** The check's status until it first runs (Consul's own default is critical). @default 'critical' */
  readonly initialStatus?: 'passing' | 'warning' | 'critical';
  /** Consul removes the instance after its check stays critical this long. @default never */
  readonly deregisterCriticalAfterMs?: number;
  readonly tags?: readonly string[];
  /** Service meta besides `nomad-chain-node`. @default none */
  readonly meta?: Readonly<Record<string, string>>;
}

/** A service as the local agent holds it (`/v1/agent/services`). */
export interface AgentService {
  readonly id: string;
  readonly service: string;
  /** "" = the node's address. */
  readonly address: string;
  readonly port: number;
  readonly tags: readonly string[];
}

interface PapiExtensible {
  _ext(event: 'onResponse', fn: (request: { err?: unknown }, next: () => void) => void): void;
}

interface AgentServiceBody {
  ID?: unknown;
  Service?: unknown;
  Address?: unknown;
  Port?: unknown;
  Tags?: unknown;
}

/**
 * The HTTP API of one Consul agent, the one a Nomad client registers its services with: what the chain
 * plugin needs to list a restored instance ahead of its check (plugin/src/consul-handover.ts).
 */
export class ConsulAgent {
  readonly config: ConsulAgentConfig;
  private readonly consul: Consul;

  constructor(options: ConsulAgentOptions = {}) {
    this.config = resolveConsulAgentConfig(options);
    this.consul = new Consul({
      host: this.config.host,
      port: this.config.port,
      secure: this.config.secure,
      defaults: this.config.token === undefined ? undefined : { token: this.config.token },
      // papi (under `consul`) takes an absolute per-request timeout; its typings omit it.
      ...({ timeout: this.config.timeoutMs } as object),
    });
    // papi tells failure from success with `instanceof Error`: a connection error made in another realm
    // (Node's core errors seen from a vm context, as under Jest) would resolve as success. Re-wrap it here.
    (this.consul as unknown as PapiExtensible)._ext('onResponse', (request, next) => {
      const err = request.err;
      if (err !== undefined && err !== null && !(err instanceof Error)) {
        request.err = Object.assign(new Error(String((err as { message?: unknown }).message)), { cause: err });
      }
      next();
    });
  }

  async register(instance: Instance, options: RegisterOptions): Promise<void> {
    const deregister =
      options.deregisterCriticalAfterMs === undefined
        ? {}
        : { deregistercriticalserviceafter: `${options.deregisterCriticalAfterMs}ms` };
    await this.call('register', () =>
      this.consul.agent.service.register({
        id: instance.id,
        name: instance.service,
        address: instance.address,
        port: instance.port,
        tags: options.tags === undefined ? undefined : [...options.tags],
        meta: { ...options.meta, 'nomad-chain-node': instance.node },
        check: {
          name: `${instance.service} health`,
          ...checkDefinition(instance, options.check),
          ...(options.initialStatus === undefined ? {} : { status: options.initialStatus }),
          ...deregister,
        },
      }),
    );
  }

  async deregister(instance: Instance): Promise<void> {
    await this.call('deregister', () => this.consul.agent.service.deregister({ id: instance.id }));
  }

  /** The services this agent holds that match a Consul filter expression (`/v1/agent/services?filter=`). */
  async agentServices(filter: string): Promise<AgentService[]> {
    const body = await this.call('agent-services', () => this.consul.agent.service.list({ filter }));
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ConsulApiError('NC_CONSUL_BAD_RESPONSE', 'Consul agent services answer is not a map', {
        context: { filter },
      });
    }
    return Object.values(body as Record<string, AgentServiceBody>).map((svc) => {
      const { ID: id, Service: service, Address: address, Port: port, Tags: tags } = svc;
      if (typeof id !== 'string' || typeof service !== 'string' || typeof port !== 'number') {
        throw new ConsulApiError('NC_CONSUL_BAD_RESPONSE', 'Consul agent service lacks ID, Service or Port', {
          context: { filter },
        });
      }
      return {
        id,
        service,
        address: typeof address === 'string' ? address : '',
        port,
        tags: Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [],
      };
    });
  }

  /** The statuses of the checks this agent runs for one service (`/v1/agent/checks?filter=`). */
  async serviceCheckStatuses(serviceId: string): Promise<string[]> {
    const filter = `ServiceID == ${JSON.stringify(serviceId)}`;
    const body = await this.call('agent-checks', () => this.consul.agent.check.list({ filter }));
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ConsulApiError('NC_CONSUL_BAD_RESPONSE', 'Consul agent checks answer is not a map', {
        context: { serviceId },
      });
    }
    return Object.values(body as Record<string, { Status?: unknown }>).map((check) => {
      if (typeof check.Status !== 'string') {
        throw new ConsulApiError('NC_CONSUL_BAD_RESPONSE', 'Consul agent check lacks Status', {
          context: { serviceId },
        });
      }
      return check.Status;
    });
  }

  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toConsulApiError(err, operation);
    }
  }
}

function checkDefinition(
  instance: Instance,
  check: HealthCheck,
): { http?: string; tcp?: string; ttl?: string; interval?: string; timeout: string } {
  const target = `${instance.address.includes(':') ? `[${instance.address}]` : instance.address}:${instance.port}`;
  switch (check.kind) {
    case 'http':
      return {
        http: `http://${target}${check.path}`,
        interval: `${check.intervalMs}ms`,
        timeout: `${check.timeoutMs}ms`,
      };
    case 'tcp':
      return { tcp: target, interval: `${check.intervalMs}ms`, timeout: `${check.timeoutMs}ms` };
    case 'ttl':
      // The package's typings demand `timeout` even for a TTL check; Consul ignores it there.
      return { ttl: `${check.ttlMs}ms`, timeout: `${check.ttlMs}ms` };
  }
}

export function resolveConsulAgentConfig(options: ConsulAgentOptions): ConsulAgentConfig {
  let url: URL;
  try {
    url = new URL(options.address ?? 'http://127.0.0.1:8500');
  } catch (err) {
    throw new ConfigError('consul.address', 'must be an http:// or https:// URL', { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError('consul.address', 'must be an http:// or https:// URL');
  }
  const timeoutMs = options.timeoutMs ?? 5000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new ConfigError('consul.timeoutMs', 'must be a positive number');
  const secure = url.protocol === 'https:';
  return deepFreeze({
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
    secure,
    token: options.token === '' ? undefined : options.token,
    timeoutMs,
  });
}
