"""Candidates, selection on held-out time, and the decision threshold."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from .evaluate import best_f1_threshold
from .features import Windows

# Small models on purpose: the machine's two cores are shared, and these traces are a few thousand rows.
CANDIDATES = {
    "lightgbm": lambda: lgb.LGBMClassifier(
        n_estimators=300,
        learning_rate=0.02,
        num_leaves=7,
        min_child_samples=100,
        subsample=0.7,
        subsample_freq=1,
        colsample_bytree=0.7,
        reg_lambda=5.0,
        n_jobs=1,
        random_state=0,
        verbose=-1,
    ),
    # Inputs scaled to the training range and clipped there: a linear model must not extrapolate a node age or
    # an event count it never saw (the g4dn trace's quiet test half broke an unclipped one).
    "logistic_regression": lambda: Pipeline(
        [("scale", MinMaxScaler(clip=True)), ("model", LogisticRegression(max_iter=2000, C=1.0))]
    ),
    "random_forest": lambda: RandomForestClassifier(
        n_estimators=100, max_depth=8, min_samples_leaf=20, n_jobs=1, random_state=0
    ),
}
# Validation blocks as fractions of the training span, oldest first (rolling origin: each fits on what precedes it).
VALIDATION_BLOCKS = ((0.55, 0.70), (0.70, 0.85), (0.85, 1.0))


class TrainError(ValueError):
    """Training data that cannot make a model (no rows, one class only)."""


@dataclass
class Trained:
    model: object
    algorithm: str
    threshold: float
    reason: str
    candidates: dict[str, dict[str, float | None]]
    validation: dict[str, float | None]
    rows: int
    positives: int
    seconds: float
    split_ms: int
    extra: dict = field(default_factory=dict)


def scores_of(model: object, X: np.ndarray) -> np.ndarray:
    return model.predict_proba(X.astype(np.float32))[:, 1]  # type: ignore[attr-defined]


def rank_metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float | None]:
    if len(np.unique(y)) < 2:
        return {"rocAuc": None, "prAuc": None}
    return {"rocAuc": float(roc_auc_score(y, s)), "prAuc": float(average_precision_score(y, s))}


def train(
    windows: Windows, horizon_ms: int, algorithms: list[str] | None = None, reference: np.ndarray | None = None
) -> Trained:
    """Rolling-origin selection on held-out time: each candidate is fitted on the rows before each validation block
    and scored on the block, then refitted on all rows. The threshold maximises F1 over the winner's pooled
    out-of-fold scores.

    With `reference` (the reactive baseline's scores of the same rows) the winner is the candidate whose worst block
    beats acting at the notice by the widest margin, ties broken by mean PR-AUC: a forecaster is only worth running if
    it beats the notice on every stretch of time, and the mean alone let one very good block hide a losing one (the
    g4dn trace). Without it, the best mean PR-AUC wins."""
    started = time.perf_counter()
    names = algorithms or list(CANDIDATES)
    if len(windows) == 0 or len(np.unique(windows.y)) < 2:
        raise TrainError(
            f"training needs rows of both classes; got {len(windows)} rows, {int(windows.y.sum())} positive"
        )
    t0, t1 = int(windows.t_ms.min()), int(windows.t_ms.max())
    folds = []
    for lo, hi in VALIDATION_BLOCKS:
        start, end = t0 + int((t1 - t0) * lo), t0 + int((t1 - t0) * hi)
        # Rows whose label window crosses the block's start would carry validation-time events into fitting.
        fit = windows.subset(windows.t_ms + horizon_ms <= start)
        in_block = (windows.t_ms >= start) & ((windows.t_ms < end) | (hi == 1.0))
        val = windows.subset(in_block)
        if len(np.unique(fit.y)) == 2 and len(np.unique(val.y)) == 2:
            floor = average_precision_score(val.y, reference[in_block]) if reference is not None else None
            folds.append((fit, val, floor))
    results: dict[str, dict] = {}
    pooled: dict[str, np.ndarray] = {}
    for name in names if folds else []:
        per_fold, scores = [], []
        for fit, val, _ in folds:
            model = CANDIDATES[name]()
            model.fit(fit.X, fit.y)
            scores.append(scores_of(model, val.X))
            per_fold.append(rank_metrics(val.y, scores[-1]))
        pooled[name] = np.concatenate(scores)
        results[name] = {
            "prAuc": float(np.mean([m["prAuc"] for m in per_fold])),
            "rocAuc": float(np.mean([m["rocAuc"] for m in per_fold])),
            "foldPrAuc": [round(m["prAuc"], 4) for m in per_fold],
        }
        if reference is not None:
            results[name]["worstMarginOverReactive"] = float(
                min(m["prAuc"] - floor for m, (_, _, floor) in zip(per_fold, folds))
            )
    if results:
        threshold_y = np.concatenate([val.y for _, val, _ in folds])
        if reference is not None:
            winner = max(names, key=lambda n: (results[n]["worstMarginOverReactive"], results[n]["prAuc"]))
            others = ", ".join(f"{n} {results[n]['worstMarginOverReactive']:+.3f}" for n in names if n != winner)
            reason = (
                f"{winner}: widest worst-block PR-AUC margin over the reactive baseline across {len(folds)} held-out"
                f" blocks of the latest training time ({results[winner]['worstMarginOverReactive']:+.3f}"
                + (f" vs {others})" if others else ")")
            )
        else:
            winner = max(names, key=lambda n: (results[n]["prAuc"], results[n]["rocAuc"]))
            others = ", ".join(f"{n} {results[n]['prAuc']:.3f}" for n in names if n != winner)
            reason = (
                f"{winner}: highest mean PR-AUC over {len(folds)} held-out blocks of the latest training time"
                f" ({results[winner]['prAuc']:.3f}" + (f" vs {others})" if others else ")")
            )
        threshold = best_f1_threshold(threshold_y, pooled[winner])
    else:
        winner = names[0]
        reason = "no validation block had both classes; no comparison possible, kept the first candidate"
        threshold = 0.5
    model = CANDIDATES[winner]()
    model.fit(windows.X, windows.y)
    return Trained(
        model=model,
        algorithm=winner,
        threshold=threshold,
        reason=reason,
        candidates=results,
        validation=results.get(winner, {"rocAuc": None, "prAuc": None}),
        rows=len(windows),
        positives=int(windows.y.sum()),
        seconds=time.perf_counter() - started,
        split_ms=t0 + int((t1 - t0) * VALIDATION_BLOCKS[0][0]),
    )
