"""Feature windows, computed from the one feature specification (feature-spec.json) the TypeScript side also reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .traces import EVENTS, LEAVING, Trace

SPEC_PATH = Path(__file__).resolve().parent.parent / "feature-spec.json"
OPS = {
    "age": ("capS",),
    "since": ("scope", "event", "capS"),
    "count": ("scope", "event", "windowS"),
    "alive": (),
    "aliveMax": ("windowS",),
    "metric": ("metric", "agg", "windowS"),
}
AGGS = ("mean", "max", "last")


class SpecError(ValueError):
    """A feature specification that does not follow README's grammar; the message names the field."""


@dataclass(frozen=True)
class FeatureSpec:
    id: str
    tick_ms: int
    horizon_ms: int
    notice_lead_s: float
    missing: float
    metrics: tuple[str, ...]
    features: tuple[dict, ...]
    sha256: str

    @property
    def names(self) -> list[str]:
        return [f["name"] for f in self.features]


def load_spec(path: str | Path = SPEC_PATH) -> FeatureSpec:
    text = Path(path).read_bytes()
    raw = json.loads(text)

    def need(obj: dict, key: str, where: str, kind: type | tuple[type, ...]):
        if key not in obj or not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            raise SpecError(f"{path}: {where}{key} missing or not {kind}")
        return obj[key]

    if need(raw, "specVersion", "", int) != 1:
        raise SpecError(f"{path}: specVersion {raw['specVersion']} is not supported (1)")
    metrics = tuple(need(raw, "metrics", "", list))
    features = need(raw, "features", "", list)
    seen: set[str] = set()
    for i, feature in enumerate(features):
        where = f"features[{i}]."
        name = need(feature, "name", where, str)
        if name in seen:
            raise SpecError(f"{path}: {where}name {name} repeated")
        seen.add(name)
        op = need(feature, "op", where, str)
        if op not in OPS:
            raise SpecError(f"{path}: {where}op {op!r} unknown; one of {', '.join(OPS)}")
        for key in OPS[op]:
            need(feature, key, where, str if key in ("scope", "event", "metric", "agg") else (int, float))
        if feature.get("scope", "node") not in ("node", "pool"):
            raise SpecError(f"{path}: {where}scope must be node or pool")
        if "event" in feature and feature["event"] not in EVENTS:
            raise SpecError(f"{path}: {where}event {feature['event']!r} unknown")
        if op == "metric" and (feature["metric"] not in metrics or feature["agg"] not in AGGS):
            raise SpecError(f"{path}: {where}metric/agg not among metrics / {', '.join(AGGS)}")
    return FeatureSpec(
        id=need(raw, "id", "", str),
        tick_ms=int(need(raw, "tickS", "", (int, float)) * 1000),
        horizon_ms=int(need(raw, "horizonS", "", (int, float)) * 1000),
        notice_lead_s=float(need(raw, "syntheticNoticeLeadS", "", (int, float))),
        missing=float(need(raw, "missingValue", "", (int, float))),
        metrics=metrics,
        features=tuple(features),
        sha256=hashlib.sha256(text).hexdigest(),
    )


@dataclass
class Windows:
    """One row per (tick, alive node). X is float32, the model's input type."""

    X: np.ndarray
    y: np.ndarray
    t_ms: np.ndarray
    node: np.ndarray
    pool: np.ndarray
    names: list[str]
    # Which trace each row came from when several are pooled (None: one trace). Time positions (validation blocks,
    # label windows) are judged within a row's own trace.
    segment: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> Windows:
        return Windows(
            self.X[mask],
            self.y[mask],
            self.t_ms[mask],
            self.node[mask],
            self.pool[mask],
            self.names,
            None if self.segment is None else self.segment[mask],
        )


def concat(parts: list[Windows]) -> Windows:
    segments = [p.segment for p in parts]
    return Windows(
        np.concatenate([p.X for p in parts]),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.t_ms for p in parts]),
        np.concatenate([p.node for p in parts]),
        np.concatenate([p.pool for p in parts]),
        parts[0].names,
        None if any(s is None for s in segments) else np.concatenate(segments),
    )


