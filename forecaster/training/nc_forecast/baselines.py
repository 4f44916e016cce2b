"""The baselines the model must beat, scored on the same rows (README, Evaluation)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from .features import FeatureSpec, TraceIndex, Windows, _metric, tick_grid
from .traces import Trace

NAMES = ("reactive", "utilisation", "historicalRate", "prophet", "poolBurst", "nodeAge")
# The pool-burst heuristic's memory: a score of 1 - since/POOL_BURST_S, so "flag every node of the pool for 10 minutes
# after any notice or pre-emption in it" is the threshold 1 - 600/3600, and other thresholds are other windows.
POOL_BURST_S = 3600
# Node-age bins (upper bounds, s) of the hazard baseline: young nodes and nodes near GCP's 24 h limit go first.
AGE_BINS_S = (300, 900, 1800, 3600, 7200, 14400, 28800, 57600, 79200, 93600, np.inf)
# Refitted every 6 h: each fit is a Stan run of about a second, and a 3-day trace took 29 of them at 3 h.
PROPHET_REFIT_MS = 6 * 3_600_000
PROPHET_MIN_HISTORY_MS = 2 * 3_600_000
PRIOR_NODE_HOURS = 1.0


def reactive(w: Windows, index: TraceIndex) -> np.ndarray:
    """1 while an interruption notice is active: a notice since the node's latest join, at or before t."""
    out = np.zeros(len(w))
    for node in np.unique(w.node.astype(str)):
        rows = np.flatnonzero(w.node == node)
        t = w.t_ms[rows]
        notices = index.events_of("node", node, "notice")
        joins = index.events_of("node", node, "join")
        last_notice = _last_at_or_before(notices, t)
        last_join = _last_at_or_before(joins, t)
        out[rows] = (last_notice >= last_join) & (last_notice >= 0)
    return out


def utilisation(w: Windows, index: TraceIndex, spec: FeatureSpec, trace: Trace) -> np.ndarray:
    """Mean CPU over 5 min with telemetry; otherwise the pool's occupancy (alive / most ever alive so far)."""
    if trace.has_telemetry and "cpu" in trace.samples.columns:
        feature = {"metric": "cpu", "agg": "mean", "windowS": 300}
        out = np.zeros(len(w))
        for node in np.unique(w.node.astype(str)):
            rows = np.flatnonzero(w.node == node)
            out[rows] = _metric(index, spec, feature, node, w.t_ms[rows])
        return out
    out = np.zeros(len(w))
    for pool in np.unique(w.pool.astype(str)):
        rows = np.flatnonzero(w.pool == pool)
        st, sv = index.step_t[pool], index.step_v[pool]
        peak = np.maximum.accumulate(sv)
        i = np.searchsorted(st, w.t_ms[rows], "right") - 1
        alive = np.where(i >= 0, sv[np.maximum(i, 0)], 0)
        most = np.where(i >= 0, peak[np.maximum(i, 0)], 1)
        out[rows] = alive / np.maximum(most, 1)
    return out


def historical_rate(w: Windows, index: TraceIndex, horizon_ms: int) -> np.ndarray:
    """P(at least one pre-emption within the horizon) at the node's shrunk historical rate."""
    out = np.zeros(len(w))
    pool_rate = {}
    for pool in np.unique(w.pool.astype(str)):
        rows = np.flatnonzero(w.pool == pool)
        t = w.t_ms[rows]
        events = index.events_of("pool", pool, "preempted")
        count = np.searchsorted(events, t, "right")
        hours = _node_hours(index.step_t[pool], index.step_v[pool], t)
        pool_rate[pool] = (rows, np.where(hours > 0, count / np.maximum(hours, 1e-9), 0.0))
    prior = np.zeros(len(w))
    for rows, rate in pool_rate.values():
        prior[rows] = rate
    for node in np.unique(w.node.astype(str)):
        rows = np.flatnonzero(w.node == node)
        t = w.t_ms[rows]
        own = np.searchsorted(index.events_of("node", node, "preempted"), t, "right")
        exposure = np.zeros(len(t))
        for start, end in index.intervals.get(node, []):
            stop = np.minimum(t, end if end is not None else t)
            exposure += np.maximum(stop - start, 0) / 3_600_000
        rate = (own + prior[rows] * PRIOR_NODE_HOURS) / (exposure + PRIOR_NODE_HOURS)
        out[rows] = 1 - np.exp(-rate * horizon_ms / 3_600_000)
    return out


