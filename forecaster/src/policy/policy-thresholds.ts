import type { PolicyRule } from '../config';
import type { ModelPolicy } from '../model/model-card';

/**
 * A model card names no exit level: a fence taken at the card's pre-warn level is released below this share of
 * it. The gap keeps a risk that hovers at the level from fencing and undoing on alternate ticks.
 */
export const CARD_EXIT_RATIO = 0.8;

/** The serving model's thresholds, as the policy reads them on every tick (a promotion swaps them). */
export interface ServingPolicy {
  readonly version: string;
  readonly policy?: ModelPolicy;
}

/** The levels that apply to one node, and where they came from (shown in decisions and logs). */
export interface Thresholds {
  /** Pre-warn level: fence, reserve, pre-stage. */
  readonly prewarn: number;
  /** Below it a fence is undone. */
  readonly exit: number;
  /** Drain level: a fenced node is drained. */
  readonly drain: number;
  /** "config policy.pools.spot", "model card v7" or "defaults". */
  readonly source: string;
}

/**
 * The operator's config wins where it sets a threshold for the node's pool or class; elsewhere the serving
 * model's card decides; a card without a policy (older trainers) leaves the config's defaults.
 */
export function thresholdsFor(rule: PolicyRule, model: ServingPolicy | undefined): Thresholds {
  if (rule.thresholdsFrom === '' && model?.policy !== undefined) {
    const { prewarnThreshold, drainThreshold } = model.policy;
    return {
      prewarn: prewarnThreshold,
      exit: prewarnThreshold * CARD_EXIT_RATIO,
      drain: drainThreshold,
      source: `model card ${model.version}`,
    };
  }
  return {
    prewarn: rule.enterThreshold,
    exit: rule.exitThreshold,
    drain: rule.drainThreshold,
    source: rule.thresholdsFrom === '' ? 'defaults' : `config ${rule.thresholdsFrom}`,
  };
}
