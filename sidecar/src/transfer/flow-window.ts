/**
 * Upload flow control: at most `maxBytes` of frame data unacknowledged. The sender waits here, so a
 * checkpoint of any size costs the window in memory, never the image. It also measures the wire: bytes
 * acknowledged while the sender was blocked show what the link and the receiver can take.
 */
export class FlowWindow {
  private inFlight = 0;
  private peak = 0;
  private waiter: { bytes: number; resolve: () => void; reject: (err: Error) => void } | undefined;
  private failure: Error | undefined;
  private blockedSince: bigint | undefined;
  private releasedWhileBlocked = 0;
  private sampleBytes = 0;
  private sampleNs = 0n;

  constructor(readonly maxBytes: number) {
    if (!(maxBytes > 0)) throw new RangeError('window must be positive');
  }

  get bytesInFlight(): number {
    return this.inFlight;
  }

  /** The most bytes ever in flight at once. */
  get peakBytes(): number {
    return this.peak;
  }

  /** Waits until `bytes` fit; a frame larger than the window goes alone. One caller at a time. */
  async acquire(bytes: number): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.waiter !== undefined) throw new Error('FlowWindow.acquire is not re-entrant');
    if (!this.fits(bytes)) {
      this.blockedSince = process.hrtime.bigint();
      await new Promise<void>((resolve, reject) => {
        this.waiter = { bytes, resolve, reject };
      });
    }
    this.inFlight += bytes;
    this.peak = Math.max(this.peak, this.inFlight);
  }

  release(bytes: number): void {
    this.inFlight = Math.max(0, this.inFlight - bytes);
    if (this.blockedSince !== undefined) this.releasedWhileBlocked += bytes;
    const waiter = this.waiter;
    if (waiter !== undefined && this.fits(waiter.bytes)) {
      this.waiter = undefined;
      this.endBlocked();
      waiter.resolve();
    }
  }

  /** Wakes any waiter with `err`, and every later acquire fails with it. */
  fail(err: Error): void {
    this.failure ??= err;
    const waiter = this.waiter;
    this.waiter = undefined;
    this.blockedSince = undefined;
    waiter?.reject(err);
  }

  /** Bytes per second acknowledged while blocked since the last call, or undefined without a sample. */
  takeWireRate(minSampleBytes: number): number | undefined {
    if (this.sampleBytes < minSampleBytes || this.sampleNs === 0n) return undefined;
    const rate = this.sampleBytes / (Number(this.sampleNs) / 1e9);
    this.sampleBytes = 0;
    this.sampleNs = 0n;
    return rate;
  }

  private fits(bytes: number): boolean {
    return this.inFlight === 0 || this.inFlight + bytes <= this.maxBytes;
  }

  private endBlocked(): void {
    if (this.blockedSince === undefined) return;
    const ns = process.hrtime.bigint() - this.blockedSince;
    this.sampleNs += ns;
    this.sampleBytes += this.releasedWhileBlocked;
    this.releasedWhileBlocked = 0;
    this.blockedSince = undefined;
  }
}
