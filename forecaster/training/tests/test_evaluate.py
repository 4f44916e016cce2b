import numpy as np
import pytest

from nc_forecast.evaluate import evaluate
from nc_forecast.features import TraceIndex, Windows
from nc_forecast.traces import read_trace

from .conftest import write_ndjson

MIN = 60_000


def test_drains_lead_times_and_false_drains(tmp_path) -> None:
    # Node a is pre-empted at 10 min; b never is.
    trace = read_trace(
        write_ndjson(
            tmp_path / "t.ndjson",
            [
                {"t": 0, "node": "a", "event": "join"},
                {"t": 0, "node": "b", "event": "join"},
                {"t": 10 * MIN, "node": "a", "event": "notice"},
                {"t": 10 * MIN, "node": "a", "event": "preempted"},
                {"t": 60 * MIN, "node": "b", "event": "leave"},
            ],
        )
    )
    t = np.array([m * MIN for m in range(10)] + [m * MIN for m in range(10)], np.int64)
    node = np.array(["a"] * 10 + ["b"] * 10, object)
    y = ((node == "a") & (t >= 5 * MIN)).astype(np.int8)
    w = Windows(np.zeros((20, 0), np.float32), y, t, node, np.array(["default"] * 20, object), [])
    # a alerts from minute 6 on (one drain, 4 min lead); b alerts at minutes 2 and 3 (one false drain).
    scores = np.where((node == "a") & (t >= 6 * MIN), 0.9, 0.1)
    scores = np.where((node == "b") & ((t == 2 * MIN) | (t == 3 * MIN)), 0.8, scores)
    e = evaluate(w, scores, 0.5, TraceIndex(trace), horizon_ms=5 * MIN, tick_ms=MIN)
    assert e.drains == 2 and e.false_drains == 1
    assert e.lead_times_s == [240.0]
    m = e.metrics
    assert m["precision"] == pytest.approx(4 / 6) and m["recall"] == pytest.approx(4 / 5)
    assert m["leadTimeMedianS"] == 240 and m["leadTimeP10S"] == 240
    node_days = 20 * MIN / 86_400_000
    assert m["falseDrainsPer100NodeDays"] == pytest.approx(100 / node_days)
    assert m["rocAuc"] == pytest.approx(66.5 / 75)  # 4 positives above all 15 negatives, 1 tied with 13


def test_missed_preemption_has_zero_lead(tmp_path) -> None:
    trace = read_trace(
        write_ndjson(
            tmp_path / "t.ndjson",
            [{"t": 0, "node": "a", "event": "join"}, {"t": 5 * MIN, "node": "a", "event": "preempted"}],
        )
    )
    t = np.array([0, MIN, 2 * MIN, 3 * MIN, 4 * MIN], np.int64)
    w = Windows(
        np.zeros((5, 0), np.float32),
        np.array([0, 0, 0, 1, 1], np.int8),
        t,
        np.array(["a"] * 5, object),
        np.array(["default"] * 5, object),
        [],
    )
    e = evaluate(w, np.zeros(5), 0.5, TraceIndex(trace), horizon_ms=2 * MIN, tick_ms=MIN)
    assert e.lead_times_s == [0.0] and e.metrics["precision"] is None and e.metrics["recall"] == 0
