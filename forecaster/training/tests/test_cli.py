import json
from pathlib import Path

import numpy as np

from nc_forecast.cli import main
from nc_forecast.evaluate import KEYS
from nc_forecast.registry import score_onnx


def test_prepare_then_score_writes_every_key_and_a_report(tmp_path: Path, parcae_trace: Path, capsys) -> None:
    work = tmp_path / "work"
    assert main(["prepare", "--trace", str(parcae_trace), "--work", str(work)]) == 0
    prepared = json.loads(capsys.readouterr().out)
    X = np.fromfile(work / "features.f32", "<f4").reshape(prepared["rows"], prepared["cols"])
    score_onnx(Path(prepared["modelDir"]) / "model.onnx", X).astype("<f4").tofile(work / "scores.f32")
    report = tmp_path / "report.html"
    assert main(["score", "--work", str(work), "--report", str(report)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["model"]) == set(KEYS)
    assert set(result["baselines"]) == {
        "reactive",
        "utilisation",
        "historicalRate",
        "prophet",
        "poolBurst",
        "nodeAge",
    }
    for metrics in result["baselines"].values():
        assert set(metrics) == set(KEYS)
    # Bought time for the model and every baseline, each figure naming the thresholds and where they were chosen.
    bought = result["boughtTime"]
    assert bought["budget"] == {"maxFencedShare": 0.05, "maxFalseDrainsPer100NodeDays": 10.0}
    assert set(bought["scorers"]) == {"model", *result["baselines"]}
    for scorer in bought["scorers"].values():
        at = scorer["atBudget"]
        assert set(at["warnedShare"]) == {"120", "150", "300", "600"} and at["chosenOn"]
        assert at["preemptions"] == result["context"]["preemptions"] > 0
        assert 0 <= at["fencedShare"] <= 1 and at["falseDrainsPer100NodeDays"] >= 0
        # Chosen on the held-out span itself, the thresholds keep within the budget there.
        best = scorer["atBudgetChosenOnHeldOut"]
        assert best["fencedShare"] <= 0.05 and best["falseDrainsPer100NodeDays"] <= 10
        assert len(scorer["curve"]) > 1
    # The reactive baseline alerts at the notice: it warns at 2 min, never at 2.5 min or more.
    reactive = bought["scorers"]["reactive"]["atBudget"]["warnedShare"]
    assert reactive["120"] > 0.9 and reactive["150"] == reactive["300"] == 0
    # The (synthetic) notice itself came 2 min before every pre-emption.
    assert bought["notice"]["warnedShare"] == {"120": 1.0, "150": 0.0, "300": 0.0, "600": 0.0}
    # Held-out time: the scored rows all come after the 60 % split.
    context = json.loads((work / "context.json").read_text())
    t = np.load(work / "scored.npz")["t_ms"]
    assert t.min() >= context["splitMs"]
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 3 and "prAuc" in page


def test_errors_are_coded_json(tmp_path: Path, capsys) -> None:
    (tmp_path / "x.csv").write_text("what\n")
    assert main(["train", "--trace", str(tmp_path / "x.csv"), "--out", str(tmp_path / "m")]) == 2
    err = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert err["error"]["code"] == "NC_FORECAST_TRACE_INVALID"


def test_train_with_holdout_leaves_the_last_hours_out(tmp_path: Path, parcae_trace: Path, capsys) -> None:
    assert main(["train", "--trace", str(parcae_trace), "--out", str(tmp_path / "m"), "--holdout-hours", "3"]) == 0
    card = json.loads(capsys.readouterr().out)["card"]
    until = card["training"]["spanMs"][1]
    assert main(["convert", "--trace", str(parcae_trace), "--out", str(tmp_path / "t.ndjson")]) == 0
    last = max(json.loads(line).get("t", 0) for line in (tmp_path / "t.ndjson").read_text().splitlines())
    assert until == last - 3 * 3_600_000


def test_telemetry_signal_is_learnt_end_to_end(tmp_path: Path, capsys) -> None:
    from .conftest import telemetry_trace

    trace = telemetry_trace(tmp_path / "telemetry.ndjson")
    work = tmp_path / "work"
    assert main(["prepare", "--trace", str(trace), "--work", str(work)]) == 0
    prepared = json.loads(capsys.readouterr().out)
    X = np.fromfile(work / "features.f32", "<f4").reshape(prepared["rows"], prepared["cols"])
    score_onnx(Path(prepared["modelDir"]) / "model.onnx", X).astype("<f4").tofile(work / "scores.f32")
    assert main(["score", "--work", str(work)]) == 0
    result = json.loads(capsys.readouterr().out)
    # Memory pressure announces each pre-emption; the notice (synthetic, 2 min) only the last rows.
    assert result["model"]["prAuc"] > 0.8
    assert all(result["model"]["prAuc"] > b["prAuc"] for b in result["baselines"].values())
    assert result["model"]["leadTimeMedianS"] > 120
