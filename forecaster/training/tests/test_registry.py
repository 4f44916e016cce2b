import fcntl
import threading
from pathlib import Path

import numpy as np
import pytest

from nc_forecast.export import write_model_dir
from nc_forecast.features import build_windows, load_spec
from nc_forecast.registry import Registry, RegistryError
from nc_forecast.traces import read_trace
from nc_forecast.train import train


@pytest.fixture
def models(tmp_path: Path, parcae_trace: Path):
    """A model trained on real labels and one trained on shuffled labels (worse by construction)."""
    spec = load_spec()
    trace = read_trace(parcae_trace)
    w = build_windows(trace, spec)
    early = w.subset(w.t_ms < np.quantile(w.t_ms, 0.7))
    recent = w.subset(w.t_ms >= np.quantile(w.t_ms, 0.7))
    good = train(early, spec.horizon_ms, ["lightgbm"])
    shuffled = early.subset(np.arange(len(early)))
    shuffled.y = np.random.default_rng(0).permutation(shuffled.y)
    bad = train(shuffled, spec.horizon_ms, ["lightgbm"])
    dirs = {}
    for name, trained in (("good", good), ("bad", bad)):
        dirs[name] = tmp_path / name
        write_model_dir(dirs[name], trained, spec, trace="t", fmt="parcae", span_ms=(0, 1))
    return dirs, recent


def test_worse_model_is_not_promoted_and_rollback_restores(tmp_path: Path, models) -> None:
    dirs, recent = models
    registry = Registry(tmp_path / "registry")
    first = registry.promote_if_better(dirs["bad"], recent)
    assert first["promoted"] and first["reason"] == "no serving model to beat"
    better = registry.promote_if_better(dirs["good"], recent)
    assert better["promoted"], better
    worse = registry.promote_if_better(dirs["bad"], recent)
    assert not worse["promoted"] and "<=" in worse["reason"]
    assert registry.state()["current"] == better["candidate"]
    assert (registry.current_dir() / "model.onnx").exists()
    back = registry.rollback()
    assert back["serving"] == first["candidate"] and registry.state()["current"] == first["candidate"]
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback()


def test_equal_model_is_not_promoted(tmp_path: Path, models) -> None:
    dirs, recent = models
    registry = Registry(tmp_path / "registry")
    registry.promote_if_better(dirs["good"], recent)
    again = registry.promote_if_better(dirs["good"], recent)
    assert not again["promoted"]


def test_promote_waits_for_the_registry_lock(tmp_path: Path, models) -> None:
    """The forecaster's retrain timer and an operator's command on one registry take turns (issue 6)."""
    dirs, recent = models
    root = tmp_path / "registry"
    root.mkdir()
    registry = Registry(root)
    done = threading.Event()
    with open(root / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: (registry.promote_if_better(dirs["good"], recent), done.set()))
        worker.start()
        assert not done.wait(1.0), "promote ran while another holder had the registry lock"
        assert registry.state()["current"] is None
        fcntl.flock(held, fcntl.LOCK_UN)
    worker.join(60)
    assert done.is_set() and registry.state()["current"] is not None
