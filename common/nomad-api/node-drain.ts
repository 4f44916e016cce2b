import type { NomadHttp } from './http';
import type { NodeUpdateDrainRequest, NodeUpdateResponse } from './types';

const NS_PER_MS = 1_000_000;

export interface DrainNodeOptions {
  /** Time before remaining allocations are force-stopped; negative forces now, 0 waits forever. */
  readonly deadlineMs: number;
  /** Leave system jobs (like the sidecar) running on the node. @default true */
  readonly ignoreSystemJobs?: boolean;
  /** Recorded in the node's LastDrain (who drained it and why). @default none */
  readonly meta?: Readonly<Record<string, string>>;
}

export interface CancelDrainOptions {
  /** Make the node schedulable again. @default true */
  readonly markEligible?: boolean;
  readonly meta?: Readonly<Record<string, string>>;
}

/** `PUT /v1/node/:id/drain`: start or cancel a drain (the node ID must be the full UUID). */
export class NodeDrain {
  constructor(private readonly http: NomadHttp) {}

  async drain(nodeId: string, options: DrainNodeOptions): Promise<NodeUpdateResponse> {
    return this.send({
      NodeID: nodeId,
      DrainSpec: {
        // Nomad reads a Go time.Duration: integer nanoseconds.
        Deadline: Math.round(options.deadlineMs * NS_PER_MS),
        IgnoreSystemJobs: options.ignoreSystemJobs ?? true,
      },
      MarkEligible: false,
      Meta: options.meta === undefined ? undefined : { ...options.meta },
    });
  }

  async cancel(nodeId: string, options: CancelDrainOptions = {}): Promise<NodeUpdateResponse> {
    return this.send({
      NodeID: nodeId,
      DrainSpec: null,
      MarkEligible: options.markEligible ?? true,
      Meta: options.meta === undefined ? undefined : { ...options.meta },
    });
  }

  private async send(request: NodeUpdateDrainRequest): Promise<NodeUpdateResponse> {
    return this.http.write<NodeUpdateResponse>('PUT', `/v1/node/${encodeURIComponent(request.NodeID)}/drain`, request);
  }
}
