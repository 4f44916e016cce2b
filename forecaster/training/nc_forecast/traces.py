"""Trace readers: every supported format becomes one canonical event table plus an optional sample table."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

FORMATS = ("ndjson", "parcae", "bamboo-s", "bamboo-h")
EVENTS = ("join", "preempted", "notice", "advice", "drain-started", "drain-complete", "drain-canceled", "leave")
# Cloud signal kinds that announce the node's end: a `notice` line of one of these (or of no kind) is a notice, any
# other kind (rebalance-recommendation, maintenance-migrate, freeze, ...) is advice. The serving side's list is
# forecaster/src/policy/drain-policy.ts's; the feature-parity test holds them equal.
TERMINAL_NOTICE_KINDS = frozenset(
    ("spot-interruption", "preempted", "maintenance-terminate", "preempt", "terminate", "scheduled-maintenance")
)
# Events after which a node is no longer in the pool.
LEAVING = ("preempted", "drain-complete", "leave")
DEFAULT_POOL = "default"


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file and, where known, the line."""


@dataclass
class Trace:
    """Events sorted by time (stable), samples sorted by node then time. Times are integer milliseconds."""

    events: pd.DataFrame  # t_ms:int64, node:str, pool:str, kind:str
    samples: pd.DataFrame  # t_ms:int64, node:str, <metric>:float64 (NaN = absent)
    source: str
    format: str
    notes: list[str] = field(default_factory=list)
    # The recorded span when it is wider than the events (a count trace that starts with an empty pool).
    span_ms: tuple[int, int] | None = None

    @property
    def start_ms(self) -> int:
        if self.span_ms is not None:
            return self.span_ms[0]
        times = [int(self.events.t_ms.min())] if len(self.events) else []
        if len(self.samples):
            times.append(int(self.samples.t_ms.min()))
        return min(times)

    @property
    def end_ms(self) -> int:
        if self.span_ms is not None:
            return self.span_ms[1]
        times = [int(self.events.t_ms.max())] if len(self.events) else []
        if len(self.samples):
            times.append(int(self.samples.t_ms.max()))
        return max(times)

    @property
    def has_telemetry(self) -> bool:
        return len(self.samples) > 0


def detect_format(path: str | Path) -> str:
    """Names the format of a trace file from its first data lines."""
    lines = [ln.strip() for ln in _head(path, 20) if ln.strip()]
    if not lines:
        raise TraceError(f"{path}: empty trace")
    if lines[0].startswith("{"):
        return "ndjson"
    cells = [ln.split(",") for ln in lines]
    if all(len(c) == 3 and c[1].strip() in ("add", "remove") for c in cells):
        return "parcae"
    if all(len(c) == 2 and _is_number(c[0]) and _is_number(c[1]) for c in cells):
        return "bamboo-h" if any("." in c[0] for c in cells) else "bamboo-s"
    raise TraceError(
        f"{path}: unknown trace format (first line {lines[0]!r}); pass --format one of {', '.join(FORMATS)}"
    )


def read_trace(path: str | Path, fmt: str | None = None, *, seed: int = 0, notice_lead_s: float = 120) -> Trace:
    """Reads any supported trace; adds synthetic notices when the trace has none (see README)."""
    fmt = fmt or detect_format(path)
    if fmt == "ndjson":
        trace = _read_ndjson(path)
    elif fmt == "parcae":
        trace = _read_parcae(path)
    elif fmt in ("bamboo-s", "bamboo-h"):
        trace = _read_bamboo(path, hours=fmt == "bamboo-h", seed=seed)
    else:
        raise TraceError(f"{path}: unknown --format {fmt!r}; one of {', '.join(FORMATS)}")
    if len(trace.events) == 0:
        raise TraceError(f"{path}: no events")
    if not (trace.events.kind == "notice").any():
        trace = _with_synthetic_notices(trace, round(notice_lead_s * 1000))
    return trace


def write_ndjson(trace: Trace, path: str | Path) -> None:
    """Writes a trace in the project's own format (events first, then samples; readers sort)."""
    metrics = [c for c in trace.samples.columns if c not in ("t_ms", "node")]
    with open(path, "w", encoding="utf-8") as out:
        out.write(json.dumps({"format": "nc-trace/1", "source": trace.source}) + "\n")
        out.writelines(
            json.dumps({"t": int(row.t_ms), "node": row.node, "pool": row.pool, "event": row.kind}) + "\n"
            for row in trace.events.itertuples(index=False)
        )
        for row in trace.samples.itertuples(index=False):
            values = {m: float(getattr(row, m)) for m in metrics if not np.isnan(getattr(row, m))}
            out.write(json.dumps({"t": int(row.t_ms), "node": row.node, "metrics": values}) + "\n")


def _head(path: str | Path, n: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line for _, line in zip(range(n), f)]


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", text) is not None


