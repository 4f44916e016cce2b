"""A self-contained HTML page: metrics table, PR curves and lead-time distributions (matplotlib PNGs inlined)."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve

from .evaluate import KEYS


def write_report(path: str, title: str, y: np.ndarray, curves: dict[str, dict], context: dict) -> None:
    """curves: name -> {"scores": array, "leads": [seconds], "metrics": {...}}."""
    pr = _png(_pr_figure(y, curves))
    leads = _png(_lead_figure(curves))
    bought = _png(_budget_figure(curves, context.get("budget", {}).get("maxFencedShare")))
    rows = "".join(
        "<tr><th>{}</th>{}</tr>".format(
            html.escape(name), "".join(f"<td>{_fmt(c['metrics'].get(k))}</td>" for k in KEYS)
        )
        for name, c in curves.items()
    )
    facts = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in context.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}th{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1><ul>{facts}</ul>
<table><tr><th>scorer</th>{"".join(f"<th>{k}</th>" for k in KEYS)}</tr>{rows}</table>
<h2>Precision-recall on held-out time</h2><img alt="PR curves" src="data:image/png;base64,{pr}">
<h2>Lead time before each pre-emption</h2><p>0 s = the pre-emption was not caught by a drain.</p>
<img alt="lead times" src="data:image/png;base64,{leads}">
<h2>Warned 5+ minutes ahead against node-time fenced</h2><p>One point per threshold on held-out time; the dotted
line is the budget's fenced share.</p><img alt="warned ahead vs budget" src="data:image/png;base64,{bought}">
</body></html>
"""
    with open(path, "w", encoding="utf-8") as out:
        out.write(page)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"


def _pr_figure(y: np.ndarray, curves: dict[str, dict]):
    fig, ax = plt.subplots(figsize=(7, 5))
    if len(np.unique(y)) == 2:
        for name, c in curves.items():
            precision, recall, _ = precision_recall_curve(y, c["scores"])
            ax.step(recall, precision, where="post", label=f"{name} (AP {_fmt(c['metrics'].get('prAuc'))})")
        ax.axhline(y.mean(), color="grey", linestyle=":", label=f"base rate {y.mean():.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper right", fontsize="small")
    return fig


def _lead_figure(curves: dict[str, dict]):
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(curves)
    data = [np.asarray(curves[n]["leads"], float) for n in names]
    if any(len(d) for d in data):
        ax.boxplot([d if len(d) else [0.0] for d in data], orientation="horizontal", tick_labels=names)
        for i, d in enumerate(data, 1):
            ax.scatter(d, np.full(len(d), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(d)), s=6, alpha=0.4)
    ax.set_xlabel("lead time before the pre-emption (s)")
    fig.tight_layout()
    return fig


def _budget_figure(curves: dict[str, dict], max_fenced: float | None):
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, c in curves.items():
        points = sorted(c.get("curve", []), key=lambda p: p["fencedShare"])
        ax.plot(
            [p["fencedShare"] for p in points],
            [p["warnedShare"]["300"] or 0.0 for p in points],
            marker=".",
            # Between two thresholds only the lower point is reached: a step, not a line.
            drawstyle="steps-post",
            label=name,
        )
    if max_fenced is not None:
        ax.axvline(max_fenced, color="grey", linestyle=":", label=f"budget {max_fenced:.0%} fenced")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("share of node-time fenced (score >= threshold)")
    ax.set_ylabel("share of pre-emptions warned >= 5 min ahead")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
