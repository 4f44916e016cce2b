import { status } from '@grpc/grpc-js';
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthServer,
} from '../../proto/gen/grpc/health/v1/health';

/** The serving status of a fixed set of services, flipped by their owner and read by grpc.health.v1. */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>();

  constructor(services: Readonly<Record<string, boolean>>) {
    for (const [service, serving] of Object.entries(services)) this.set(service, serving);
  }

  set(service: string, serving: boolean): void {
    this.statuses.set(service, serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }
}

/** grpc-js handlers for grpc.health.v1.Health over a HealthStatus. */
export function healthService(health: HealthStatus): HealthServer {
  return {
    check(call, done) {
      const current = health.get(call.request.service);
      if (current === undefined) {
        done({ code: status.NOT_FOUND, details: `unknown service ${JSON.stringify(call.request.service)}` }, null);
        return;
      }
      done(null, { status: current });
    },
    watch(call) {
      call.write({ status: health.get(call.request.service) ?? ServingStatus.SERVICE_UNKNOWN });
    },
  };
}
