"""Small traces written on the fly: the tests train in seconds and need nothing outside the repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

MIN = 60_000


def write_ndjson(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def bursty_parcae(path: Path, hours: int = 12, seed: int = 1) -> Path:
    """A parcae-format trace with bursts: a removal announces more removals in the next minutes."""
    rng = np.random.default_rng(seed)
    rows = [f"0,add,node{i}" for i in range(1, 13)]
    alive = list(range(1, 13))
    made = 12
    t = 0
    while t < hours * 60:
        t += int(rng.integers(20, 60))
        burst = int(rng.integers(2, 5))
        for k in range(burst):
            if len(alive) < 3:
                break
            victim = alive.pop(int(rng.integers(len(alive))))
            rows.append(f"{(t + 3 * k) * MIN},remove,node{victim}")
        t += 15
        while len(alive) < 12:
            made += 1
            alive.append(made)
            rows.append(f"{t * MIN},add,node{made}")
    rows.sort(key=lambda r: int(r.split(",")[0]))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def parcae_trace(tmp_path: Path) -> Path:
    return bursty_parcae(tmp_path / "bursty.csv")


def telemetry_trace(path: Path, hours: int = 10, nodes: int = 16, seed: int = 2) -> Path:
    """NDJSON with per-node telemetry: a node's memory pressure climbs in the 15 min before its pre-emption."""
    rng = np.random.default_rng(seed)
    end = hours * 60 * MIN
    lines: list[dict] = []
    made = 0
    for _ in range(nodes):
        t = 0
        while t < end:
            made += 1
            name = f"n{made}"
            life = int(rng.integers(40, 240)) * MIN
            gone = t + life
            lines.append({"t": t, "node": name, "pool": "p", "event": "join"})
            for s in range(t + MIN, min(gone, end), MIN):
                ramp = max(0.0, 1 - (gone - s) / (15 * MIN)) if gone <= end else 0.0
                lines.append(
                    {
                        "t": s,
                        "node": name,
                        "metrics": {
                            "cpu": float(rng.uniform(0, 1)),
                            "memSomeAvg10": float(40 * ramp + rng.uniform(0, 5)),
                        },
                    }
                )
            if gone <= end:
                lines.append({"t": gone, "node": name, "event": "preempted"})
            t = gone + 5 * MIN
    return write_ndjson(path, lines)
