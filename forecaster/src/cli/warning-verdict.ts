import type { BoughtTime, OperatingPoint } from './results-table';

/** What the verdict reads of one scorer's held-out figures at the budget (`boughtTime.scorers.*.atBudget`). */
export type VerdictPoint = Pick<
  OperatingPoint,
  'warnedShare' | 'fencedShare' | 'falseDrainsPer100NodeDays' | 'preemptions'
>;

/** What the verdict reads of one evaluation's `boughtTime`. */
export interface VerdictInput extends Pick<BoughtTime, 'budget' | 'notice'> {
  readonly scorers: Readonly<Record<string, { readonly atBudget: VerdictPoint }>>;
}

export interface WarningVerdict {
  readonly preemptions: number;
  /** Pre-emptions the model warned 5+ minutes ahead at its budget thresholds. */
  readonly model: number;
  readonly modelWithinBudget: boolean;
  /** The baseline that warned the most 5+ minutes ahead at its own budget thresholds (first in order on a tie). */
  readonly bestBaseline: string | null;
  readonly bestBaselineWarned: number;
  /** Within the budget and more than every baseline: the bar's first half, shown apart since the second (the
   * notice warns 96-100 % of the shared traces' pre-emptions 2 minutes ahead) asks far more. */
  readonly beatsBaselines: boolean;
  /** Pre-emptions the interruption notice itself warned 2 minutes ahead. */
  readonly notice: number;
  readonly holds: boolean;
}

const AHEAD = '300';
const NOTICE_LEAD = '120';

/**
 * Issue #15's bar for one run: within the budget, the model warns 5+ minutes ahead of more pre-emptions than every
 * baseline at its thresholds for the same budget, and of at least as many as the notice warns 2 minutes ahead.
 * Counted in pre-emptions rather than shares, so a table says by how many a run misses the bar (the held-out spans
 * hold 26 to 49: one pre-emption is 2-4 points). A baseline is compared at its budget thresholds even when it
 * overspent the budget held out, since the bar is about the same budget, not about what a scorer happened to spend.
 */
export function warningVerdict(bought: VerdictInput): WarningVerdict {
  const model = bought.scorers.model?.atBudget;
  if (model === undefined) throw new TypeError('boughtTime.scorers has no model');
  const preemptions = model.preemptions;
  const count = (share: number | null | undefined): number => Math.round((share ?? 0) * preemptions);
  let bestBaseline: string | null = null;
  let bestBaselineWarned = 0;
  for (const [name, scorer] of Object.entries(bought.scorers)) {
    if (name === 'model') continue;
    const warned = count(scorer.atBudget.warnedShare[AHEAD]);
    if (bestBaseline === null || warned > bestBaselineWarned) [bestBaseline, bestBaselineWarned] = [name, warned];
  }
  const warned = count(model.warnedShare[AHEAD]);
  const notice = count(bought.notice.warnedShare[NOTICE_LEAD]);
  const modelWithinBudget =
    model.fencedShare <= bought.budget.maxFencedShare &&
    model.falseDrainsPer100NodeDays <= bought.budget.maxFalseDrainsPer100NodeDays;
  const beatsBaselines = preemptions > 0 && modelWithinBudget && warned > bestBaselineWarned;
  return {
    preemptions,
    model: warned,
    modelWithinBudget,
    bestBaseline,
    bestBaselineWarned,
    beatsBaselines,
    notice,
    holds: beatsBaselines && warned >= notice,
  };
}