def prophet_capacity(trace: Trace, index: TraceIndex, spec: FeatureSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per pool: ticks and Prophet's forecast of the alive count at tick + horizon, rolling origin (no future)."""
    # Prophet and cmdstanpy log every fit at INFO, and Prophet warns at import that plotly is absent.
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logging.getLogger(name).disabled = True
    from prophet import Prophet  # Imported here: loading Stan takes a second the other commands do not need.

    ticks = tick_grid(trace, spec, trace.start_ms, trace.end_ms)
    out = {}
    for pool in index.step_t:
        alive = index.alive_after(pool, ticks).astype(float)
        forecast = np.full(len(ticks), np.nan)
        origin = trace.start_ms + PROPHET_MIN_HISTORY_MS
        while origin <= trace.end_ms:
            past = ticks < origin
            block = (ticks >= origin) & (ticks < origin + PROPHET_REFIT_MS)
            if block.any() and past.sum() > 10:
                history = pd.DataFrame({"ds": pd.to_datetime(ticks[past], unit="ms"), "y": alive[past]})
                # No uncertainty intervals (only yhat is used): predict() otherwise simulates 1000 paths per row.
                model = Prophet(
                    yearly_seasonality=False,
                    weekly_seasonality=False,
                    daily_seasonality="auto",
                    uncertainty_samples=0,
                    n_changepoints=10,
                )
                future = pd.DataFrame({"ds": pd.to_datetime(ticks[block] + spec.horizon_ms, unit="ms")})
                with warnings.catch_warnings():
                    # Prophet 1.5 uses pandas' deprecated inplace drop; nothing for us to act on.
                    warnings.simplefilter("ignore", FutureWarning)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    model.fit(history)
                    forecast[block] = model.predict(future)["yhat"].to_numpy()
            origin += PROPHET_REFIT_MS
        out[pool] = (ticks, forecast)
    return out


def prophet(w: Windows, index: TraceIndex, capacity: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The predicted relative drop of the pool's capacity over the horizon, clipped to [0, 1]; 0 before the first fit."""
    out = np.zeros(len(w))
    for pool in np.unique(w.pool.astype(str)):
        rows = np.flatnonzero(w.pool == pool)
        ticks, yhat = capacity[pool]
        t = w.t_ms[rows]
        predicted = yhat[np.searchsorted(ticks, t)]
        alive = index.alive_after(pool, t).astype(float)
        drop = (alive - predicted) / np.maximum(alive, 1)
        out[rows] = np.where(np.isnan(drop), 0.0, np.clip(drop, 0, 1))
    return out


def pool_burst(w: Windows, index: TraceIndex) -> np.ndarray:
    """1 - (time since the pool's latest notice or pre-emption) / POOL_BURST_S, at least 0."""
    out = np.zeros(len(w))
    for pool in np.unique(w.pool.astype(str)):
        rows = np.flatnonzero(w.pool == pool)
        t = w.t_ms[rows]
        events = np.sort(np.concatenate([index.events_of("pool", pool, k) for k in ("notice", "preempted")]))
        last = _last_at_or_before(events, t)
        since = np.where(last >= 0, (t - last) / 1000.0, np.inf)
        out[rows] = np.clip(1 - since / POOL_BURST_S, 0, 1)
    return out


def node_age(w: Windows, index: TraceIndex, spec: FeatureSpec, trace: Trace) -> np.ndarray:
    """P(pre-empted within the horizon) at the hazard of the node's age bin, estimated from everything the trace
    recorded before t (pre-emptions at that age / node-time spent at that age), shrunk towards the rate of all ages
    so far with one node-hour of prior weight."""
    ticks = tick_grid(trace, spec, trace.start_ms, trace.end_ms)
    tick_h = spec.tick_ms / 3_600_000
    exposure_t: list[list[np.ndarray]] = [[] for _ in AGE_BINS_S]
    event_t: list[list[int]] = [[] for _ in AGE_BINS_S]
    for node, spans in index.intervals.items():
        gone = set(index.events_of("node", node, "preempted").tolist())
        for start, end in spans:
            alive = ticks[(ticks >= start) & ((ticks < end) if end is not None else True)]
            bins = np.searchsorted(AGE_BINS_S, (alive - start) / 1000.0, "left")
            for b in np.unique(bins):
                exposure_t[b].append(alive[bins == b])
            if end is not None and end in gone:
                event_t[int(np.searchsorted(AGE_BINS_S, (end - start) / 1000.0, "left"))].append(end)
    exposure = [np.sort(np.concatenate(e)) if e else np.empty(0, np.int64) for e in exposure_t]
    events = [np.sort(np.asarray(e, np.int64)) for e in event_t]
    all_exposure = np.sort(np.concatenate(exposure))
    all_events = np.sort(np.concatenate(events))
    t = w.t_ms
    age = np.zeros(len(w))
    for node in np.unique(w.node.astype(str)):
        rows = np.flatnonzero(w.node == node)
        joined = _last_at_or_before(index.events_of("node", node, "join"), w.t_ms[rows])
        age[rows] = (w.t_ms[rows] - joined) / 1000.0
    bins = np.searchsorted(AGE_BINS_S, age, "left")
    prior = np.searchsorted(all_events, t, "right") / np.maximum(
        np.searchsorted(all_exposure, t, "left") * tick_h, 1e-9
    )
    rate = np.zeros(len(w))
    for b in range(len(AGE_BINS_S)):
        rows = bins == b
        count = np.searchsorted(events[b], t[rows], "right")
        hours = np.searchsorted(exposure[b], t[rows], "left") * tick_h
        rate[rows] = (count + prior[rows] * PRIOR_NODE_HOURS) / (hours + PRIOR_NODE_HOURS)
    return 1 - np.exp(-rate * spec.horizon_ms / 3_600_000)


def _last_at_or_before(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    i = np.searchsorted(times, t, "right") - 1
    return np.where(i >= 0, times[np.maximum(i, 0)] if len(times) else 0, -1)


def _node_hours(st: np.ndarray, sv: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Integral of the pool's alive count up to each t, in node-hours."""
    widths = np.diff(st, append=st[-1])
    area = np.concatenate([[0], np.cumsum(sv * widths)])
    i = np.searchsorted(st, t, "right") - 1
    safe = np.maximum(i, 0)
    return np.where(i >= 0, area[safe] + sv[safe] * (t - st[safe]), 0) / 3_600_000
