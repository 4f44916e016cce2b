/** One retrain: the recorded trace to learn from and the registry whose current model the candidate must beat. */
export interface RetrainRequest {
  readonly trace: string;
  readonly registry: string;
  /**
   * The model serving from `modelDir` while the registry is still empty: it enters the registry first (judged on
   * the same trace), so the first candidate has to beat it rather than nothing.
   */
  readonly seedModelDir?: string;
}

/** The registry's decision, as `npm run forecast -- retrain` prints it. */
export interface RetrainOutcome {
  readonly promoted: boolean;
  readonly reason: string;
  readonly candidate: string;
  /** The version serving before the decision (null: the registry was empty). */
  readonly serving: string | null;
  readonly candidatePrAuc: number | null;
  readonly servingPrAuc: number | null;
  /** Rows of the recent validation window both models were scored on. */
  readonly recentRows: number;
}

/** Trains a candidate on a trace and lets the registry promote it only if it wins. By role; the real one is Python. */
export interface ModelRetrainer {
  /** The trace's last span kept out of training for the comparison: a shorter trace cannot be retrained on. */
  readonly holdoutMs: number;
  retrain(request: RetrainRequest): Promise<RetrainOutcome>;
}
