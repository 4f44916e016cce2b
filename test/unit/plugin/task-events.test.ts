import { TaskEventBus } from '../../../plugin/src/task-events';

describe('task event bus', () => {
  it('delivers events to every open stream in order, stamped, until the stream is cancelled', async () => {
    const bus = new TaskEventBus(() => 1_700_000_000_250);
    const stop = new AbortController();
    const received: string[] = [];
    const reading = (async () => {
      for await (const event of bus.subscribe(stop.signal)) {
        received.push(event.message);
        expect(event.timestamp).toEqual({ seconds: 1_700_000_000, nanos: 250_000_000 });
        if (received.length === 2) stop.abort();
      }
    })();
    await new Promise((resolve) => setImmediate(resolve));
    bus.emit({ taskId: 't', allocId: 'a', taskName: 'web', message: 'one' });
    bus.emit({ taskId: 't', allocId: 'a', taskName: 'web', message: 'two', annotations: { k: 'v' } });
    await reading;
    expect(received).toEqual(['one', 'two']);
    // A cancelled stream no longer listens.
    bus.emit({ taskId: 't', allocId: 'a', taskName: 'web', message: 'three' });
    expect(received).toHaveLength(2);
  });
});
