"""Bought time against the alert budget spent: how far ahead each pre-emption was warned, how much node-time was
fenced for it, how many drains were wasted (README, Evaluation: "Bought time"), and the two thresholds an operator's
budget allows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score

from .features import TraceIndex, Windows

# Leads a warning is judged at: the notice's own 2 minutes, then 2.5, 5 and 10 minutes ahead.
LEADS_S = (120, 150, 300, 600)
# How long a drain needs to move a node's chained tasks before the node goes. bench:migrate (commit 4eedb59, load 14)
# froze a 512 MiB task for 39.4 s in a stop-and-copy hand-over; rounded up to a minute for Nomad's drain to start and
# the replacement to be placed. Larger tasks need more: `--migration-s`.
MIGRATION_S = 60.0
# Points of the warned-ahead-vs-budget curve.
CURVE_POINTS = 40
# Most thresholds tried for the drain level (quantiles of the scores above the pre-warn threshold).
DRAIN_CANDIDATES = 200
# The share of the budget a threshold may spend in each block of the span it is chosen on. Scores drift between the
# training span and later time: at the whole budget, thresholds that held it in every block of the g4dn trace's
# training span fenced 17 % of its held-out node-time (and 29.7 % chosen on the span as a whole).
SAFETY = 0.5
CHOSEN_ON = (
    f"the training span's three validation blocks (its latest 45 % of time; out-of-fold scores for the model), each"
    f" kept within {SAFETY:g} of the budget: each level is the highest of the blocks' levels"
)


@dataclass(frozen=True)
class Budget:
    max_fenced_share: float = 0.05
    max_false_drains_per_100_node_days: float = 10.0

    def as_json(self) -> dict:
        return {
            "maxFencedShare": self.max_fenced_share,
            "maxFalseDrainsPer100NodeDays": self.max_false_drains_per_100_node_days,
        }


class Layout:
    """What every threshold of one set of rows is judged on, computed once: rows ordered by node then time, where
    each node's alert runs start, and for each pre-emption the rows that could have warned of it."""

    def __init__(self, w: Windows, index: TraceIndex, horizon_ms: int, tick_ms: int, migration_s: float) -> None:
        order = np.lexsort((w.t_ms, w.node.astype(str)))
        self.order = order
        node = w.node.astype(str)[order]
        t = w.t_ms[order]
        self.y = w.y[order].astype(bool)
        n = len(order)
        # A row continues its predecessor's run when it is the same node one tick later.
        self.cont = np.zeros(n, bool)
        if n > 1:
            self.cont[1:] = (node[1:] == node[:-1]) & (t[1:] - t[:-1] == tick_ms)
        self.node_days = n * tick_ms / 86_400_000
        self.migration_s = migration_s
        # Per answerable pre-emption: the node's rows in [r - horizon, r - lead] for each lead, and for the drain
        # [r - horizon, r - migration], as [lo, hi) positions in the ordered rows.
        warn_lo: list[int] = []
        warn_hi: list[list[int]] = []
        drain_hi: list[int] = []
        notice_leads: list[float] = []
        boundaries = np.flatnonzero(node[1:] != node[:-1]) + 1 if n else np.empty(0, int)
        for lo, hi in zip(np.r_[0, boundaries], np.r_[boundaries, n]) if n else []:
            nt = t[lo:hi]
            for r in index.events_of("node", str(node[lo]), "preempted").tolist():
                # Answerable: some scored row of this node looked ahead to it (as evaluate.py's lead times).
                if not ((nt < r) & (nt >= r - horizon_ms)).any():
                    continue
                warn_lo.append(lo + int(np.searchsorted(nt, r - horizon_ms, "left")))
                warn_hi.append([lo + int(np.searchsorted(nt, r - lead * 1000, "right")) for lead in LEADS_S])
                drain_hi.append(lo + int(np.searchsorted(nt, r - int(migration_s * 1000), "right")))
                notice_leads.append(_notice_lead_s(index, str(node[lo]), r))
        self.warn_lo = np.asarray(warn_lo, np.int64)
        self.warn_hi = np.asarray(warn_hi, np.int64).reshape(-1, len(LEADS_S))
        self.drain_hi = np.asarray(drain_hi, np.int64)
        self.notice_leads_s = np.asarray(notice_leads, np.float64)

    @property
    def preemptions(self) -> int:
        return len(self.warn_lo)

    def sorted_scores(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, np.float64)[self.order]

    def fenced_share(self, s: np.ndarray, threshold: float) -> float:
        return float((s >= threshold).mean()) if len(s) else 0.0

    def false_drains_per_100(self, s: np.ndarray, threshold: float) -> float:
        """Drains (runs of alerted ticks) whose start is not followed by the node's pre-emption within the horizon:
        a row's label is exactly that."""
        if self.node_days <= 0:
            return 0.0
        on = s >= threshold
        starts = on & ~(self.cont & np.r_[False, on[:-1]])
        return float((starts & ~self.y).sum() / self.node_days * 100)

    def warned(self, s: np.ndarray, threshold: float) -> dict[str, float | None]:
        """Warned `lead` s ahead: the node alerted at some tick in [r - horizon, r - lead]."""
        if self.preemptions == 0:
            return {str(lead): None for lead in LEADS_S}
        on = np.r_[0, np.cumsum(s >= threshold)]
        return {
            str(lead): float(((on[self.warn_hi[:, i]] - on[self.warn_lo]) > 0).mean()) for i, lead in enumerate(LEADS_S)
        }

    def notice_warned(self) -> dict[str, float | None]:
        """The interruption notice itself, at the instant it came (not at the next tick): the bar a forecast must
        clear, since the notice drains at once whatever the model says."""
        if self.preemptions == 0:
            return {str(lead): None for lead in LEADS_S}
        return {str(lead): float((self.notice_leads_s >= lead).mean()) for lead in LEADS_S}

    def drain_finished(self, s: np.ndarray, threshold: float) -> float | None:
        """A drain had time to finish: the node crossed the drain threshold at some tick in [r - horizon,
        r - migration] (a drain, once started, is not undone)."""
        if self.preemptions == 0:
            return None
        on = np.r_[0, np.cumsum(s >= threshold)]
        return float(((on[self.drain_hi] - on[self.warn_lo]) > 0).mean())

    def operating_point(self, s: np.ndarray, prewarn: float, drain: float) -> dict:
        return {
            "warnedShare": self.warned(s, prewarn),
            "drainFinishedShare": self.drain_finished(s, drain),
            "fencedShare": self.fenced_share(s, prewarn),
            "falseDrainsPer100NodeDays": self.false_drains_per_100(s, drain),
            "preemptions": self.preemptions,
        }

    def curve(self, s: np.ndarray) -> list[dict]:
        """Warned-ahead shares against node-time fenced, one point per threshold: evenly spaced among the distinct
        scores, so a scorer that gives most rows one value (0) still gets points across the rest."""
        distinct = np.unique(s)
        levels = (
            distinct[np.unique(np.linspace(0, len(distinct) - 1, CURVE_POINTS).round().astype(int))] if len(s) else []
        )
        points = []
        for level in levels:
            warned = self.warned(s, float(level))
            points.append(
                {
                    "threshold": float(level),
                    "fencedShare": self.fenced_share(s, float(level)),
                    "falseDrainsPer100NodeDays": self.false_drains_per_100(s, float(level)),
                    "warnedShare": warned,
                }
            )
        return points