class TraceIndex:
    """Sorted event times per node and per pool, alive intervals and the pools' alive-count step functions."""

    def __init__(self, trace: Trace) -> None:
        ev = trace.events
        t = ev.t_ms.to_numpy(np.int64)
        nodes = ev.node.to_numpy(object)
        pools = ev.pool.to_numpy(object)
        kinds = ev.kind.to_numpy(object)
        self.node_pool: dict[str, str] = {}
        self.node_events: dict[tuple[str, str], np.ndarray] = {}
        self.pool_events: dict[tuple[str, str], np.ndarray] = {}
        self.intervals: dict[str, list[tuple[int, int | None]]] = {}
        step_t: dict[str, list[int]] = {}
        step_v: dict[str, list[int]] = {}
        alive: dict[str, set[str]] = {}
        node_lists: dict[tuple[str, str], list[int]] = {}
        pool_lists: dict[tuple[str, str], list[int]] = {}
        for ti, node, pool, kind in zip(t.tolist(), nodes, pools, kinds):
            self.node_pool.setdefault(node, pool)
            node_lists.setdefault((node, kind), []).append(ti)
            pool_lists.setdefault((pool, kind), []).append(ti)
            members = alive.setdefault(pool, set())
            spans = self.intervals.setdefault(node, [])
            if kind == "join" and node not in members:
                members.add(node)
                spans.append((ti, None))
            elif kind in LEAVING and node in members:
                members.discard(node)
                spans[-1] = (spans[-1][0], ti)
            step_t.setdefault(pool, []).append(ti)
            step_v.setdefault(pool, []).append(len(members))
        self.node_events = {k: np.asarray(v, np.int64) for k, v in node_lists.items()}
        self.pool_events = {k: np.asarray(v, np.int64) for k, v in pool_lists.items()}
        self.step_t = {p: np.asarray(v, np.int64) for p, v in step_t.items()}
        self.step_v = {p: np.asarray(v, np.int64) for p, v in step_v.items()}
        self.samples: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        if trace.has_telemetry:
            for node, group in trace.samples.groupby("node", sort=False):
                cols = {
                    c: group[c].to_numpy(np.float64).astype(np.float32).astype(np.float64)
                    for c in group.columns
                    if c not in ("t_ms", "node")
                }
                self.samples[str(node)] = (group.t_ms.to_numpy(np.int64), cols)

    def events_of(self, scope: str, key: str, kind: str) -> np.ndarray:
        table = self.node_events if scope == "node" else self.pool_events
        return table.get((key, kind), np.empty(0, np.int64))

    def alive_after(self, pool: str, t: np.ndarray) -> np.ndarray:
        st, sv = self.step_t[pool], self.step_v[pool]
        i = np.searchsorted(st, t, "right") - 1
        return np.where(i >= 0, sv[np.maximum(i, 0)], 0)

    def alive_max(self, pool: str, t: np.ndarray, window_ms: int) -> np.ndarray:
        st, sv = self.step_t[pool], self.step_v[pool]
        base = self.alive_after(pool, t - window_ms)
        lo = np.searchsorted(st, t - window_ms, "right")
        hi = np.searchsorted(st, t, "right")
        out = base.copy()
        for k in range(len(t)):
            if hi[k] > lo[k]:
                out[k] = max(out[k], int(sv[lo[k] : hi[k]].max()))
        return out

    def alive_ticks(self, node: str, ticks: np.ndarray) -> np.ndarray:
        """Ticks at which the node is alive: joined at or before t, not left at or before t."""
        mask = np.zeros(len(ticks), bool)
        for start, end in self.intervals.get(node, []):
            mask |= (ticks >= start) & ((ticks < end) if end is not None else True)
        return ticks[mask]


