import { execFile } from 'node:child_process';
import { closeSync, constants, openSync, read } from 'node:fs';

/**
 * A one-byte readiness channel for CRIU's and runc's `--status-fd`. runc refuses Node's socketpair-backed
 * 'pipe' stdio ("not writable"), so the channel is a FIFO: the child gets the write end as a plain fd.
 */
export class StatusChannel {
  private constructor(
    private readonly readFd: number,
    readonly writeFd: number,
  ) {}

  static async create(fifoPath: string): Promise<StatusChannel> {
    await new Promise<void>((resolve, reject) =>
      execFile('mkfifo', [fifoPath], (err) => (err ? reject(new Error(`mkfifo failed: ${err.message}`)) : resolve())),
    );
    const readFd = openSync(fifoPath, constants.O_RDONLY | constants.O_NONBLOCK);
    const writeFd = openSync(fifoPath, constants.O_WRONLY);
    return new StatusChannel(readFd, writeFd);
  }

  /** Closes the parent's copy of the write end, once the child holds its own. */
  releaseWriter(): void {
    closeSync(this.writeFd);
  }

  /**
   * Resolves true when a byte arrived, false when the writer closed without one or `timeoutMs` passed.
   */
  async waitByte(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const buf = Buffer.alloc(1);
    for (;;) {
      const got = await new Promise<number | 'again'>((resolve, reject) =>
        read(this.readFd, buf, 0, 1, null, (err, n) => {
          if (err?.code === 'EAGAIN') resolve('again');
          else if (err) reject(err);
          else resolve(n);
        }),
      );
      if (got === 1) return true;
      // 0 with no writer left: the child exited without signalling.
      if (got === 0 || Date.now() > deadline || signal?.aborted === true) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  close(): void {
    try {
      closeSync(this.readFd);
    } catch {
      // already closed
    }
  }
}