def _notice_lead_s(index: TraceIndex, node: str, r: int) -> float:
    """Seconds between the node's latest notice since its latest join and the pre-emption at r (0: none)."""
    joins = index.events_of("node", node, "join")
    joined = joins[joins <= r].max() if (joins <= r).any() else -np.inf
    notices = index.events_of("node", node, "notice")
    before = notices[(notices <= r) & (notices >= joined)]
    return float((r - before.max()) / 1000) if len(before) else 0.0


def choose_in_every_block(
    w: Windows,
    blocks: np.ndarray,
    index: TraceIndex,
    scores: np.ndarray,
    budget: Budget,
    horizon_ms: int,
    tick_ms: int,
    migration_s: float,
) -> tuple[float, float]:
    """Thresholds that keep the budget, less its safety margin, in every block of time (`blocks`: a block id per row,
    negative for rows left out): each level is the highest of the levels chosen block by block. One span's levels
    spend the budget on average only, and a quiet stretch then hides a loud one; held out, they overspent it (the
    g4dn trace: 29.7 % of node-time fenced for a 5 % budget)."""
    within = Budget(budget.max_fenced_share * SAFETY, budget.max_false_drains_per_100_node_days * SAFETY)
    scores = np.asarray(scores, np.float64)
    levels = [
        choose_thresholds(
            Layout(w.subset(blocks == b), index, horizon_ms, tick_ms, migration_s), scores[blocks == b], within
        )
        for b in np.unique(blocks[blocks >= 0]).tolist()
    ]
    if not levels:
        return _never(scores), _never(scores)
    prewarn = max(p for p, _ in levels)
    return prewarn, max(prewarn, max(d for _, d in levels))


