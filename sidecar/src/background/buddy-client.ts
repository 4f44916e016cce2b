import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { decodeStatus } from '../../../common/grpc/status-codec';
import { BackgroundCheckpointsClient } from '../../../proto/gen/chain/v1/transfer';
import { TransferError } from '../transfer/errors';
import { channelCredentials, type TransferTls } from '../transfer/tls';

/** What the background checkpointer asks of its buddy besides the transfer itself. */
export interface Buddy {
  /** Drops the buddy's background checkpoint of a task that left this node; false when it held none. */
  forget(taskId: string): Promise<boolean>;
}

/**
 * The buddy's `chain.v1.BackgroundCheckpoints` service, on its transfer port behind mutual TLS. A forget is
 * rare (once per task that leaves), so each has a connection of its own, closed with it: a sidecar keeps no
 * idle channel open to its buddy for it (the soak counts open fds).
 */
export class GrpcBuddy implements Buddy {
  constructor(
    private readonly address: string,
    private readonly tls: TransferTls,
    private readonly timeoutMs: number,
  ) {}

  forget(taskId: string): Promise<boolean> {
    const client = new BackgroundCheckpointsClient(this.address, channelCredentials(this.tls), {
      'grpc.use_local_subchannel_pool': 1,
    });
    return new Promise<boolean>((resolve, reject) => {
      client.forget({ taskId }, new Metadata(), { deadline: Date.now() + this.timeoutMs }, (err, response) => {
        if (err === null) resolve(response.deleted);
        else reject(this.failure(err));
      });
    }).finally(() => client.close());
  }

  private failure(err: ServiceError): Error {
    return (
      decodeStatus(err, { prefix: `buddy at ${this.address}: `, context: { peer: this.address } }) ??
      new TransferError('NC_TRANSFER_PEER_UNAVAILABLE', `buddy at ${this.address} unreachable: ${err.details}`, {
        cause: err,
        recoverable: true,
        context: { peer: this.address },
      })
    );
  }
}
