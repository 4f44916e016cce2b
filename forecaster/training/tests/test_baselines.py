from pathlib import Path

import numpy as np

from nc_forecast import baselines
from nc_forecast.features import TraceIndex, build_windows, load_spec
from nc_forecast.traces import read_trace

from .conftest import write_ndjson

MIN = 60_000


def test_reactive_is_one_from_notice_to_preemption(tmp_path: Path) -> None:
    spec = load_spec()
    trace = read_trace(
        write_ndjson(
            tmp_path / "t.ndjson",
            [
                {"t": 0, "node": "a", "event": "join"},
                {"t": 0, "node": "b", "event": "join"},
                {"t": 20 * MIN, "node": "a", "event": "notice"},
                {"t": 22 * MIN, "node": "a", "event": "preempted"},
                {"t": 60 * MIN, "node": "b", "event": "leave"},
            ],
        )
    )
    index = TraceIndex(trace)
    w = build_windows(trace, spec, index=index)
    r = baselines.reactive(w, index)
    on = {(str(n), int(t) // MIN) for n, t, s in zip(w.node, w.t_ms, r) if s == 1}
    assert on == {("a", 20), ("a", 21)}


def test_utilisation_and_rate_and_prophet_score_every_row(parcae_trace: Path) -> None:
    spec = load_spec()
    trace = read_trace(parcae_trace)
    index = TraceIndex(trace)
    w = build_windows(trace, spec, index=index)
    occupancy = baselines.utilisation(w, index, spec, trace)
    assert occupancy.min() >= 0 and occupancy.max() == 1
    rate = baselines.historical_rate(w, index, spec.horizon_ms)
    assert np.all((rate >= 0) & (rate < 1)) and rate.max() > 0
    capacity = baselines.prophet_capacity(trace, index, spec)
    p = baselines.prophet(w, index, capacity)
    assert len(p) == len(w) and np.all((p >= 0) & (p <= 1))
    # Rolling origin: nothing is forecast before two hours of history exist.
    ticks, yhat = capacity["default"]
    assert np.isnan(yhat[ticks < trace.start_ms + baselines.PROPHET_MIN_HISTORY_MS]).all()
    assert not np.isnan(yhat[ticks >= trace.start_ms + baselines.PROPHET_MIN_HISTORY_MS]).any()
