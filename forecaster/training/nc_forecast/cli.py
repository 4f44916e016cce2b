"""`python -m nc_forecast.cli COMMAND`: the steps `npm run forecast` runs. Results are JSON on stdout; a failure is
one JSON line {"error": {"code", "message"}} on stderr and exit status 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import baselines
from .evaluate import best_f1_threshold, evaluate
from .export import CARD_FILE, write_model_dir
from .features import SpecError, TraceIndex, Windows, build_windows, load_spec
from .registry import Registry, RegistryError
from .traces import FORMATS, TraceError, read_trace, write_ndjson
from .train import CANDIDATES, TrainError, scores_of, train

TRAIN_FRACTION = 0.6
FEATURES_FILE = "features.f32"
SCORES_FILE = "scores.f32"
WINDOWS_FILE = "windows.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nc_forecast")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_trace(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--trace", required=True)
        p.add_argument("--format", choices=FORMATS)
        p.add_argument("--seed", type=int, default=0, help="seed of the count-trace converter's draw")
        p.add_argument("--spec", default=None, help="feature specification (default: feature-spec.json)")
        return p

    p = with_trace(sub.add_parser("train", help="train on the whole trace, write model.onnx + model-card.json"))
    p.add_argument("--out", required=True)
    p.add_argument(
        "--holdout-hours", type=float, default=0.0, help="leave the trace's last hours out (for promote to judge on)"
    )
    p = with_trace(sub.add_parser("prepare", help="evaluate, step 1: (train and) write the rows to score"))
    p.add_argument("--model")
    p.add_argument("--work", required=True)
    p.add_argument("--train-fraction", type=float, default=TRAIN_FRACTION)
    p = sub.add_parser("score", help="evaluate, step 2: metrics from the serving path's scores")
    p.add_argument("--work", required=True)
    p.add_argument("--report")
    p = with_trace(sub.add_parser("fixture", help="a small model, its rows and the Python model's own scores"))
    p.add_argument("--out", required=True)
    p.add_argument("--algorithm", choices=list(CANDIDATES), default="lightgbm")
    p.add_argument("--max-rows", type=int, default=3000)
    p = with_trace(sub.add_parser("windows", help="feature rows of a trace (for parity checks)"))
    p.add_argument("--out", required=True)
    p = with_trace(sub.add_parser("convert", help="write the trace in the project's NDJSON format"))
    p.add_argument("--out", required=True)
    p = with_trace(sub.add_parser("promote", help="promote a candidate if it beats the serving model"))
    p.add_argument("--registry", required=True)
    p.add_argument("--candidate", required=True)
    p.add_argument("--recent-hours", type=float, default=6.0)
    p = sub.add_parser("rollback", help="serve the previously promoted model again")
    p.add_argument("--registry", required=True)

    args = parser.parse_args(argv)
    try:
        result = COMMANDS[args.command](args)
    except (TraceError, SpecError, TrainError, RegistryError, FileNotFoundError) as err:
        code = {
            TraceError: "NC_FORECAST_TRACE_INVALID",
            SpecError: "NC_FEATURE_SPEC_INVALID",
            TrainError: "NC_FORECAST_TRAINING_FAILED",
            RegistryError: "NC_FORECAST_REGISTRY_REFUSED",
            FileNotFoundError: "NC_FORECAST_INPUT_MISSING",
        }[type(err)]
        print(json.dumps({"error": {"code": code, "message": str(err)}}), file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, allow_nan=False))
    return 0


def _load(args):
    spec = load_spec(args.spec) if args.spec else load_spec()
    trace = read_trace(args.trace, args.format, seed=args.seed, notice_lead_s=spec.notice_lead_s)
    return spec, trace


def cmd_train(args) -> dict:
    spec, trace = _load(args)
    until = trace.end_ms - int(args.holdout_hours * 3_600_000)
    # With a holdout, rows stop where their label window would reach into it.
    index = TraceIndex(trace)
    windows = build_windows(
        trace, spec, None, until - spec.horizon_ms - 1 if args.holdout_hours > 0 else None, index=index
    )
    trained = train(windows, spec.horizon_ms, reference=baselines.reactive(windows, index))
    card = write_model_dir(args.out, trained, spec, trace=args.trace, fmt=trace.format, span_ms=(trace.start_ms, until))
    return {"modelDir": str(Path(args.out).resolve()), "card": card}


def cmd_prepare(args) -> dict:
    spec, trace = _load(args)
    index = TraceIndex(trace)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    span = trace.end_ms - trace.start_ms
    if args.model:
        model_dir = Path(args.model)
        card = json.loads((model_dir / CARD_FILE).read_text())
        scored = build_windows(trace, spec, index=index)
        tuning = scored
        split = None
        tuned_on = "the scored span itself (no training span with --model)"
    else:
        split = trace.start_ms + int(span * args.train_fraction)
        # Training rows end where their label window reaches the split: nothing of the scored time leaks in.
        tuning = build_windows(trace, spec, trace.start_ms, split - spec.horizon_ms, index=index)
        scored = build_windows(trace, spec, split, None, index=index)
        trained = train(tuning, spec.horizon_ms, reference=baselines.reactive(tuning, index))
        model_dir = work / "model"
        card = write_model_dir(
            model_dir, trained, spec, trace=args.trace, fmt=trace.format, span_ms=(trace.start_ms, split)
        )
        tuned_on = "the training span"
    capacity = baselines.prophet_capacity(trace, index, spec)
    base_scores = {name: _baseline(name, scored, index, spec, trace, capacity) for name in baselines.NAMES}
    thresholds = {
        name: best_f1_threshold(tuning.y, _baseline(name, tuning, index, spec, trace, capacity))
        for name in baselines.NAMES
    }
    scored.X.astype("<f4").tofile(work / FEATURES_FILE)
    np.savez(
        work / "scored.npz",
        y=scored.y,
        t_ms=scored.t_ms,
        node=scored.node.astype(str),
        pool=scored.pool.astype(str),
        **{f"baseline_{k}": v for k, v in base_scores.items()},
    )
    context = {
        "trace": args.trace,
        "format": trace.format,
        "seed": args.seed,
        "spec": args.spec,
        "spanMs": [trace.start_ms, trace.end_ms],
        "splitMs": split,
        "modelDir": str(model_dir.resolve()),
        "modelVersion": card["version"],
        "algorithm": card.get("algorithm"),
        "selection": card.get("selection", {}).get("reason"),
        "threshold": card.get("threshold", 0.5),
        "baselineThresholds": thresholds,
        "baselineThresholdsTunedOn": tuned_on,
        "rows": len(scored),
        "positives": int(scored.y.sum()),
        "notes": trace.notes,
    }
    (work / "context.json").write_text(json.dumps(context, indent=2))
    (work / WINDOWS_FILE).write_text(
        json.dumps({"rows": len(scored), "cols": len(spec.names), "featureNames": spec.names, "specId": spec.id})
    )
    return {
        "work": str(work.resolve()),
        "modelDir": context["modelDir"],
        "rows": len(scored),
        "cols": len(spec.names),
        "specId": spec.id,
    }


def _baseline(name, w: Windows, index, spec, trace, capacity) -> np.ndarray:
    if name == "reactive":
        return baselines.reactive(w, index)
    if name == "utilisation":
        return baselines.utilisation(w, index, spec, trace)
    if name == "historicalRate":
        return baselines.historical_rate(w, index, spec.horizon_ms)
    return baselines.prophet(w, index, capacity)


def cmd_score(args) -> dict:
    work = Path(args.work)
    context = json.loads((work / "context.json").read_text())
    spec = load_spec(context["spec"]) if context["spec"] else load_spec()
    trace = read_trace(context["trace"], context["format"], seed=context["seed"], notice_lead_s=spec.notice_lead_s)
    index = TraceIndex(trace)
    saved = np.load(work / "scored.npz")
    y = saved["y"]
    scores = np.fromfile(work / SCORES_FILE, dtype="<f4")
    if len(scores) != len(y):
        raise TraceError(f"{work / SCORES_FILE}: {len(scores)} scores for {len(y)} rows")
    w = Windows(
        np.zeros((len(y), 0), np.float32),
        y,
        saved["t_ms"],
        saved["node"].astype(object),
        saved["pool"].astype(object),
        [],
    )
    curves = {}
    model = evaluate(w, scores, context["threshold"], index, spec.horizon_ms, spec.tick_ms)
    curves["model"] = {"scores": scores, "leads": model.lead_times_s, "metrics": model.metrics}
    result = {"model": model.metrics, "baselines": {}}
    for name in baselines.NAMES:
        s = saved[f"baseline_{name}"]
        e = evaluate(w, s, context["baselineThresholds"][name], index, spec.horizon_ms, spec.tick_ms)
        result["baselines"][name] = e.metrics
        curves[name] = {"scores": s, "leads": e.lead_times_s, "metrics": e.metrics}
    pr = model.metrics["prAuc"]
    beats = {n: (pr is not None and m["prAuc"] is not None and pr > m["prAuc"]) for n, m in result["baselines"].items()}
    result["context"] = {
        **{
            k: context[k]
            for k in (
                "trace",
                "format",
                "spanMs",
                "splitMs",
                "modelVersion",
                "algorithm",
                "selection",
                "threshold",
                "rows",
                "positives",
            )
        },
        "preemptions": model.preemptions,
        "baselineThresholds": context["baselineThresholds"],
        "baselineThresholdsTunedOn": context["baselineThresholdsTunedOn"],
        "modelBeatsBaselinesOnPrAuc": beats,
        "notes": context["notes"],
    }
    if args.report:
        from .report import write_report

        write_report(args.report, f"Pre-emption forecast: {Path(context['trace']).name}", y, curves, result["context"])
    return result


def cmd_fixture(args) -> dict:
    spec, trace = _load(args)
    windows = build_windows(trace, spec)
    step = max(1, len(windows) // args.max_rows)
    small = windows.subset(np.arange(len(windows)) % step == 0)
    started = time.perf_counter()
    trained = train(small, spec.horizon_ms, [args.algorithm])
    out = Path(args.out)
    card = write_model_dir(
        out / "model", trained, spec, trace=args.trace, fmt=trace.format, span_ms=(trace.start_ms, trace.end_ms)
    )
    small.X.astype("<f4").tofile(out / FEATURES_FILE)
    scores_of(trained.model, small.X).astype("<f8").tofile(out / "python-scores.f64")
    (out / WINDOWS_FILE).write_text(
        json.dumps({"rows": len(small), "cols": len(spec.names), "featureNames": spec.names, "specId": spec.id})
    )
    return {
        "out": str(out.resolve()),
        "rows": len(small),
        "algorithm": card["algorithm"],
        "seconds": time.perf_counter() - started,
    }


def cmd_windows(args) -> dict:
    spec, trace = _load(args)
    w = build_windows(trace, spec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w.X.astype("<f4").tofile(out / FEATURES_FILE)
    meta = {
        "rows": len(w),
        "cols": len(spec.names),
        "featureNames": spec.names,
        "specId": spec.id,
        "tMs": w.t_ms.tolist(),
        "node": w.node.astype(str).tolist(),
        "y": w.y.astype(int).tolist(),
    }
    (out / WINDOWS_FILE).write_text(json.dumps(meta))
    return {"out": str(out.resolve()), "rows": len(w)}


def cmd_convert(args) -> dict:
    _, trace = _load(args)
    write_ndjson(trace, args.out)
    return {"out": args.out, "events": len(trace.events), "samples": len(trace.samples), "notes": trace.notes}


def cmd_promote(args) -> dict:
    spec, trace = _load(args)
    recent_from = trace.end_ms - spec.horizon_ms - int(args.recent_hours * 3_600_000)
    recent = build_windows(trace, spec, recent_from, None)
    return Registry(args.registry).promote_if_better(args.candidate, recent)


def cmd_rollback(args) -> dict:
    return Registry(args.registry).rollback()


COMMANDS = {
    "train": cmd_train,
    "prepare": cmd_prepare,
    "score": cmd_score,
    "fixture": cmd_fixture,
    "windows": cmd_windows,
    "convert": cmd_convert,
    "promote": cmd_promote,
    "rollback": cmd_rollback,
}

if __name__ == "__main__":
    sys.exit(main())
