import { Metadata, credentials } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { errorCode, errorMessage } from '../../../common/errors';
import { decodeStatus } from '../../../common/grpc/status-codec';
import type { Logger } from '../../../common/logging';
import { PeerPrestageClient } from '../../../proto/gen/chain/v1/prestage';
import type { PrestageAllocTaskRequest } from '../../../proto/gen/chain/v1/prestage';
import type { PrestageTaskResponse } from '../../../proto/gen/chain/v1/sidecar';
import { SchedulerActionError } from '../errors';

/** One chained task of a fenced node and where its reservation holds room. */
export interface PrestageTask {
  readonly allocId: string;
  readonly taskName: string;
  readonly sourceNode: string;
  /** host:port of the source sidecar's transfer port (mutual TLS). */
  readonly sourceAddress: string;
  readonly targetNode: string;
  /** host:port of the target sidecar's transfer port, where the copy goes. */
  readonly targetAddress: string;
}

export type PrestageOutcome =
  | (PrestageTask & {
      readonly outcome: 'staged';
      readonly checkpointId: string;
      readonly checkpointBytes: number;
      readonly wireBytes: number;
      readonly dumpMs: number;
      readonly shipMs: number;
    })
  | (PrestageTask & { readonly outcome: 'failed'; readonly code: string; readonly error: string });

/** What the forecaster asks of a sidecar's transfer port: chain.v1.PeerPrestage. */
export interface PeerPrestageCaller {
  prestageAllocTask(
    address: string,
    request: PrestageAllocTaskRequest,
    timeoutMs: number,
  ): Promise<PrestageTaskResponse>;
  close(): void;
}

/** PEM material: the sidecars' CA, and the forecaster's own certificate and key signed by it. */
export interface SidecarTlsPem {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * Over gRPC with the forecaster's certificate: the sidecar hears only peers its CA signed, and the forecaster
 * talks only to a sidecar whose certificate chains to that CA and names the address dialled.
 */
export class TlsPeerPrestageCaller implements PeerPrestageCaller {
  private readonly clients = new Map<string, PeerPrestageClient>();

  constructor(private readonly tls: SidecarTlsPem) {}

  prestageAllocTask(
    address: string,
    request: PrestageAllocTaskRequest,
    timeoutMs: number,
  ): Promise<PrestageTaskResponse> {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new PeerPrestageClient(address, credentials.createSsl(this.tls.ca, this.tls.key, this.tls.cert));
      this.clients.set(address, client);
    }
    const call = client;
    return new Promise((resolve, reject) => {
      call.prestageAllocTask(request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, response) => {
        if (err === null) resolve(response);
        else reject(prestageCallFailure(address, err));
      });
    });
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

/** The sidecar's own error when it sent one (its code kept); else the channel's failure. */
function prestageCallFailure(address: string, err: ServiceError): Error {
  return (
    decodeStatus(err, { prefix: `sidecar at ${address}: `, context: { address } }) ??
    new SchedulerActionError(`sidecar at ${address} unreachable: ${err.details}`, {
      cause: err,
      context: { address, grpcCode: err.code },
      recoverable: true,
    })
  );
}

export interface SidecarPrestagerOptions {
  /** How long one task's copy may take (its dump and ship, the task running on). @default 5 min */
  readonly callTimeoutMs?: number;
}

/**
 * Pre-staging in Nomad mode: asks each chained task's sidecar, on its transfer port, to copy the running task to
 * the node its reservation holds room on. One task after another (the dumps share the fenced node's CPU and
 * disk with the tasks still serving); a failure is reported per task, never thrown: the drain moves every task
 * anyway.
 */
export class SidecarPrestager {
  private readonly callTimeoutMs: number;

  constructor(
    private readonly caller: PeerPrestageCaller,
    private readonly log: Logger,
    options: SidecarPrestagerOptions = {},
  ) {
    this.callTimeoutMs = options.callTimeoutMs ?? 5 * 60_000;
  }

  async prestage(tasks: readonly PrestageTask[]): Promise<PrestageOutcome[]> {
    const outcomes: PrestageOutcome[] = [];
    for (const task of tasks) outcomes.push(await this.one(task));
    return outcomes;
  }

  close(): void {
    this.caller.close();
  }

  private async one(task: PrestageTask): Promise<PrestageOutcome> {
    const log = this.log.child({
      alloc: task.allocId,
      task: task.taskName,
      source: task.sourceNode,
      target: task.targetNode,
    });
    if (task.sourceAddress === '' || task.targetAddress === '') {
      const error = `no transfer address for ${task.sourceAddress === '' ? task.sourceNode : task.targetNode}`;
      log.warn({ code: 'NC_PRESTAGE_TARGET_UNAVAILABLE', error }, 'pre-stage skipped: the drain moves the task anyway');
      return { ...task, outcome: 'failed', code: 'NC_PRESTAGE_TARGET_UNAVAILABLE', error };
    }
    try {
      const response = await this.caller.prestageAllocTask(
        task.sourceAddress,
        { allocId: task.allocId, taskName: task.taskName, peerAddress: task.targetAddress },
        this.callTimeoutMs,
      );
      const staged = {
        checkpointId: response.checkpoint?.checkpointId ?? '',
        checkpointBytes: response.checkpoint?.sizeBytes ?? 0,
        wireBytes: response.wireBytes,
        dumpMs: response.dumpMs,
        shipMs: response.shipMs,
      };
      log.info(staged, 'task pre-staged on its reserved node');
      return { ...task, outcome: 'staged', ...staged };
    } catch (err) {
      log.warn({ err }, 'pre-stage failed: the drain moves the task anyway');
      const sent = (err as { context?: { sidecarCode?: string } }).context?.sidecarCode;
      return {
        ...task,
        outcome: 'failed',
        code: sent ?? errorCode(err) ?? 'NC_PRESTAGE_FAILED',
        error: errorMessage(err),
      };
    }
  }
}
