"""Several traces as one training set: each trace's rows keep its own features, and its nodes and pools are named
`<trace>/<name>` so no two traces share a node or a pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .features import TraceIndex, Windows, concat
from .traces import Trace


def tag_of(path: str, taken: set[str]) -> str:
    tag = Path(path).stem
    while tag in taken:
        tag += "'"
    taken.add(tag)
    return tag


def pool_traces(parts: list[tuple[str, Trace, Windows]]) -> tuple[Windows, TraceIndex]:
    """The rows of every part, one segment each, and an index of every part's events under the pooled names."""
    tagged = []
    frames = []
    for seg, (tag, trace, w) in enumerate(parts):
        tagged.append(
            Windows(
                w.X,
                w.y,
                w.t_ms,
                np.asarray([f"{tag}/{n}" for n in w.node], object),
                np.asarray([f"{tag}/{p}" for p in w.pool], object),
                w.names,
                np.full(len(w), seg, np.int64),
            )
        )
        events = trace.events.copy()
        events["node"] = tag + "/" + events["node"].astype(str)
        events["pool"] = tag + "/" + events["pool"].astype(str)
        frames.append(events)
    # Each pool belongs to one trace whose events are in time order: concatenation keeps every pool's order.
    merged = Trace(
        pd.concat(frames, ignore_index=True),
        pd.DataFrame({"t_ms": pd.Series(dtype=np.int64), "node": pd.Series(dtype=str)}),
        "pooled",
        "pooled",
    )
    return concat(tagged), TraceIndex(merged)
