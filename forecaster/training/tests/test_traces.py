from pathlib import Path

import pytest

from nc_forecast.traces import TraceError, detect_format, read_trace, write_ndjson

from .conftest import write_ndjson as write_lines

# The shared traces live beside the work tree (../shared/data), in CI as here.
DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def test_detects_each_format(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("0,add,node1\n60000,remove,node1\n")
    (tmp_path / "s.csv").write_text("0,0\n10,0\n10,4\n")
    (tmp_path / "h.csv").write_text("0.000,0\n0.030,0\n0.030,9\n")
    (tmp_path / "n.ndjson").write_text('{"t":0,"node":"a","event":"join"}\n')
    assert [detect_format(tmp_path / f) for f in ("p.csv", "s.csv", "h.csv", "n.ndjson")] == [
        "parcae",
        "bamboo-s",
        "bamboo-h",
        "ndjson",
    ]


def test_unknown_format_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a;b;c\n")
    with pytest.raises(TraceError, match="x.csv: unknown trace format"):
        detect_format(tmp_path / "x.csv")


def test_bamboo_drops_become_preemptions_of_alive_nodes(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("0,0\n10,0\n10,4\n20,4\n20,1\n30,1\n30,3\n")
    trace = read_trace(tmp_path / "s.csv", notice_lead_s=5)
    ev = trace.events
    assert (ev.kind == "join").sum() == 6 and (ev.kind == "preempted").sum() == 3
    assert set(ev[ev.kind == "preempted"].t_ms) == {20_000}
    # New nodes after the drop get fresh names; removed ones are among the first four.
    gone = set(ev[ev.kind == "preempted"].node)
    assert gone <= {"bamboo-1", "bamboo-2", "bamboo-3", "bamboo-4"}
    assert set(ev[ev.kind == "notice"].t_ms) == {15_000}
    assert trace.start_ms == 0 and trace.end_ms == 30_000


def test_bamboo_hours_convert_to_ms(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("0.000,0\n0.500,0\n0.500,2\n1.250,2\n1.250,1\n")
    trace = read_trace(tmp_path / "h.csv")
    assert trace.format == "bamboo-h"
    assert int(trace.events[trace.events.kind == "preempted"].t_ms.iloc[0]) == 4_500_000


def test_draw_is_seeded(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("0,10\n50,10\n50,5\n")
    a = read_trace(tmp_path / "s.csv", seed=3).events
    b = read_trace(tmp_path / "s.csv", seed=3).events
    assert a.equals(b)


def test_ndjson_roundtrip_and_implicit_join(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "t.ndjson",
        [
            {"format": "nc-trace/1"},
            {"t": 1000, "node": "a", "pool": "gpu", "metrics": {"cpu": 0.5}},
            {"t": 5000, "node": "a", "event": "notice"},
            {"t": 9000, "node": "a", "event": "preempted"},
        ],
    )
    trace = read_trace(path)
    assert list(trace.events.kind) == ["join", "notice", "preempted"]
    assert list(trace.events.pool) == ["gpu"] * 3
    assert trace.has_telemetry
    write_ndjson(trace, tmp_path / "back.ndjson")
    again = read_trace(tmp_path / "back.ndjson")
    assert list(again.events.kind) == list(trace.events.kind)
    assert again.samples.cpu.tolist() == [0.5]


def test_advice_is_its_own_event_and_never_a_notice(tmp_path: Path) -> None:
    """A rebalance recommendation or a live migration is advice (a feature of its own), whether the line says
    `advice` or is a `notice` naming a kind that does not announce the node's end; a terminal kind stays a notice.
    Advice alone does not count as notices: the synthetic ones are still added."""
    lines = [
        {"t": 0, "node": "a", "event": "join"},
        {"t": 1000, "node": "a", "event": "notice", "source": "aws-imds", "kind": "rebalance-recommendation"},
        {"t": 2000, "node": "a", "event": "notice", "source": "gcp-metadata", "kind": "maintenance-migrate"},
        {"t": 3000, "node": "a", "event": "advice"},
        {"t": 400_000, "node": "a", "event": "preempted"},
    ]
    trace = read_trace(write_lines(tmp_path / "advice.ndjson", lines), notice_lead_s=120)
    assert list(trace.events.kind) == ["join", "advice", "advice", "advice", "notice", "preempted"]
    assert int(trace.events.t_ms[trace.events.kind == "notice"].iloc[0]) == 280_000
    lines.insert(4, {"t": 390_000, "node": "a", "event": "notice", "kind": "spot-interruption"})
    trace = read_trace(write_lines(tmp_path / "notice.ndjson", lines), notice_lead_s=120)
    assert list(trace.events.kind) == ["join", "advice", "advice", "advice", "notice", "preempted"]
    assert int(trace.events.t_ms[trace.events.kind == "notice"].iloc[0]) == 390_000
    # The project's own writer keeps them apart.
    write_ndjson(trace, tmp_path / "back.ndjson")
    assert list(read_trace(tmp_path / "back.ndjson").events.kind) == list(trace.events.kind)


def test_ndjson_errors_name_the_line(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "t.ndjson", [{"t": 0, "node": "a", "event": "join"}, {"t": 1, "node": "a", "event": "exploded"}]
    )
    with pytest.raises(TraceError, match="t.ndjson:2: unknown event"):
        read_trace(path)


@pytest.mark.parametrize(
    "name,fmt,preempted",
    [
        ("aws-p3-spot-nodes-parcae.csv", "parcae", 167),
        ("aws-g4dn-xlarge-us-east-1c-2020-11-20-bamboo.csv", "bamboo-s", 85),
        ("aws-p2-xlarge-2020-11-20-to-23-bamboo.csv", "bamboo-h", 178),
    ],
)
def test_reads_every_shared_trace(name: str, fmt: str, preempted: int) -> None:
    path = DATA / name
    if not path.exists():
        pytest.fail(f"shared trace {path} is missing")
    trace = read_trace(path)
    assert trace.format == fmt
    assert (trace.events.kind == "preempted").sum() == preempted
