import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from nc_forecast import train as train_module
from nc_forecast.cli import main
from nc_forecast.export import write_model_dir
from nc_forecast.features import build_windows, load_spec
from nc_forecast.registry import Registry, score_onnx
from nc_forecast.traces import read_trace
from nc_forecast.train import TrainError, train

from .conftest import MIN, bursty_parcae


def late_only(path: Path) -> Path:
    """Twelve nodes for 10 h; every pre-emption falls in the last 3 h (none in a 60 % training span)."""
    rows = [f"0,add,node{i}" for i in range(1, 13)]
    for k, minute in enumerate(range(430, 590, 20)):
        rows.append(f"{minute * MIN},remove,node{k + 1}")
        rows.append(f"{(minute + 5) * MIN},add,node{k + 20}")
    rows.append(f"{600 * MIN},add,node99")
    path.write_text("\n".join(rows) + "\n")
    return path


def _score(work: Path, prepared: dict) -> None:
    X = np.fromfile(work / "features.f32", "<f4").reshape(prepared["rows"], prepared["cols"])
    score_onnx(Path(prepared["modelDir"]) / "model.onnx", X).astype("<f4").tofile(work / "scores.f32")


def test_a_trace_without_preemptions_in_its_training_span_is_scored_by_the_pooled_model(tmp_path, capsys) -> None:
    late = late_only(tmp_path / "late.csv")
    other = bursty_parcae(tmp_path / "other.csv", hours=6)
    # Alone it cannot train, and the error says what to do.
    assert main(["prepare", "--trace", str(late), "--work", str(tmp_path / "alone")]) == 2
    err = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]
    assert err["code"] == "NC_FORECAST_TRAINING_FAILED" and "--train-traces" in err["message"]

    work = tmp_path / "work"
    assert main(["prepare", "--trace", str(late), "--work", str(work), "--train-traces", str(other)]) == 0
    prepared = json.loads(capsys.readouterr().out)
    card = json.loads((Path(prepared["modelDir"]) / "model-card.json").read_text())
    assert card["training"]["pooled"] is True and card["training"]["traces"] == [str(late), str(other)]
    assert "no pre-emption" in card["training"]["fallback"]
    _score(work, prepared)
    assert main(["score", "--work", str(work)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "no pre-emption" in result["context"]["training"]["fallback"]
    assert result["context"]["preemptions"] > 0 and result["model"]["rocAuc"] is not None
    assert result["boughtTime"]["scorers"]["model"]["atBudget"]["preemptions"] == result["context"]["preemptions"]


def test_leave_one_trace_out_trains_on_the_other_traces_only(tmp_path, capsys) -> None:
    target = bursty_parcae(tmp_path / "target.csv", hours=6, seed=3)
    other = bursty_parcae(tmp_path / "other.csv", hours=6, seed=4)
    work = tmp_path / "work"
    argv = ["prepare", "--trace", str(target), "--work", str(work), "--train-traces", str(other), "--leave-out"]
    assert main(argv) == 0
    prepared = json.loads(capsys.readouterr().out)
    card = json.loads((Path(prepared["modelDir"]) / "model-card.json").read_text())
    assert card["training"]["traces"] == [str(other)] and card["training"]["leaveOut"] is True


def test_train_writes_the_two_level_policy_for_the_budget_given(tmp_path, capsys) -> None:
    trace = bursty_parcae(tmp_path / "t.csv", hours=6)
    argv = ["train", "--trace", str(trace), "--out", str(tmp_path / "m"), "--max-fenced-share", "0.1"]
    assert main([*argv, "--max-false-drains", "20"]) == 0
    card = json.loads(capsys.readouterr().out)["card"]
    policy = card["policy"]
    assert set(policy) == {"prewarnThreshold", "drainThreshold", "budget", "chosenOn"}
    assert 0 <= policy["prewarnThreshold"] <= policy["drainThreshold"] <= 1
    assert policy["budget"] == {"maxFencedShare": 0.1, "maxFalseDrainsPer100NodeDays": 20.0}
    assert "out-of-fold" in policy["chosenOn"] and card["threshold"] == policy["prewarnThreshold"]
    spent = card["metrics"]["policyOnChosenSpan"]
    assert spent["fencedShare"] <= 0.1 and spent["falseDrainsPer100NodeDays"] <= 20


class Constant:
    """Scores every row with the training base rate."""

    def fit(self, X, y):
        self.rate = float(np.mean(y))
        return self

    def predict_proba(self, X):
        return np.column_stack([np.full(len(X), 1 - self.rate), np.full(len(X), self.rate)])


def test_a_constant_candidate_is_refused_by_selection(parcae_trace, monkeypatch) -> None:
    monkeypatch.setitem(train_module.CANDIDATES, "constant", Constant)
    spec = load_spec()
    w = build_windows(read_trace(parcae_trace), spec)
    with pytest.raises(TrainError, match="every candidate refused: constant"):
        train(w, spec.horizon_ms, ["constant"])
    trained = train(w, spec.horizon_ms, ["constant", "logistic_regression"])
    assert trained.algorithm == "logistic_regression" and "constant" not in trained.candidates
    assert "refused: constant" in trained.reason


def test_a_constant_candidate_is_refused_by_promotion(tmp_path, parcae_trace) -> None:
    spec = load_spec()
    w = build_windows(read_trace(parcae_trace), spec)
    trained = train(w, spec.horizon_ms, ["logistic_regression"])
    # The same card, but a model that ignores its inputs: its ONNX export scores every row alike.
    trained.model = LogisticRegression().fit(np.zeros_like(w.X), w.y)
    write_model_dir(tmp_path / "constant", trained, spec, trace="t", fmt="parcae", span_ms=(0, 1))
    registry = Registry(tmp_path / "registry")
    decision = registry.promote_if_better(tmp_path / "constant", w)
    assert decision["promoted"] is False and "the same" in decision["reason"]
    assert registry.state()["current"] is None
