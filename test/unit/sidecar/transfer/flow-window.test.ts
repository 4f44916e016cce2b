import { FlowWindow } from '../../../../sidecar/src/transfer/flow-window';

describe('FlowWindow', () => {
  it('never lets more than the window be in flight while a slow receiver acknowledges', async () => {
    const window = new FlowWindow(100_000);
    const acks: number[] = [];
    let maxSeen = 0;
    const receiver = setInterval(() => {
      const size = acks.shift();
      if (size !== undefined) window.release(size);
    }, 1);
    try {
      for (let i = 0; i < 200; i += 1) {
        const size = 10_000 + ((i * 7919) % 20_000);
        await window.acquire(size);
        acks.push(size);
        maxSeen = Math.max(maxSeen, window.bytesInFlight);
      }
    } finally {
      clearInterval(receiver);
    }
    expect(maxSeen).toBeLessThanOrEqual(100_000);
    expect(window.peakBytes).toBe(maxSeen);
    expect(window.peakBytes).toBeGreaterThan(50_000);
  });

  it('lets a frame larger than the window go alone', async () => {
    const window = new FlowWindow(1000);
    await window.acquire(5000);
    const next = window.acquire(10);
    let done = false;
    void next.then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    window.release(5000);
    await next;
    expect(window.bytesInFlight).toBe(10);
  });

  it('wakes a blocked sender with the failure', async () => {
    const window = new FlowWindow(10);
    await window.acquire(10);
    const blocked = window.acquire(10);
    window.fail(Object.assign(new Error('gone'), { code: 'NC_TRANSFER_PEER_UNAVAILABLE' }));
    await expect(blocked).rejects.toMatchObject({ code: 'NC_TRANSFER_PEER_UNAVAILABLE' });
    await expect(window.acquire(1)).rejects.toMatchObject({ code: 'NC_TRANSFER_PEER_UNAVAILABLE' });
  });
});
