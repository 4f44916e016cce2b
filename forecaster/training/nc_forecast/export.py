"""ONNX export (onnxmltools for LightGBM, skl2onnx for scikit-learn) and the model card beside it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import lightgbm as lgb
import onnx
import onnxmltools
from onnxmltools.convert.common.data_types import FloatTensorType as MLFloat
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType as SKFloat

from .features import FeatureSpec
from .train import Trained

MODEL_FILE = "model.onnx"
CARD_FILE = "model-card.json"
INPUT = "features"
OUTPUT = "probabilities"
# onnxruntime-node 1.30 (the serving runtime) runs opset 15 and ai.onnx.ml 3 graphs.
OPSET = 15


def to_onnx(model: object, n_features: int) -> onnx.ModelProto:
    if isinstance(model, lgb.LGBMClassifier):
        proto = onnxmltools.convert_lightgbm(
            model, initial_types=[(INPUT, MLFloat([None, n_features]))], zipmap=False, target_opset=OPSET
        )
    else:
        proto = convert_sklearn(
            model,
            initial_types=[(INPUT, SKFloat([None, n_features]))],
            options={id(model): {"zipmap": False}}
            if not hasattr(model, "steps")
            else {id(model.steps[-1][1]): {"zipmap": False}},
            target_opset={"": OPSET, "ai.onnx.ml": 3},
        )
    # Converters may declare a fixed batch of 1 on the label output; the batch is dynamic.
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    onnx.checker.check_model(proto)
    return proto


def model_card(
    trained: Trained, spec: FeatureSpec, *, trace: str, fmt: str, span_ms: tuple[int, int], onnx_bytes: bytes
) -> dict:
    created = dt.datetime.now(dt.UTC)
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    policy = trained.extra.get("policy")
    card = {
        "version": f"{created:%Y%m%dT%H%M%SZ}-{digest[:8]}",
        "features": spec.names,
        "featureSpec": spec.id,
        "featureSpecSha256": spec.sha256,
        "input": INPUT,
        "output": OUTPUT,
        "horizonS": spec.horizon_ms / 1000,
        "tickS": spec.tick_ms / 1000,
        "threshold": trained.threshold,
        "algorithm": trained.algorithm,
        "selection": {"winner": trained.algorithm, "reason": trained.reason, "candidates": trained.candidates},
        "training": {
            "trace": trace,
            "format": fmt,
            "spanMs": list(span_ms),
            "validationFromMs": trained.split_ms,
            "rows": trained.rows,
            "positives": trained.positives,
            "seconds": round(trained.seconds, 3),
            **trained.extra.get("training", {}),
        },
        "metrics": {"validation": trained.validation},
        "opset": OPSET,
        "onnxSha256": digest,
        "createdAt": created.isoformat(timespec="seconds"),
    }
    if policy is not None:
        # The serving side parses exactly these four keys; what the thresholds did where they were chosen goes beside.
        card["policy"] = {k: policy[k] for k in ("prewarnThreshold", "drainThreshold", "budget", "chosenOn")}
        card["metrics"]["policyOnChosenSpan"] = policy["onChosenSpan"]
    return card


def write_model_dir(
    out: str | Path, trained: Trained, spec: FeatureSpec, *, trace: str, fmt: str, span_ms: tuple[int, int]
) -> dict:
    """Writes model.onnx and model-card.json; the card goes last so a reader never sees a card without its model."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = to_onnx(trained.model, len(spec.names)).SerializeToString()
    card = model_card(trained, spec, trace=trace, fmt=fmt, span_ms=span_ms, onnx_bytes=data)
    _atomic_write(out / MODEL_FILE, data)
    _atomic_write(out / CARD_FILE, (json.dumps(card, indent=2) + "\n").encode())
    return card


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
