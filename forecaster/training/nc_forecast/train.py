"""Candidates, selection on held-out time, and the refusal of a candidate that cannot be judged."""

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

from .features import Windows, concat

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


def time_positions(windows: Windows, horizon_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's place in its own trace's span (0 = first row, 1 = last) and where its label window closes, on the
    same scale: pooled traces share validation blocks by position, never by clock time."""
    segment = windows.segment if windows.segment is not None else np.zeros(len(windows), np.int64)
    at = np.zeros(len(windows))
    closes = np.zeros(len(windows))
    for seg in np.unique(segment):
        rows = segment == seg
        t = windows.t_ms[rows].astype(np.float64)
        t0, width = t.min(), max(float(t.max() - t.min()), 1.0)
        at[rows] = (t - t0) / width
        closes[rows] = (t + horizon_ms - t0) / width
    return at, closes


def validation_block_of(windows: Windows, horizon_ms: int) -> np.ndarray:
    """Each row's validation block (index into VALIDATION_BLOCKS, by its place in its own trace's span), -1 before
    the first: the blocks a policy's thresholds must keep the budget in, for the model and the baselines alike."""
    at, _ = time_positions(windows, horizon_ms)
    block = np.full(len(windows), -1, np.int64)
    for k, (lo, hi) in enumerate(VALIDATION_BLOCKS):
        block[(at >= lo) & ((at < hi) | (hi == 1.0))] = k
    return block


def is_constant(scores: np.ndarray) -> bool:
    return len(scores) == 0 or float(np.ptp(scores)) <= 1e-12


def train(
    windows: Windows, horizon_ms: int, algorithms: list[str] | None = None, reference: np.ndarray | None = None
) -> Trained:
    """Rolling-origin selection on held-out time: each candidate is fitted on the rows before each validation block
    and scored on the block, then refitted on all rows.

    With `reference` (the reactive baseline's scores of the same rows) the winner is the candidate whose worst block
    beats acting at the notice by the widest margin, ties broken by mean PR-AUC: a forecaster is only worth running if
    it beats the notice on every stretch of time, and the mean alone let one very good block hide a losing one (the
    g4dn trace). Without it, the best mean PR-AUC wins.

    A candidate that scores a validation block with one constant value is refused, and so is every candidate when no
    block can compare them (TrainError): such a model never alerts or always does, and keeping it hid that (a trace
    whose pool is empty for hours kept a constant model). The pooled out-of-fold rows and scores of the winner are
    kept with each row's block (`extra["oof"]`): the policy's thresholds are chosen on them (`choose_policy`)."""
    started = time.perf_counter()
    names = algorithms or list(CANDIDATES)
    if len(windows) == 0 or len(np.unique(windows.y)) < 2:
        raise TrainError(
            f"training needs rows of both classes; got {len(windows)} rows, {int(windows.y.sum())} positive"
        )
    _, closes = time_positions(windows, horizon_ms)
    blocks = validation_block_of(windows, horizon_ms)
    folds = []
    for k, (lo, _) in enumerate(VALIDATION_BLOCKS):
        # Rows whose label window crosses the block's start would carry validation-time events into fitting.
        fit = windows.subset(closes <= lo)
        in_block = blocks == k
        val = windows.subset(in_block)
        if len(np.unique(fit.y)) == 2 and len(np.unique(val.y)) == 2:
            floor = average_precision_score(val.y, reference[in_block]) if reference is not None else None
            folds.append((fit, val, floor, k))
    if not folds:
        raise TrainError(
            "no validation block had both classes: no candidate can be compared on held-out time, none is kept"
        )
    results: dict[str, dict] = {}
    pooled: dict[str, np.ndarray] = {}
    refused: dict[str, str] = {}
    for name in names:
        per_fold, scores = [], []
        for k, (fit, val, _, _) in enumerate(folds):
            model = CANDIDATES[name]()
            model.fit(fit.X, fit.y)
            scores.append(scores_of(model, val.X))
            if is_constant(scores[-1]):
                refused[name] = f"scored validation block {k + 1} with one constant value"
                break
            per_fold.append(rank_metrics(val.y, scores[-1]))
        if name in refused:
            continue
        pooled[name] = np.concatenate(scores)
        results[name] = {
            "prAuc": float(np.mean([m["prAuc"] for m in per_fold])),
            "rocAuc": float(np.mean([m["rocAuc"] for m in per_fold])),
            "foldPrAuc": [round(m["prAuc"], 4) for m in per_fold],
        }
        if reference is not None:
            results[name]["worstMarginOverReactive"] = float(
                min(m["prAuc"] - floor for m, (_, _, floor, _) in zip(per_fold, folds))
            )
    kept = [n for n in names if n in results]
    if not kept:
        raise TrainError("every candidate refused: " + "; ".join(f"{n} {why}" for n, why in refused.items()))
    if reference is not None:
        winner = max(kept, key=lambda n: (results[n]["worstMarginOverReactive"], results[n]["prAuc"]))
        others = ", ".join(f"{n} {results[n]['worstMarginOverReactive']:+.3f}" for n in kept if n != winner)
        reason = (
            f"{winner}: widest worst-block PR-AUC margin over the reactive baseline across {len(folds)} held-out"
            f" blocks of the latest training time ({results[winner]['worstMarginOverReactive']:+.3f}"
            + (f" vs {others})" if others else ")")
        )
    else:
        winner = max(kept, key=lambda n: (results[n]["prAuc"], results[n]["rocAuc"]))
        others = ", ".join(f"{n} {results[n]['prAuc']:.3f}" for n in kept if n != winner)
        reason = (
            f"{winner}: highest mean PR-AUC over {len(folds)} held-out blocks of the latest training time"
            f" ({results[winner]['prAuc']:.3f}" + (f" vs {others})" if others else ")")
        )
    if refused:
        reason += "; refused: " + "; ".join(f"{n} {why}" for n, why in refused.items())
    model = CANDIDATES[winner]()
    model.fit(windows.X, windows.y)
    if is_constant(scores_of(model, windows.X)):
        raise TrainError(f"{winner} refitted on the whole training span scores every row the same: refused")
    t0, t1 = int(windows.t_ms.min()), int(windows.t_ms.max())
    return Trained(
        model=model,
        algorithm=winner,
        threshold=0.5,
        reason=reason,
        candidates=results,
        validation=results[winner],
        rows=len(windows),
        positives=int(windows.y.sum()),
        seconds=time.perf_counter() - started,
        split_ms=t0 + int((t1 - t0) * VALIDATION_BLOCKS[0][0]),
        extra={
            "oof": (
                concat([val for _, val, _, _ in folds]),
                pooled[winner],
                np.concatenate([np.full(len(val), k, np.int64) for _, val, _, k in folds]),
            ),
            "refused": refused,
        },
    )
