import json
from pathlib import Path

import numpy as np
import pytest

from nc_forecast.features import SpecError, build_windows, load_spec
from nc_forecast.traces import read_trace

from .conftest import write_ndjson

S = 1000


def spec_file(tmp_path: Path, features: list[dict], **top) -> Path:
    raw = {
        "id": "test",
        "specVersion": 1,
        "tickS": 60,
        "horizonS": 120,
        "syntheticNoticeLeadS": 30,
        "missingValue": -1,
        "metrics": ["cpu"],
        "features": features,
        **top,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(raw))
    return path


def rows_at(w, t_ms: int) -> dict:
    return {str(n): w.X[i] for i, n in enumerate(w.node) if w.t_ms[i] == t_ms}


def test_each_op_follows_the_readme(tmp_path: Path) -> None:
    spec = load_spec(
        spec_file(
            tmp_path,
            [
                {"name": "age", "op": "age", "capS": 1000},
                {"name": "notice", "op": "since", "scope": "node", "event": "notice", "capS": 999},
                {"name": "pool_gone_2m", "op": "count", "scope": "pool", "event": "preempted", "windowS": 120},
                {"name": "alive", "op": "alive"},
                {"name": "alive_max_3m", "op": "aliveMax", "windowS": 180},
                {"name": "cpu_mean", "op": "metric", "metric": "cpu", "agg": "mean", "windowS": 120},
                {"name": "cpu_max", "op": "metric", "metric": "cpu", "agg": "max", "windowS": 120},
                {"name": "cpu_last", "op": "metric", "metric": "cpu", "agg": "last", "windowS": 120},
            ],
        )
    )
    trace = read_trace(
        write_ndjson(
            tmp_path / "t.ndjson",
            [
                {"t": 0, "node": "a", "event": "join"},
                {"t": 0, "node": "b", "event": "join"},
                {"t": 0, "node": "c", "event": "join"},
                {"t": 30 * S, "node": "a", "metrics": {"cpu": 0.2}},
                {"t": 90 * S, "node": "a", "metrics": {"cpu": 0.6}},
                {"t": 100 * S, "node": "c", "event": "notice"},
                {"t": 120 * S, "node": "c", "event": "preempted"},
                {"t": 170 * S, "node": "a", "metrics": {"cpu": 0.4}},
                {"t": 600 * S, "node": "b", "event": "leave"},
            ],
        )
    )
    w = build_windows(trace, spec)
    at60, at120 = rows_at(w, 60 * S), rows_at(w, 120 * S)
    # t=60: all three alive; a has one sample in (−60 s, 60 s]; c has no notice yet.
    assert at60["a"].tolist() == pytest.approx([60, 999, 0, 3, 3, 0.2, 0.2, 0.2])
    assert at60["c"][1] == 999
    # t=120: c left at exactly 120 s, so it is not scored; its pre-emption counts; the max remembers 3.
    assert set(at120) == {"a", "b"}
    assert at120["a"].tolist() == pytest.approx([120, 999, 1, 2, 3, 0.4, 0.6, 0.6])
    at180 = rows_at(w, 180 * S)
    assert at180["a"][5:].tolist() == pytest.approx([0.5, 0.6, 0.4])
    # c's row at 60 s is labelled: pre-empted within (60 s, 180 s]; a and b never are.
    labels = {(str(n), int(t)): int(y) for n, t, y in zip(w.node, w.t_ms, w.y)}
    assert labels[("c", 60 * S)] == 1 and labels[("a", 60 * S)] == 0
    # Rows stop where the label window would pass the trace's end (600 s - 120 s).
    assert w.t_ms.max() <= 480 * S


def test_since_and_counts_at_node_scope(tmp_path: Path) -> None:
    spec = load_spec(
        spec_file(
            tmp_path,
            [
                {"name": "notice", "op": "since", "scope": "node", "event": "notice", "capS": 999},
                {"name": "gone_here", "op": "count", "scope": "node", "event": "preempted", "windowS": 10000},
                {"name": "pool_join_since", "op": "since", "scope": "pool", "event": "join", "capS": 5000},
            ],
        )
    )
    trace = read_trace(
        write_ndjson(
            tmp_path / "t.ndjson",
            [
                {"t": 0, "node": "a", "event": "join"},
                {"t": 10 * S, "node": "a", "event": "preempted"},
                {"t": 50 * S, "node": "a", "event": "join"},
                {"t": 100 * S, "node": "a", "event": "notice"},
                {"t": 400 * S, "node": "a", "event": "preempted"},
            ],
        )
    )
    w = build_windows(trace, spec)
    at = {int(t): x.tolist() for t, x in zip(w.t_ms, w.X)}
    assert 0 in at and 60 * S in at and 120 * S in at
    assert at[0] == [999, 0, 0]
    assert at[120 * S] == [20, 1, 70]  # rejoined at 50 s: pre-empted once before, notice 20 s ago


def test_spec_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"features\[0\]\.op 'median' unknown"):
        load_spec(spec_file(tmp_path, [{"name": "x", "op": "median"}]))
    with pytest.raises(SpecError, match="windowS"):
        load_spec(spec_file(tmp_path, [{"name": "x", "op": "count", "scope": "pool", "event": "preempted"}]))


def test_shipped_spec_loads_and_rows_are_float32(parcae_trace: Path) -> None:
    spec = load_spec()
    w = build_windows(read_trace(parcae_trace), spec)
    assert w.X.dtype == np.float32 and w.X.shape[1] == len(spec.names) == 29
    assert 0 < w.y.mean() < 0.5
