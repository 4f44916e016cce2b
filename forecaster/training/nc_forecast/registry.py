"""Versioned models on disk: a candidate is promoted only if it beats the serving model on a recent window.

Layout: ROOT/versions/<version>/{model.onnx, model-card.json} and ROOT/registry.json
{"current": version|null, "history": [promoted versions, oldest first], "decisions": [...]}. The serving
side loads ROOT/versions/<current>; registry.json is replaced atomically. Promote and rollback hold an exclusive
lock on ROOT/.lock from reading the index to writing it, so the forecaster's retrain timer and an operator's
command on the same registry never lose each other's decision.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .export import CARD_FILE, MODEL_FILE
from .features import Windows
from .train import is_constant, rank_metrics


class RegistryError(ValueError):
    """A registry operation that cannot proceed (nothing to roll back to, a candidate without a card)."""


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.index_path = self.root / "registry.json"

    def state(self) -> dict:
        if not self.index_path.exists():
            return {"current": None, "history": [], "decisions": []}
        return json.loads(self.index_path.read_text())

    def current_dir(self) -> Path | None:
        current = self.state()["current"]
        return None if current is None else self.root / "versions" / current

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def promote_if_better(self, candidate: str | Path, recent: Windows) -> dict:
        """Scores candidate and serving model on the same recent rows; promotes only on a strictly higher PR-AUC."""
        with self._locked():
            return self._promote_if_better(Path(candidate), recent)

    def _promote_if_better(self, candidate: Path, recent: Windows) -> dict:
        card = json.loads((candidate / CARD_FILE).read_text())
        state = self.state()
        challenger_scores = score_onnx(candidate / MODEL_FILE, recent.X)
        challenger = rank_metrics(recent.y, challenger_scores)
        incumbent = None
        if state["current"] is not None:
            incumbent = rank_metrics(
                recent.y, score_onnx(self.root / "versions" / state["current"] / MODEL_FILE, recent.X)
            )
        if is_constant(challenger_scores):
            # A constant model never alerts or always does; no serving model, however poor, is replaced by one.
            promoted, why = False, f"the candidate scores all {len(recent)} recent rows the same: refused"
        elif challenger["prAuc"] is None:
            promoted, why = False, "the recent window has a single class: nothing to compare on"
        elif incumbent is None or incumbent["prAuc"] is None:
            promoted, why = True, "no serving model to beat"
        elif challenger["prAuc"] > incumbent["prAuc"]:
            promoted, why = True, f"PR-AUC {challenger['prAuc']:.4f} > serving {incumbent['prAuc']:.4f}"
        else:
            promoted, why = False, f"PR-AUC {challenger['prAuc']:.4f} <= serving {incumbent['prAuc']:.4f}"
        decision = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "candidate": card["version"],
            "serving": state["current"],
            "promoted": promoted,
            "reason": why,
            "candidateMetrics": challenger,
            "servingMetrics": incumbent,
            "recentRows": len(recent),
        }
        if promoted:
            target = self.root / "versions" / card["version"]
            if not target.exists():
                staging = target.with_name(target.name + ".staging")
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                shutil.copy2(candidate / MODEL_FILE, staging / MODEL_FILE)
                shutil.copy2(candidate / CARD_FILE, staging / CARD_FILE)
                os.replace(staging, target)
            state["current"] = card["version"]
            state["history"].append(card["version"])
        state["decisions"].append(decision)
        self._write(state)
        return decision

    def rollback(self) -> dict:
        """Serves the previously promoted version again."""
        with self._locked():
            return self._rollback()

    def _rollback(self) -> dict:
        state = self.state()
        if len(state["history"]) < 2:
            raise RegistryError(f"{self.root}: no earlier version to roll back to")
        dropped = state["history"].pop()
        state["current"] = state["history"][-1]
        decision = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "rollback": dropped,
            "serving": state["current"],
        }
        state["decisions"].append(decision)
        self._write(state)
        return decision

    def _write(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_name("registry.json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.index_path)


def score_onnx(path: str | Path, X: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = session.run(["probabilities"], {name: X.astype(np.float32)})
    return np.asarray(outputs[0])[:, 1]
