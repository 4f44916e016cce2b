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

  it('plays its spans at their own scale and the rest at the base scale', async () => {
    const real = new FakeClock(0);
    // 100x until clock 60 000, 10x from there to 120 000, then 100x again.
    const clock = new ScaledClock(
      { scale: 100, originMs: 0, realOriginMs: 0, spans: [{ fromMs: 60_000, toMs: 120_000, scale: 10 }] },
      real,
    );
    expect(clock.realAt(60_000)).toBe(600);
    expect(clock.realAt(120_000)).toBe(6_600);
    expect(clock.realAt(220_000)).toBe(7_600);
    real.advance(600 + 3_000);
    expect(clock.now()).toBe(90_000);
    // A sleep across the span's end: 30 000 clock ms at 10x, then 50 000 at 100x.
    await clock.sleep(80_000);
    expect(real.now()).toBe(6_600 + 500);
    expect(clock.now()).toBe(170_000);
    for (const t of [0, 59_999, 60_000, 61_234, 119_000, 500_000])
      expect(clock.clockAt(clock.realAt(t))).toBeCloseTo(t);
  });

  it('refuses spans out of order, overlapping or before the origin', () => {
    const real = new FakeClock(0);
    const make = (spans: { fromMs: number; toMs: number; scale: number }[]) =>
      new ScaledClock({ scale: 10, originMs: 1_000, realOriginMs: 0, spans }, real);
    expect(() => make([{ fromMs: 0, toMs: 2_000, scale: 1 }])).toThrow(RangeError);
    expect(() => make([{ fromMs: 5_000, toMs: 4_000, scale: 1 }])).toThrow(RangeError);
    expect(() =>
      make([
        { fromMs: 2_000, toMs: 4_000, scale: 1 },
        { fromMs: 3_000, toMs: 5_000, scale: 1 },
      ]),
    ).toThrow(RangeError);
    expect(() => make([{ fromMs: 2_000, toMs: 4_000, scale: 0 }])).toThrow(RangeError);
  });

  it('refuses a scale that is not a positive number', () => {
    const real = new FakeClock(0);
    expect(() => new ScaledClock({ scale: 0, originMs: 0, realOriginMs: 0 }, real)).toThrow(RangeError);
    expect(() => new ScaledClock({ scale: Number.NaN, originMs: 0, realOriginMs: 0 }, real)).toThrow(RangeError);
  });
});