def _events_frame(rows: list[tuple[int, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["t_ms", "node", "pool", "kind"])
    frame["t_ms"] = frame["t_ms"].astype(np.int64)
    # Stable sort: events at the same millisecond keep file order (a join before a removal of the same node).
    return frame.sort_values("t_ms", kind="stable").reset_index(drop=True)


def _empty_samples() -> pd.DataFrame:
    return pd.DataFrame({"t_ms": pd.Series(dtype=np.int64), "node": pd.Series(dtype=str)})


def _read_parcae(path: str | Path) -> Trace:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            cells = [c.strip() for c in line.split(",")]
            if len(cells) != 3 or cells[1] not in ("add", "remove") or not _is_number(cells[0]):
                raise TraceError(f"{path}:{number}: expected time_ms,add|remove,node")
            kind = "join" if cells[1] == "add" else "preempted"
            rows.append((int(float(cells[0])), cells[2], DEFAULT_POOL, kind))
    return Trace(_events_frame(rows), _empty_samples(), str(path), "parcae")


def _read_bamboo(path: str | Path, *, hours: bool, seed: int) -> Trace:
    points = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            cells = line.split(",")
            if len(cells) != 2 or not (_is_number(cells[0]) and _is_number(cells[1])):
                raise TraceError(f"{path}:{number}: expected time,count")
            t = float(cells[0])
            t_ms = round(t * 3_600_000) if hours else round(t * 1000)
            points.append((t_ms, int(float(cells[1]))))
    rng = np.random.default_rng(seed)
    alive: list[str] = []
    made = 0
    count = 0
    rows: list[tuple[int, str, str, str]] = []
    first = points[0][0] if points else 0
    for t_ms, new in points:
        if new > count:
            for _ in range(new - count):
                made += 1
                alive.append(f"bamboo-{made}")
                rows.append((t_ms, alive[-1], DEFAULT_POOL, "join"))
        elif new < count:
            # Uniform draw among alive nodes: independent of every feature, so no label leaks (README).
            gone = set(rng.choice(len(alive), size=count - new, replace=False).tolist())
            for i in sorted(gone):
                rows.append((t_ms, alive[i], DEFAULT_POOL, "preempted"))
            alive = [n for i, n in enumerate(alive) if i not in gone]
        count = new
    span = (first, points[-1][0]) if points else None
    return Trace(_events_frame(rows), _empty_samples(), str(path), "bamboo-h" if hours else "bamboo-s", span_ms=span)


def signal_event(kind: object) -> str:
    """The event a `notice` line of this signal kind is: `notice` when it announces the node's end, else `advice`."""
    return "notice" if not isinstance(kind, str) or kind == "" or kind in TERMINAL_NOTICE_KINDS else "advice"


def _read_ndjson(path: str | Path) -> Trace:
    events: list[tuple[int, str, str, str]] = []
    samples: list[dict[str, object]] = []
    pools: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TraceError(f"{path}:{number}: not JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise TraceError(f"{path}:{number}: expected an object")
            if "format" in record and "node" not in record:
                continue
            t, node = record.get("t"), record.get("node")
            if not isinstance(t, int) or isinstance(t, bool) or not isinstance(node, str) or not node:
                raise TraceError(f"{path}:{number}: needs integer t (ms) and a node name")
            if isinstance(record.get("pool"), str):
                pools[node] = record["pool"]
            if "event" in record:
                kind = record["event"]
                if kind not in EVENTS:
                    raise TraceError(f"{path}:{number}: unknown event {kind!r}; one of {', '.join(EVENTS)}")
                events.append((t, node, "", signal_event(record.get("kind")) if kind == "notice" else kind))
            elif isinstance(record.get("metrics"), dict):
                values = record["metrics"]
                bad = [k for k, v in values.items() if not isinstance(v, (int, float)) or isinstance(v, bool)]
                if bad:
                    raise TraceError(f"{path}:{number}: metric {bad[0]} is not a number")
                samples.append({"t_ms": t, "node": node, **{k: float(v) for k, v in values.items()}})
            else:
                raise TraceError(f"{path}:{number}: a line needs an event or metrics")
    # A node seen before its join joins at its first line (README).
    first_seen: dict[str, int] = {}
    for t, node, _, _ in events:
        first_seen[node] = min(t, first_seen.get(node, t))
    for s in samples:
        first_seen[s["node"]] = min(s["t_ms"], first_seen.get(s["node"], s["t_ms"]))  # type: ignore[arg-type]
    joined = {node for _, node, _, kind in events if kind == "join"}
    events.extend((t, node, "", "join") for node, t in first_seen.items() if node not in joined)
    events.sort(key=lambda e: (e[0], e[3] != "join"))
    rows = [(t, node, pools.get(node, DEFAULT_POOL), kind) for t, node, _, kind in events]
    frame = pd.DataFrame(samples) if samples else _empty_samples()
    if samples:
        frame["t_ms"] = frame["t_ms"].astype(np.int64)
        frame = frame.sort_values(["node", "t_ms"], kind="stable").reset_index(drop=True)
    return Trace(_events_frame(rows), frame, str(path), "ndjson")


def _with_synthetic_notices(trace: Trace, lead_ms: int) -> Trace:
    events = trace.events
    joins = events[events.kind == "join"]
    rows = []
    for row in events[events.kind == "preempted"].itertuples(index=False):
        earlier = joins[(joins.node == row.node) & (joins.t_ms <= row.t_ms)]
        joined = int(earlier.t_ms.max()) if len(earlier) else row.t_ms
        rows.append((max(row.t_ms - lead_ms, joined), row.node, row.pool, "notice"))
    if not rows:
        return trace
    notices = pd.DataFrame(rows, columns=["t_ms", "node", "pool", "kind"])
    merged = pd.concat([events, notices], ignore_index=True)
    merged["t_ms"] = merged["t_ms"].astype(np.int64)
    merged = merged.sort_values("t_ms", kind="stable").reset_index(drop=True)
    notes = [*trace.notes, f"added {len(rows)} synthetic notices {lead_ms} ms before each pre-emption"]
    return Trace(merged, trace.samples, trace.source, trace.format, notes, trace.span_ms)
