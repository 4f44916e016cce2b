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
from .budget import (
    CHOSEN_ON,
    MIGRATION_S,
    Budget,
    Layout,
    choose_in_every_block,
    choose_policy,
    choose_thresholds,
    pre_notice_pr_auc,
)
from .evaluate import evaluate
from .export import CARD_FILE, write_model_dir
from .features import SpecError, TraceIndex, Windows, build_windows, load_spec
from .pooled import pool_traces, tag_of
from .registry import Registry, RegistryError
from .traces import FORMATS, TraceError, read_trace, write_ndjson
from .train import CANDIDATES, Trained, TrainError, scores_of, train, validation_block_of

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

    def with_budget(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--train-traces", default="", help="comma-separated other traces pooled into the training set")
        p.add_argument("--max-fenced-share", type=float, default=Budget.max_fenced_share)
        p.add_argument("--max-false-drains", type=float, default=Budget.max_false_drains_per_100_node_days)
        p.add_argument("--migration-s", type=float, default=MIGRATION_S)
        return p

    p = with_budget(with_trace(sub.add_parser("train", help="train on the trace, write model.onnx + model-card.json")))
    p.add_argument("--out", required=True)
    p.add_argument(
        "--holdout-hours", type=float, default=0.0, help="leave the trace's last hours out (for promote to judge on)"
    )
    p = with_budget(with_trace(sub.add_parser("prepare", help="evaluate, step 1: (train and) write the rows to score")))
    p.add_argument("--model")
    p.add_argument(
        "--leave-out", action="store_true", help="train on --train-traces only: the trace is a pool never seen"
    )
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


def _budget(args) -> Budget:
    return Budget(args.max_fenced_share, args.max_false_drains)


def _fit(args, spec, target: tuple[str, object, Windows, TraceIndex], *, leave_out: bool = False) -> Trained:
    """The model card's model: trained on the target's rows, pooled with every --train-traces trace when given (or on
    those alone with leave_out); its policy's thresholds chosen for the budget on its out-of-fold scores."""
    tag, trace, windows, index = target
    others = [p for p in args.train_traces.split(",") if p]
    if leave_out and not others:
        raise TrainError("--leave-out needs --train-traces: a model of other traces to score this one with")
    traces = [] if leave_out else [str(trace.source)]
    fallback = None
    if others:
        taken = {tag}
        parts = [] if leave_out else [(tag, trace, windows)]
        for path in others:
            other = read_trace(path, None, seed=args.seed, notice_lead_s=spec.notice_lead_s)
            parts.append((tag_of(path, taken), other, build_windows(other, spec)))
            traces.append(path)
        rows, fit_index = pool_traces(parts)
        if not leave_out and int(windows.y.sum()) == 0:
            fallback = (
                f"the trace's own training span has no pre-emption ({len(windows)} rows, 0 positive): the model is"
                f" the one pooled from {len(others)} other trace(s), which it adds nothing to"
            )
    else:
        rows, fit_index = windows, index
    try:
        trained = train(rows, spec.horizon_ms, reference=baselines.reactive(rows, fit_index))
    except TrainError as err:
        if others:
            raise
        raise TrainError(f"{err}; pass --train-traces to fall back on a model pooled from other traces") from err
    trained.extra["policy"] = choose_policy(
        trained, fit_index, spec.horizon_ms, spec.tick_ms, _budget(args), args.migration_s
    )
    trained.extra["training"] = {
        "traces": traces,
        "pooled": bool(others),
        "leaveOut": leave_out,
        "fallback": fallback,
    }
    return trained


def cmd_train(args) -> dict:
    spec, trace = _load(args)
    until = trace.end_ms - int(args.holdout_hours * 3_600_000)
    # With a holdout, rows stop where their label window would reach into it.
    index = TraceIndex(trace)
    windows = build_windows(
        trace, spec, None, until - spec.horizon_ms - 1 if args.holdout_hours > 0 else None, index=index
    )
    trained = _fit(args, spec, (tag_of(args.trace, set()), trace, windows, index))
    card = write_model_dir(args.out, trained, spec, trace=args.trace, fmt=trace.format, span_ms=(trace.start_ms, until))
    return {"modelDir": str(Path(args.out).resolve()), "card": card}


def cmd_prepare(args) -> dict:
    spec, trace = _load(args)
    index = TraceIndex(trace)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    span = trace.end_ms - trace.start_ms
    budget = _budget(args)
    if args.model:
        model_dir = Path(args.model)
        card = json.loads((model_dir / CARD_FILE).read_text())
        scored = build_windows(trace, spec, index=index)
        tuning = scored
        split = None
        tuned_on = f"{CHOSEN_ON}; blocks of the scored span itself (no training span with --model)"
    else:
        split = trace.start_ms + int(span * args.train_fraction)
        # Training rows end where their label window reaches the split: nothing of the scored time leaks in.
        tuning = build_windows(trace, spec, trace.start_ms, split - spec.horizon_ms, index=index)
        scored = build_windows(trace, spec, split, None, index=index)
        trained = _fit(args, spec, (tag_of(args.trace, set()), trace, tuning, index), leave_out=args.leave_out)
        model_dir = work / "model"
        card = write_model_dir(
            model_dir, trained, spec, trace=args.trace, fmt=trace.format, span_ms=(trace.start_ms, split)
        )
        tuned_on = f"{CHOSEN_ON}; the baselines' blocks are those of the trace's training span"
    policy = card.get("policy") or {"prewarnThreshold": card.get("threshold", 0.5), "drainThreshold": 1.0}
    capacity = baselines.prophet_capacity(trace, index, spec)
    base_scores = {name: _baseline(name, scored, index, spec, trace, capacity) for name in baselines.NAMES}
    # The model's rule on the same blocks of the tuning span: the same budget rule for every scorer.
    tuning_blocks = validation_block_of(tuning, spec.horizon_ms)
    thresholds = {
        name: choose_in_every_block(
            tuning,
            tuning_blocks,
            index,
            _baseline(name, tuning, index, spec, trace, capacity),
            budget,
            spec.horizon_ms,
            spec.tick_ms,
            args.migration_s,
        )
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
        "threshold": policy["prewarnThreshold"],
        "drainThreshold": policy["drainThreshold"],
        "policyChosenOn": policy.get("chosenOn", "the model card's threshold (a card without a policy)"),
        "training": card.get("training", {}),
        "budget": budget.as_json(),
        "migrationS": args.migration_s,
        "baselineThresholds": {name: t[0] for name, t in thresholds.items()},
        "baselineDrainThresholds": {name: t[1] for name, t in thresholds.items()},
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
    if name == "poolBurst":
        return baselines.pool_burst(w, index)
    if name == "nodeAge":
        return baselines.node_age(w, index, spec, trace)
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
    budget = Budget(**_budget_fields(context["budget"]))
    layout = Layout(w, index, spec.horizon_ms, spec.tick_ms, context["migrationS"])
    notice = saved["baseline_reactive"]
    chosen_on = {"model": context["policyChosenOn"]}
    levels = {"model": (context["threshold"], context["drainThreshold"])}
    named = {"model": scores}
    for name in baselines.NAMES:
        named[name] = saved[f"baseline_{name}"]
        levels[name] = (context["baselineThresholds"][name], context["baselineDrainThresholds"][name])
        chosen_on[name] = context["baselineThresholdsTunedOn"]
    curves = {}
    result = {"model": None, "baselines": {}}
    bought = {}
    for name, s in named.items():
        prewarn, drain = levels[name]
        e = evaluate(w, s, prewarn, index, spec.horizon_ms, spec.tick_ms)
        if name == "model":
            result["model"] = e.metrics
        else:
            result["baselines"][name] = e.metrics
        ordered = layout.sorted_scores(s)
        best = choose_thresholds(layout, s, budget)
        bought[name] = {
            "atBudget": {
                "prewarnThreshold": prewarn,
                "drainThreshold": drain,
                "chosenOn": chosen_on[name],
                **layout.operating_point(ordered, prewarn, drain),
            },
            "atBudgetChosenOnHeldOut": {
                "prewarnThreshold": best[0],
                "drainThreshold": best[1],
                "chosenOn": "the held-out span itself: the scorer's best operating point within the budget there",
                **layout.operating_point(ordered, *best),
            },
            "prAucPreNotice": pre_notice_pr_auc(y, np.asarray(s, np.float64), notice),
            "curve": layout.curve(ordered),
        }
        curves[name] = {"scores": s, "leads": e.lead_times_s, "metrics": e.metrics, "curve": bought[name]["curve"]}
    model = result["model"]
    result["boughtTime"] = {
        "budget": budget.as_json(),
        "migrationS": context["migrationS"],
        "definitions": {
            "warnedShare": "share of the held-out pre-emptions whose node alerted (score >= prewarnThreshold) at some"
            " tick in [pre-emption - horizon, pre-emption - LEAD s]; keys are LEAD in s",
            "drainFinishedShare": "share whose node crossed drainThreshold within [pre-emption - horizon,"
            " pre-emption - migrationS]",
            "fencedShare": "share of held-out node-time (rows) at or above prewarnThreshold",
            "falseDrainsPer100NodeDays": "runs of rows at or above drainThreshold whose first row is not followed by"
            " the node's pre-emption within the horizon, per 100 node-days",
            "prAucPreNotice": "average precision over rows without an active interruption notice",
            "atBudget": "thresholds chosen for the budget on chosenOn, applied to the held-out span",
            "notice": "the interruption notices themselves, at the instant each came (scorers act at ticks)",
        },
        "scorers": bought,
        "notice": {"warnedShare": layout.notice_warned()},
    }
    pr = model["prAuc"]
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
                "drainThreshold",
                "policyChosenOn",
                "training",
                "rows",
                "positives",
            )
        },
        "preemptions": layout.preemptions,
        "baselineThresholds": context["baselineThresholds"],
        "baselineDrainThresholds": context["baselineDrainThresholds"],
        "baselineThresholdsTunedOn": context["baselineThresholdsTunedOn"],
        "modelBeatsBaselinesOnPrAuc": beats,
        "notes": context["notes"],
    }
    if args.report:
        from .report import write_report

        write_report(
            args.report,
            f"Pre-emption forecast: {Path(context['trace']).name}",
            y,
            curves,
            {**result["context"], "budget": budget.as_json(), "migrationS": context["migrationS"]},
        )
    return result


def _budget_fields(raw: dict) -> dict:
    return {
        "max_fenced_share": raw["maxFencedShare"],
        "max_false_drains_per_100_node_days": raw["maxFalseDrainsPer100NodeDays"],
    }


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