def tick_grid(trace: Trace, spec: FeatureSpec, t_from: int, t_to: int) -> np.ndarray:
    """Ticks `start + k*tick` within [t_from, t_to]."""
    start = trace.start_ms
    k0 = max(0, -(-(t_from - start) // spec.tick_ms))
    k1 = (t_to - start) // spec.tick_ms
    return start + np.arange(k0, k1 + 1, dtype=np.int64) * spec.tick_ms


def build_windows(
    trace: Trace,
    spec: FeatureSpec,
    t_from: int | None = None,
    t_to: int | None = None,
    *,
    index: TraceIndex | None = None,
) -> Windows:
    """Rows for ticks in [t_from, t_to] whose label window (t, t + horizon] ends inside the trace."""
    index = index or TraceIndex(trace)
    lo = trace.start_ms if t_from is None else t_from
    hi = trace.end_ms - spec.horizon_ms if t_to is None else min(t_to, trace.end_ms - spec.horizon_ms)
    ticks = tick_grid(trace, spec, lo, hi)
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, str, str]] = []
    pool_cache: dict[str, dict[str, np.ndarray]] = {}
    for node, pool in index.node_pool.items():
        t = index.alive_ticks(node, ticks)
        if len(t) == 0:
            continue
        if pool not in pool_cache:
            pool_cache[pool] = _pool_columns(index, spec, pool, ticks)
        rows_at = np.searchsorted(ticks, t)
        cols = [
            pool_cache[pool][f["name"]][rows_at] if _is_pool_feature(f) else _node_column(index, spec, f, node, t)
            for f in spec.features
        ]
        X = np.column_stack(cols).astype(np.float32) if cols else np.zeros((len(t), 0), np.float32)
        gone = index.events_of("node", node, "preempted")
        y = (np.searchsorted(gone, t + spec.horizon_ms, "right") - np.searchsorted(gone, t, "right")) > 0
        blocks.append((X, y.astype(np.int8), t, node, pool))
    if not blocks:
        empty = np.empty(0, object)
        return Windows(
            np.zeros((0, len(spec.features)), np.float32),
            np.zeros(0, np.int8),
            np.zeros(0, np.int64),
            empty,
            empty,
            spec.names,
        )
    X = np.concatenate([b[0] for b in blocks])
    y = np.concatenate([b[1] for b in blocks])
    t = np.concatenate([b[2] for b in blocks])
    node = np.concatenate([np.full(len(b[2]), b[3], object) for b in blocks])
    pool = np.concatenate([np.full(len(b[2]), b[4], object) for b in blocks])
    order = np.lexsort((node.astype(str), t))
    return Windows(X[order], y[order], t[order], node[order], pool[order], spec.names)


def _is_pool_feature(feature: dict) -> bool:
    return feature["op"] in ("alive", "aliveMax") or feature.get("scope") == "pool"


def _pool_columns(index: TraceIndex, spec: FeatureSpec, pool: str, ticks: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for f in spec.features:
        if not _is_pool_feature(f):
            continue
        if f["op"] == "alive":
            out[f["name"]] = index.alive_after(pool, ticks).astype(np.float64)
        elif f["op"] == "aliveMax":
            out[f["name"]] = index.alive_max(pool, ticks, int(f["windowS"] * 1000)).astype(np.float64)
        else:
            out[f["name"]] = _event_feature(f, index.events_of("pool", pool, f["event"]), ticks)
    return out


def _event_feature(f: dict, times: np.ndarray, t: np.ndarray) -> np.ndarray:
    if f["op"] == "count":
        window = int(f["windowS"] * 1000)
        return (np.searchsorted(times, t, "right") - np.searchsorted(times, t - window, "right")).astype(np.float64)
    return _since(times, t, float(f["capS"]))


def _since(times: np.ndarray, t: np.ndarray, cap_s: float) -> np.ndarray:
    i = np.searchsorted(times, t, "right") - 1
    if len(times) == 0:
        return np.full(len(t), cap_s)
    last = times[np.maximum(i, 0)]
    return np.where(i >= 0, np.minimum((t - last) / 1000.0, cap_s), cap_s)


def _node_column(index: TraceIndex, spec: FeatureSpec, f: dict, node: str, t: np.ndarray) -> np.ndarray:
    if f["op"] == "age":
        return _since(index.events_of("node", node, "join"), t, float(f["capS"]))
    if f["op"] in ("count", "since"):
        return _event_feature(f, index.events_of("node", node, f["event"]), t)
    return _metric(index, spec, f, node, t)


def _metric(index: TraceIndex, spec: FeatureSpec, f: dict, node: str, t: np.ndarray) -> np.ndarray:
    out = np.full(len(t), spec.missing)
    if node not in index.samples or f["metric"] not in index.samples[node][1]:
        return out
    st, cols = index.samples[node]
    values = cols[f["metric"]]
    lo = np.searchsorted(st, t - int(f["windowS"] * 1000), "right")
    hi = np.searchsorted(st, t, "right")
    for k in range(len(t)):
        v = values[lo[k] : hi[k]]
        v = v[~np.isnan(v)]
        if len(v) == 0:
            continue
        if f["agg"] == "mean":
            # Oldest first, one float64 accumulator: the order the TypeScript side sums in.
            total = 0.0
            for x in v.tolist():
                total += x
            out[k] = total / len(v)
        elif f["agg"] == "max":
            out[k] = float(v.max())
        else:
            out[k] = float(v[-1])
    return out
