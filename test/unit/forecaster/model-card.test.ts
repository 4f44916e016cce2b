import { parseModelCard } from '../../../forecaster/src/model/model-card';

const BASE = { version: 'v1', features: ['cpu_mean_5m'], featureSpec: 'spec-1' };
const POLICY = {
  prewarnThreshold: 0.31,
  drainThreshold: 0.62,
  budget: { maxFencedShare: 0.05, maxFalseDrainsPer100NodeDays: 10 },
  chosenOn: 'out-of-fold scores of the training span',
};

const parse = (card: Record<string, unknown>) => parseModelCard('/m/model-card.json', JSON.stringify(card));

describe('parseModelCard policy (issue #15)', () => {
  it('reads the two-level policy, keeping the older threshold key tolerated beside it', () => {
    const card = parse({ ...BASE, threshold: 0.31, policy: { ...POLICY, onChosenSpan: { warnedShare: 0.4 } } });
    expect(card.policy).toEqual(POLICY);
    expect(Object.isFrozen(card.policy)).toBe(true);
    expect(Object.isFrozen(card.policy?.budget)).toBe(true);
  });

  it('keeps a card without a policy valid, and one whose levels are equal', () => {
    expect(parse(BASE).policy).toBeUndefined();
    expect(parse({ ...BASE, policy: { ...POLICY, drainThreshold: 0.31, chosenOn: undefined } }).policy).toEqual({
      prewarnThreshold: 0.31,
      drainThreshold: 0.31,
      budget: POLICY.budget,
    });
  });

  it.each([
    ['policy: expected an object', { policy: 'high' }],
    ['policy.prewarnThreshold: expected a number in [0, 1]', { policy: { ...POLICY, prewarnThreshold: 1.2 } }],
    ['policy.prewarnThreshold: expected a number in [0, 1]', { policy: { ...POLICY, prewarnThreshold: '0.3' } }],
    ['policy.drainThreshold: expected a number in [0, 1]', { policy: { ...POLICY, drainThreshold: -0.1 } }],
    ['policy.drainThreshold: must be at or above prewarnThreshold', { policy: { ...POLICY, drainThreshold: 0.3 } }],
    ['policy.budget: expected an object', { policy: { ...POLICY, budget: undefined } }],
    [
      'policy.budget.maxFencedShare: expected a positive number',
      { policy: { ...POLICY, budget: { ...POLICY.budget, maxFencedShare: 0 } } },
    ],
    [
      'policy.budget.maxFencedShare: expected a share in (0, 1]',
      { policy: { ...POLICY, budget: { ...POLICY.budget, maxFencedShare: 5 } } },
    ],
    [
      'policy.budget.maxFalseDrainsPer100NodeDays: expected a positive number',
      { policy: { ...POLICY, budget: { maxFencedShare: 0.05 } } },
    ],
    ['policy.chosenOn: expected a non-empty string', { policy: { ...POLICY, chosenOn: '' } }],
  ])('refuses a bad policy, naming the field: %s', (problem, patch) => {
    expect(() => parse({ ...BASE, ...patch })).toThrow(
      expect.objectContaining({
        code: 'NC_MODEL_CARD_INVALID',
        message: `model card /m/model-card.json: ${problem}`,
      }) as Error,
    );
  });
});
