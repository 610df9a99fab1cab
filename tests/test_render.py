"""The terminal report: sparklines of the last three months beside each symbol's numbers (unicode
blocks, ASCII where the terminal cannot show them), green and red that respect NO_COLOR, and the
multi-symbol summary that says which columns it left out when the terminal is too narrow."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from stock_agent.app import App
from stock_agent.config import Settings
from stock_agent.ui.render import (
    PANEL_SPARK_WIDTH,
    SUMMARY_SPARK_WIDTH,
    fetch_closes,
    print_report,
    summary_layout,
    to_ascii,
)
from stock_agent.ui.sparkline import ASCII, BLOCKS, can_show_blocks, change, resample, sparkline
from tests.conftest import MARKET_DATA

SUMMARY_HEADERS = (
    "Symbol",
    "Price",
    "Last 3 months",
    "1d",
    "1m",
    "1y",
    "RSI",
    "Trend",
    "vs 52w high",
    "Alert",
)
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])(;[0-9;]*)?m")  # any foreground colour


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stock_agent", *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=60,
        cwd=Path(env["STOCK_AGENT_HOME"]).parent,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def csv_closes(symbol: str) -> list[float]:
    with (MARKET_DATA / f"{symbol}.csv").open() as f:
        return [float(r["Close"]) for r in csv.DictReader(f)]


def panel_width(columns: int) -> int:
    return max(10, min(PANEL_SPARK_WIDTH, columns - 20))


# --------------------------------------------------------------------------- sparklines


def test_sparkline_scales_from_lowest_to_highest() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == BLOCKS
    assert sparkline([8, 7, 6, 5, 4, 3, 2, 1]) == BLOCKS[::-1]
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], ascii_only=True) == ASCII
    assert sparkline([0, 10, 5]) == "▁█" + BLOCKS[round(0.5 * 7)]


def test_sparkline_edge_cases() -> None:
    assert sparkline([]) == ""
    assert sparkline([math.nan, math.inf]) == ""
    assert sparkline([3, 3, 3]) == "▄▄▄"  # flat: a flat line in the middle
    assert sparkline([1, math.nan, 2]) == "▁█"  # missing values skipped
    assert len(sparkline(range(63), 21)) == 21
    assert sparkline([1, 2], 10) == "▁█"  # fewer values than the width: one each


def test_resample_takes_the_mean_of_equal_slices() -> None:
    assert resample([1, 2, 3, 4, 5, 6], 3) == [1.5, 3.5, 5.5]
    assert resample([1, 2], 5) == [1.0, 2.0]
    with pytest.raises(ValueError):
        resample([1.0], 0)


def test_change_is_first_to_last() -> None:
    assert change([100, 90, 110]) == pytest.approx(0.10)
    assert change([5]) is None
    assert change([0, 1]) is None


@pytest.mark.parametrize(
    ("encoding", "blocks"),
    [("utf-8", True), ("UTF8", True), ("cp1252", False), ("ascii", False), ("nope", False)],
)
def test_which_encodings_show_blocks(encoding: str, blocks: bool) -> None:
    assert can_show_blocks(encoding) is blocks
    assert can_show_blocks(None) is False


def test_to_ascii_replaces_the_report_glyphs() -> None:
    assert to_ascii("— × ▼ • ≈ · …", "ascii") == "- x v * ~ | ..."
    assert to_ascii("café ☃", "ascii") == "caf? ?"


# --------------------------------------------------------------------------- the summary layout


@pytest.fixture
def analyses(settings: Settings):
    with App(settings) as app:
        yield app.analysis.analyze(["AAPL", "TSLA", "NVDA"]).analyses


@pytest.fixture
def closes(settings: Settings, analyses):
    with App(settings) as app:
        return fetch_closes(app.market, [a.symbol for a in analyses])


def test_a_wide_summary_has_every_column(analyses, closes) -> None:
    layout = summary_layout(analyses, 200, closes)
    assert layout.headers == SUMMARY_HEADERS
    assert layout.left_out == ()


@pytest.mark.parametrize("width", [90, 72, 50, 10])
def test_a_narrow_summary_says_what_it_left_out(analyses, closes, width: int) -> None:
    layout = summary_layout(analyses, width, closes)
    assert layout.left_out
    assert layout.headers[:2] == ("Symbol", "Price") and "1d" in layout.headers
    assert set(layout.headers) | set(layout.left_out) == set(SUMMARY_HEADERS)
    # the columns kept stay in their order
    assert list(layout.headers) == [h for h in SUMMARY_HEADERS if h in layout.headers]


def test_the_narrowest_summary_keeps_symbol_price_and_1d(analyses, closes) -> None:
    assert summary_layout(analyses, 10, closes).headers == ("Symbol", "Price", "1d")


# --------------------------------------------------------------------------- the command


def test_analyze_shows_a_sparkline_of_three_months_beside_each_symbol(
    cli_env: dict[str, str],
) -> None:
    out = ok(run({**cli_env, "COLUMNS": "110"}, "analyze", "AAPL", "TSLA"))
    lines = out.splitlines()
    assert lines[0].rstrip() == "Summary"
    assert lines[1].split("  ")[0] == "Symbol"
    for header in SUMMARY_HEADERS:
        assert header in lines[1]
    assert "left out" not in out
    for symbol in ("AAPL", "TSLA"):
        closes = csv_closes(symbol)[-63:]
        row = next(line for line in lines if line.startswith(f"{symbol} "))
        assert sparkline(closes, SUMMARY_SPARK_WIDTH) in row
        assert f"{closes[-1]:,.2f}" in row
        # the panel: the sparkline at its own width, and the change over the three months
        assert (
            f"3 months {sparkline(closes, panel_width(110))} {closes[-1] / closes[0] - 1:+.1%}"
            in out
        )


def test_a_narrow_terminal_names_the_columns_left_out(cli_env: dict[str, str]) -> None:
    out = ok(run({**cli_env, "COLUMNS": "72"}, "analyze", "AAPL", "TSLA"))
    assert max(len(line) for line in out.splitlines()) <= 72
    header = out.splitlines()[1].split()
    assert header[:3] == ["Symbol", "Price", "Last"]  # "Last 3 months"
    left_out = summary_layout_for_cli(out)
    assert left_out == ["vs 52w high", "RSI", "1y"]
    for name in left_out:
        assert name not in out.splitlines()[1]
    assert "…" not in out


def summary_layout_for_cli(out: str) -> list[str]:
    match = re.search(r"left out to fit \d+ columns: (.+?) \(", " ".join(out.split()))
    assert match, out
    return match.group(1).split(", ")


def test_a_very_narrow_terminal_keeps_symbol_price_and_1d(cli_env: dict[str, str]) -> None:
    report = json.loads(ok(run(cli_env, "analyze", "AAPL", "TSLA", "--json")))
    out = ok(run({**cli_env, "COLUMNS": "24"}, "analyze", "AAPL", "TSLA"))
    lines = out.splitlines()
    assert lines[1].split() == ["Symbol", "Price", "1d"]
    for a in report:
        row = next(line for line in lines if line.startswith(f"{a['symbol']} "))
        assert row.split() == [a["symbol"], f"{a['price']:,.2f}", f"{a['returns']['1d']:+.1%}"]
    joined = " ".join(out.split())
    assert "left out to fit 24 columns:" in joined
    for name in ("Last 3 months", "1m", "1y", "RSI", "Trend", "vs 52w high", "Alert"):
        assert name in joined.split("left out to fit 24 columns:")[1]


def test_colours_are_green_up_red_down_and_respect_no_color(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "NO_COLOR"}
    coloured = ok(run({**env, "FORCE_COLOR": "1", "COLUMNS": "110"}, "analyze", "AAPL", "TSLA"))
    tsla = csv_closes("TSLA")[-63:]  # fell over the three months: red
    assert tsla[-1] < tsla[0]
    red_spark = re.escape(sparkline(tsla, SUMMARY_SPARK_WIDTH))
    assert re.search(r"\x1b\[31m" + red_spark, coloured), coloured
    assert "\x1b[32m+" in coloured  # some rise is green
    plain = ok(run({**cli_env, "FORCE_COLOR": "1", "COLUMNS": "110"}, "analyze", "AAPL", "TSLA"))
    assert not COLOUR.search(plain)
    assert sparkline(tsla, SUMMARY_SPARK_WIDTH) in plain


def test_no_color_in_process(analyses, closes, monkeypatch: pytest.MonkeyPatch) -> None:
    def draw() -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=True, color_system="standard", width=110)
        print_report(console, analyses, closes)
        return buffer.getvalue()

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert COLOUR.search(draw())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not COLOUR.search(draw())


def test_a_terminal_that_cannot_show_unicode_gets_ascii(cli_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stock_agent", "analyze", "AAPL", "TSLA"],
        env={**cli_env, "PYTHONIOENCODING": "ascii", "COLUMNS": "110"},
        capture_output=True,
        timeout=60,
        cwd=Path(cli_env["STOCK_AGENT_HOME"]).parent,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    out = result.stdout.decode("ascii")  # raises if anything is not ASCII
    for symbol in ("AAPL", "TSLA"):
        closes = csv_closes(symbol)[-63:]
        assert sparkline(closes, SUMMARY_SPARK_WIDTH, ascii_only=True) in out
        assert sparkline(closes, panel_width(110), ascii_only=True) in out
    assert "Signals" in out and "+-" in out  # the panels, in ASCII boxes


# --------------------------------------------------------------------------- the closes


def test_fetch_closes_are_the_last_three_months(settings: Settings) -> None:
    with App(settings) as app:
        found = fetch_closes(app.market, ["AAPL", "NEWCO", "NOSUCH"])
    assert found["AAPL"] == pytest.approx(csv_closes("AAPL")[-63:])
    assert found["NEWCO"] == pytest.approx(csv_closes("NEWCO"))  # fewer bars: all of them
    assert "NOSUCH" not in found  # no sparkline, no failure


def test_a_cached_sparkline_needs_no_pandas(settings: Settings) -> None:
    with App(settings) as app:
        warm = app.market.recent_closes("AAPL")
    script = f"""
import sys
from pathlib import Path
from stock_agent.app import App
from stock_agent.config import Settings
s = Settings(redis_url={settings.redis_url!r}, user_id="alice", agent_id="test_agent",
             home=Path({str(settings.home)!r}), data_dir=Path({str(MARKET_DATA)!r}))
with App(s) as app:
    closes = app.market.recent_closes("AAPL").closes
print(len(closes), closes[-1], "pandas" in sys.modules, "numpy" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == [str(len(warm.closes)), str(warm.closes[-1]), "False", "False"]
