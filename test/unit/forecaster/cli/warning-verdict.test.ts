import { warningVerdict } from '../../../../forecaster/src/cli/warning-verdict';
import type { VerdictInput, VerdictPoint } from '../../../../forecaster/src/cli/warning-verdict';

function at(warned5m: number, fenced = 0.03, falseDrains = 2): { atBudget: VerdictPoint } {
  return {
    atBudget: {
      warnedShare: { '120': 0.9, '150': warned5m, '300': warned5m, '600': 0 },
      fencedShare: fenced,
      falseDrainsPer100NodeDays: falseDrains,
      preemptions: 20,
    },
  };
}

function bought(scorers: VerdictInput['scorers'], notice2m = 0.1): VerdictInput {
  return {
    budget: { maxFencedShare: 0.05, maxFalseDrainsPer100NodeDays: 10 },
    notice: { warnedShare: { '120': notice2m, '150': 0, '300': 0, '600': 0 } },
    scorers,
  };
}

describe('issue #15 bar: warned 5+ minutes ahead at the budget (issue #15)', () => {
  it('holds when the model beats every baseline and matches the notice, within the budget', () => {
    const v = warningVerdict(bought({ model: at(0.15), reactive: at(0), poolBurst: at(0.1) }));
    expect(v).toEqual({
      preemptions: 20,
      model: 3,
      modelWithinBudget: true,
      bestBaseline: 'poolBurst',
      bestBaselineWarned: 2,
      beatsBaselines: true,
      notice: 2,
      holds: true,
    });
  });

  it('fails on a tie with the best baseline: the model must warn of more', () => {
    const v = warningVerdict(bought({ model: at(0.1), historicalRate: at(0.1) }));
    expect([v.bestBaseline, v.beatsBaselines, v.holds]).toEqual(['historicalRate', false, false]);
  });

  it('fails below the notice at 2 minutes, even when every baseline is beaten', () => {
    const v = warningVerdict(bought({ model: at(0.15), reactive: at(0) }, 0.96));
    expect([v.beatsBaselines, v.holds]).toEqual([true, false]);
  });

  it('fails when the model overspends either half of the budget held out', () => {
    expect(warningVerdict(bought({ model: at(0.5, 0.06), reactive: at(0) }, 0)).modelWithinBudget).toBe(false);
    expect(warningVerdict(bought({ model: at(0.5, 0.03, 11), reactive: at(0) }, 0)).holds).toBe(false);
  });

  it('counts an overspending baseline at its budget thresholds all the same', () => {
    const v = warningVerdict(bought({ model: at(0.15), prophet: at(0.25, 0.17) }, 0));
    expect([v.bestBaseline, v.bestBaselineWarned, v.holds]).toEqual(['prophet', 5, false]);
  });
});
