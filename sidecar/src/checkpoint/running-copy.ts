import { rm } from 'node:fs/promises';
import type { Clock } from '../../../common/clock';
import type { CheckpointMeta } from './manifest';
import type { CheckpointShipper } from './staging';

/** A dump that leaves the task running (Dumper). */
export interface RunningDumper {
  dump(request: { readonly taskId: string; readonly leaveRunning: boolean; readonly handoverKey: string }): Promise<{
    readonly meta: CheckpointMeta;
    readonly dir: string;
    readonly dumpMs: number;
  }>;
}

export interface RunningCopyDeps {
  readonly dumper: RunningDumper;
  readonly shipper: CheckpointShipper;
  readonly clock: Clock;
}

export interface RunningCopyRequest {
  readonly taskId: string;
  /** The key the copy is filed under on the peer. */
  readonly handoverKey: string;
  /** host:port of the peer's sidecar (State Transfer Protocol). */
  readonly peerAddress: string;
}

export interface RunningCopy {
  readonly meta: CheckpointMeta;
  /** Chunk payload bytes sent: only what the peer lacked travels. */
  readonly wireBytes: number;
  readonly dumpMs: number;
  readonly shipMs: number;
}

/**
 * Copies a running task to a peer without stopping it: a leave-running dump, shipped over the State Transfer
 * Protocol. What background checkpoints and pre-staging share. The caller holds the task's lock (a copy and a
 * migration of one task never dump at once); the local dump is removed whatever happens, the task runs on.
 */
export async function shipRunningCopy(deps: RunningCopyDeps, request: RunningCopyRequest): Promise<RunningCopy> {
  const dumped = await deps.dumper.dump({
    taskId: request.taskId,
    leaveRunning: true,
    handoverKey: request.handoverKey,
  });
  try {
    const shipStarted = deps.clock.now();
    const { wireBytes } = await deps.shipper.ship(dumped.dir, dumped.meta, request.peerAddress);
    return { meta: dumped.meta, wireBytes, dumpMs: dumped.dumpMs, shipMs: deps.clock.now() - shipStarted };
  } finally {
    await rm(dumped.dir, { recursive: true, force: true });
  }
}