def choose_thresholds(layout: Layout, scores: np.ndarray, budget: Budget) -> tuple[float, float]:
    """The lowest pre-warn threshold that fences at most the budget's share of node-time, and the lowest drain
    threshold at or above it whose drains stay within the false-drain budget. A level no threshold can keep within the
    budget is set just above the highest score: it never acts."""
    s = layout.sorted_scores(scores)
    prewarn = _lowest_within_share(s, budget.max_fenced_share)
    above = np.unique(s[s >= prewarn])
    if len(above) > DRAIN_CANDIDATES:
        above = np.unique(np.quantile(above, np.linspace(0, 1, DRAIN_CANDIDATES)))
    for level in above.tolist():
        if layout.false_drains_per_100(s, level) <= budget.max_false_drains_per_100_node_days:
            return prewarn, max(prewarn, float(level))
    return prewarn, _never(s)


def _lowest_within_share(s: np.ndarray, share: float) -> float:
    if len(s) == 0:
        return _never(s)
    desc = np.sort(s)[::-1]
    allowed = int(np.floor(share * len(s)))
    if allowed >= len(s):
        return float(desc[-1])
    # Rows tied with the first row left out must be left out too.
    cut = desc[allowed]
    higher = desc[desc > cut]
    return float(higher.min()) if len(higher) else _never(s)


def _never(s: np.ndarray) -> float:
    """A level that never acts: just above 1 (every scorer's scores are probabilities or shares) or above the highest
    score. Just above the highest score seen was not enough: a pool-burst level chosen so on the g4dn trace's training
    span fired on later time's higher scores (458 false drains per 100 node-days)."""
    return float(np.nextafter(max(1.0, float(s.max()) if len(s) else 1.0), np.inf))


def pre_notice_pr_auc(y: np.ndarray, scores: np.ndarray, notice_active: np.ndarray) -> float | None:
    """Average precision over the rows where no interruption notice is active: the ranking the notice cannot give."""
    rows = ~notice_active.astype(bool)
    if len(np.unique(y[rows])) < 2:
        return None
    return float(average_precision_score(y[rows], scores[rows]))


def choose_policy(
    trained, index: TraceIndex, horizon_ms: int, tick_ms: int, budget: Budget, migration_s: float
) -> dict:
    """The model card's `policy`: both thresholds chosen for the budget on the winner's out-of-fold scores (the
    training span's validation blocks, each scored by a model that never saw it), in every block with the safety
    margin (`choose_in_every_block`), never by F1. Sets the trained model's `threshold` (the card's older key) to the
    pre-warn threshold."""
    oof, scores, blocks = trained.extra["oof"]
    # Pooled traces: a block of each trace is a block of its own.
    if oof.segment is not None:
        blocks = oof.segment * 100 + blocks
    # A probability model's level that never acts is 1 on the card (scores of exactly 1 do not occur in practice).
    prewarn, drain = (
        min(1.0, level)
        for level in choose_in_every_block(oof, blocks, index, scores, budget, horizon_ms, tick_ms, migration_s)
    )
    trained.threshold = prewarn
    layout = Layout(oof, index, horizon_ms, tick_ms, migration_s)
    return {
        "prewarnThreshold": prewarn,
        "drainThreshold": drain,
        "budget": budget.as_json(),
        "chosenOn": CHOSEN_ON + (", in every pooled trace" if oof.segment is not None else ""),
        "onChosenSpan": layout.operating_point(layout.sorted_scores(scores), prewarn, drain),
    }
