import { ScaledClock } from '../../../common/scaled-clock';
import { FakeClock } from '../../fakes/fake-clock';

describe('ScaledClock', () => {
  it('reads origin + elapsed real time × scale', () => {
    const real = new FakeClock(1_000_000);
    const clock = new ScaledClock({ scale: 60, originMs: 5_000, realOriginMs: 1_000_000 }, real);
    expect(clock.now()).toBe(5_000);
    real.advance(1_000);
    expect(clock.now()).toBe(65_000);
  });

  it('reads before its origin as earlier clock time', () => {
    const real = new FakeClock(1_000_000);
    const clock = new ScaledClock({ scale: 10, originMs: 50_000, realOriginMs: 1_002_000 }, real);
    expect(clock.now()).toBe(30_000);
  });

  it('sleeps clock time divided by the scale', async () => {
    const real = new FakeClock(0);
    const clock = new ScaledClock({ scale: 200, originMs: 0, realOriginMs: 0 }, real);
    await clock.sleep(60_000);
    expect(real.now()).toBe(300);
    expect(clock.now()).toBe(60_000);
  });

  it('refuses a scale that is not a positive number', () => {
    const real = new FakeClock(0);
    expect(() => new ScaledClock({ scale: 0, originMs: 0, realOriginMs: 0 }, real)).toThrow(RangeError);
    expect(() => new ScaledClock({ scale: Number.NaN, originMs: 0, realOriginMs: 0 }, real)).toThrow(RangeError);
  });
});
