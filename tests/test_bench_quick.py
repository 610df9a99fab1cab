"""The benchmark harness runs (quick mode, a subset) and writes a complete report.

No timing is asserted here: the benchmarks report numbers, the tests check that they run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.common import Stat, percentile
from bench.throughput import window_tail

REPO = Path(__file__).resolve().parent.parent


def test_percentiles_interpolate_between_ranks():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 90) == 5
    stat = Stat.of([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert (stat.median, stat.min, stat.max, stat.n) == (5.5, 1, 10, 10)
    assert stat.p10 == 1.9 and stat.p90 == 9.1


def test_window_tail_starts_a_turn():
    messages = [("human", "q1"), ("ai", "a1"), ("human", "q2"), ("ai", "a2")]
    assert window_tail(messages, 4) == messages
    assert window_tail(messages, 3) == [("human", "q2"), ("ai", "a2")]
    assert window_tail(messages, 2) == [("human", "q2"), ("ai", "a2")]


def test_quick_mode_runs_and_writes_the_report(tmp_path: Path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "turn_cost,growth,tokens", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "measurement" in done.stdout and "project" in done.stdout

    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert set(report["benchmarks"]) == {"turn_cost", "growth", "tokens"}
    assert all(b["error"] is None for b in report["benchmarks"].values())
    for key in ("cpu", "cores", "python", "packages", "valkey", "date"):
        assert report["machine"][key], key
    groups = {row["group"].split(".")[0] for row in report["rows"]}
    assert groups == {"1", "2", "5"}
    assert all(row["project"] is not None for row in report["rows"])
    # the counts come from a real server and a real client: whole numbers, one set per side
    rt = next(r for r in report["rows"] if r["metric"].startswith("Redis round trips"))
    assert float(rt["project"]["median"]).is_integer()
    assert float(rt["baseline"]["median"]).is_integer()


def test_quick_counts_meet_their_targets(tmp_path: Path):
    """The count-based rows (imported modules, Yahoo requests, server commands) are exact, so
    their targets hold on any machine; the timing rows are reported, never asserted."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "interactive,admin,requests",
         "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # a deadlock guard: each benchmark has its own 3-minute limit
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert {name: b["error"] for name, b in report["benchmarks"].items()} == {
        "interactive": None,
        "admin": None,
        "requests": None,
    }
    measured = ("ms", "s", "MiB")  # times and memory depend on the machine
    counted = [r for r in report["rows"] if r["target"] is not None and r["unit"] not in measured]
    assert {r["group"] for r in counted} == {  # each benchmark has counts with a target
        "7. what a person waits for",
        "8. Yahoo requests per analyze (fake HTTP session)",
        "9. admin commands with many unrelated keys",
    }, counted
    assert any(r["unit"] == "modules" for r in counted)
    assert any(r["unit"] == "requests" for r in counted)
    assert sum("server commands" in r["metric"] for r in counted) == 3
    missed = [(r["metric"], r["project"], r["target"]) for r in counted if r["met"] is not True]
    assert missed == []
