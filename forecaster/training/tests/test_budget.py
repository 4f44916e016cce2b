import numpy as np

from nc_forecast.budget import SAFETY, Budget, Layout, choose_in_every_block, choose_thresholds
from nc_forecast.features import TraceIndex, build_windows, load_spec
from nc_forecast.traces import read_trace

from .conftest import MIN, write_ndjson


def _trace(tmp_path):
    """Two nodes over 10 h; n1 is pre-empted at 5 h (notice 2 min before), n2 never."""
    lines = [
        {"t": 0, "node": "n1", "event": "join"},
        {"t": 0, "node": "n2", "event": "join"},
        {"t": 300 * MIN, "node": "n1", "event": "preempted"},
        {"t": 600 * MIN, "node": "n2", "event": "leave"},
    ]
    spec = load_spec()
    trace = read_trace(write_ndjson(tmp_path / "t.ndjson", lines), notice_lead_s=spec.notice_lead_s)
    index = TraceIndex(trace)
    return spec, index, build_windows(trace, spec, index=index)


def test_warned_ahead_counts_the_alert_at_each_lead_before_the_preemption(tmp_path) -> None:
    spec, index, w = _trace(tmp_path)
    layout = Layout(w, index, spec.horizon_ms, spec.tick_ms, migration_s=60)
    assert layout.preemptions == 1
    # n1 alerts from 6 min before its pre-emption: warned at 2, 2.5 and 5 min, not at 10.
    s = np.where((w.node == "n1") & (w.t_ms >= 294 * MIN), 0.9, 0.1)
    ordered = layout.sorted_scores(s)
    assert layout.warned(ordered, 0.5) == {"120": 1.0, "150": 1.0, "300": 1.0, "600": 0.0}
    assert layout.drain_finished(ordered, 0.5) == 1.0
    # One run of alerts, followed by the pre-emption within the horizon: no false drain.
    assert layout.false_drains_per_100(ordered, 0.5) == 0
    # The same run on n2, which is never pre-empted, is one false drain.
    wrong = np.where((w.node == "n2") & (w.t_ms >= 294 * MIN) & (w.t_ms < 300 * MIN), 0.9, 0.1)
    node_days = len(w) * spec.tick_ms / 86_400_000
    assert layout.false_drains_per_100(layout.sorted_scores(wrong), 0.5) == 1 / node_days * 100
    assert layout.warned(layout.sorted_scores(wrong), 0.5)["120"] == 0.0


def test_thresholds_keep_within_the_budget_and_never_act_when_nothing_can(tmp_path) -> None:
    spec, index, w = _trace(tmp_path)
    layout = Layout(w, index, spec.horizon_ms, spec.tick_ms, migration_s=60)
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, len(w))
    prewarn, drain = choose_thresholds(layout, s, Budget(0.05, 10_000))
    ordered = layout.sorted_scores(s)
    assert layout.fenced_share(ordered, prewarn) <= 0.05
    # The next lower score would fence more than the budget allows.
    lower = s[s < prewarn].max()
    assert layout.fenced_share(ordered, lower) > 0.05
    assert prewarn <= drain
    assert layout.false_drains_per_100(ordered, drain) <= 10_000
    # A constant scorer cannot meet any budget below 100 %: both levels are above its score and never act.
    flat = np.full(len(w), 0.3)
    prewarn, drain = choose_thresholds(layout, flat, Budget(0.05, 10))
    assert prewarn > 0.3 and drain > 0.3


def test_thresholds_keep_the_budget_with_its_margin_in_every_block(tmp_path) -> None:
    """Scores that drift upwards in the second half: a level chosen on the whole span fences more than the budget
    there; the level chosen in every block keeps half of it in each."""
    spec, index, w = _trace(tmp_path)
    rng = np.random.default_rng(1)
    late = w.t_ms >= 300 * MIN
    s = rng.uniform(0, 1, len(w)) + np.where(late, 0.5, 0.0)
    blocks = late.astype(np.int64)
    budget = Budget(0.1, 10_000)
    whole = choose_thresholds(Layout(w, index, spec.horizon_ms, spec.tick_ms, 60), s, budget)
    prewarn, drain = choose_in_every_block(w, blocks, index, s, budget, spec.horizon_ms, spec.tick_ms, 60)
    for b in (0, 1):
        part = Layout(w.subset(blocks == b), index, spec.horizon_ms, spec.tick_ms, 60)
        ordered = part.sorted_scores(s[blocks == b])
        assert part.fenced_share(ordered, prewarn) <= budget.max_fenced_share * SAFETY
        assert part.false_drains_per_100(ordered, drain) <= budget.max_false_drains_per_100_node_days * SAFETY
    late_part = Layout(w.subset(late), index, spec.horizon_ms, spec.tick_ms, 60)
    assert late_part.fenced_share(late_part.sorted_scores(s[late]), whole[0]) > budget.max_fenced_share
    # The late block's level is the higher one: the early block alone would have allowed a lower level.
    early = Layout(w.subset(~late), index, spec.horizon_ms, spec.tick_ms, 60)
    assert prewarn > choose_thresholds(early, s[~late], Budget(0.05, 5_000))[0]
    assert prewarn <= drain
    # Rows of no block (negative) are left out; no block at all: never act, above every score.
    none = choose_in_every_block(w, np.full(len(w), -1), index, s, budget, spec.horizon_ms, spec.tick_ms, 60)
    assert min(none) > s.max()
