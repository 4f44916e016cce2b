import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from nc_forecast import baselines
from nc_forecast.export import CARD_FILE, MODEL_FILE, OPSET, write_model_dir
from nc_forecast.features import TraceIndex, build_windows, load_spec
from nc_forecast.registry import score_onnx
from nc_forecast.traces import read_trace
from nc_forecast.train import CANDIDATES, TrainError, scores_of, train


@pytest.fixture
def windows(parcae_trace: Path):
    spec = load_spec()
    return spec, read_trace(parcae_trace), build_windows(read_trace(parcae_trace), spec)


@pytest.mark.parametrize("algorithm", list(CANDIDATES))
def test_onnx_export_matches_the_python_model(tmp_path: Path, windows, algorithm: str) -> None:
    spec, trace, w = windows
    trained = train(w, spec.horizon_ms, [algorithm])
    card = write_model_dir(tmp_path, trained, spec, trace="t", fmt=trace.format, span_ms=(0, 1))
    native = scores_of(trained.model, w.X)
    served = score_onnx(tmp_path / MODEL_FILE, w.X)
    assert np.abs(native - served).max() < 1e-5
    assert card["algorithm"] == algorithm and card["features"] == spec.names and card["featureSpec"] == spec.id
    model = onnx.load(tmp_path / MODEL_FILE)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= OPSET
    assert json.loads((tmp_path / CARD_FILE).read_text())["version"] == card["version"]


def test_selection_is_on_held_out_time_and_recorded(windows) -> None:
    spec, _, w = windows
    trained = train(w, spec.horizon_ms)
    assert set(trained.candidates) == set(CANDIDATES)
    best = max(trained.candidates.values(), key=lambda m: m["prAuc"])
    assert trained.candidates[trained.algorithm] == best
    assert trained.algorithm in trained.reason and "held-out" in trained.reason
    assert 0 < trained.threshold < 1
    # Validation is on blocks of the latest time (rolling origin), never a random sample: three blocks, each
    # scored by a model fitted only on rows whose label window closed before the block began.
    t0, t1 = int(w.t_ms.min()), int(w.t_ms.max())
    assert trained.split_ms == t0 + int((t1 - t0) * 0.55)
    assert all(len(m["foldPrAuc"]) == 3 for m in trained.candidates.values())


def test_with_the_reactive_reference_the_widest_worst_block_margin_wins(parcae_trace: Path) -> None:
    spec = load_spec()
    trace = read_trace(parcae_trace)
    index = TraceIndex(trace)
    w = build_windows(trace, spec, index=index)
    reactive = baselines.reactive(w, index)
    trained = train(w, spec.horizon_ms, reference=reactive)
    margins = {n: m["worstMarginOverReactive"] for n, m in trained.candidates.items()}
    assert margins[trained.algorithm] == max(margins.values())
    assert "reactive" in trained.reason and trained.algorithm in trained.reason
    # A reference that is the label itself cannot be beaten: every margin is at most zero.
    perfect = train(w, spec.horizon_ms, reference=w.y.astype(float))
    assert all(m["worstMarginOverReactive"] <= 1e-12 for m in perfect.candidates.values())


def test_one_class_is_refused(windows) -> None:
    spec, _, w = windows
    with pytest.raises(TrainError, match="both classes"):
        train(w.subset(w.y == 0), spec.horizon_ms)
