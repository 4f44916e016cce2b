"""Metrics on scored windows: ranking, precision/recall at a threshold, drains, lead times (README, Evaluation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .features import TraceIndex, Windows

KEYS = (
    "rocAuc",
    "prAuc",
    "precision",
    "recall",
    "leadTimeMedianS",
    "leadTimeP10S",
    "falseDrainsPer100NodeDays",
)


@dataclass
class Evaluation:
    metrics: dict[str, float | None]
    lead_times_s: list[float]
    preemptions: int
    drains: int
    false_drains: int


def evaluate(
    w: Windows, scores: np.ndarray, threshold: float, index: TraceIndex, horizon_ms: int, tick_ms: int
) -> Evaluation:
    scores = np.asarray(scores, np.float64)
    y = w.y.astype(int)
    alert = scores >= threshold
    ranked = len(np.unique(y)) == 2
    metrics: dict[str, float | None] = {
        "rocAuc": float(roc_auc_score(y, scores)) if ranked else None,
        "prAuc": float(average_precision_score(y, scores)) if ranked else None,
        "precision": float((alert & (y == 1)).sum() / alert.sum()) if alert.any() else None,
        "recall": float((alert & (y == 1)).sum() / (y == 1).sum()) if (y == 1).any() else None,
    }
    leads: list[float] = []
    drains = false_drains = 0
    order = np.lexsort((w.t_ms, w.node.astype(str)))
    nodes, t, a = w.node[order], w.t_ms[order], alert[order]
    boundaries = np.flatnonzero(nodes[1:] != nodes[:-1]) + 1
    for lo, hi in zip(np.r_[0, boundaries], np.r_[boundaries, len(nodes)]):
        node = str(nodes[lo])
        gone = index.events_of("node", node, "preempted")
        nt, na = t[lo:hi], a[lo:hi]
        episodes = _episodes(nt, na, tick_ms)
        caught: dict[int, float] = {}
        for s, e in episodes:
            hits = gone[(gone > s) & (gone <= e + horizon_ms)]
            drains += 1
            if len(hits) == 0:
                false_drains += 1
            for r in hits.tolist():
                caught[r] = max(caught.get(r, 0.0), (r - s) / 1000.0)
        # Pre-emptions this span is answerable for: those some scored row of this node looked ahead to.
        for r in gone.tolist():
            if ((nt < r) & (nt >= r - horizon_ms)).any():
                leads.append(caught.get(r, 0.0))
    node_days = len(w) * tick_ms / 86_400_000
    metrics["leadTimeMedianS"] = float(np.median(leads)) if leads else None
    metrics["leadTimeP10S"] = float(np.percentile(leads, 10)) if leads else None
    metrics["falseDrainsPer100NodeDays"] = float(false_drains / node_days * 100) if node_days > 0 else None
    return Evaluation(metrics, leads, len(leads), drains, false_drains)


def _episodes(t: np.ndarray, alert: np.ndarray, tick_ms: int) -> list[tuple[int, int]]:
    """Maximal runs of consecutive alerted ticks, as (first tick, last tick)."""
    out: list[tuple[int, int]] = []
    start = prev = None
    for ti, on in zip(t.tolist(), alert.tolist()):
        if on and start is not None and ti - prev == tick_ms:
            prev = ti
            continue
        if start is not None:
            out.append((start, prev))
            start = prev = None
        if on:
            start = prev = ti
    if start is not None:
        out.append((start, prev))
    return out
