"""Charts: `analyze --chart PATH.png` and the chat's `/chart SYMBOL [PATH]` draw a year of
candles with SMA 20/50/200 and the Bollinger Bands, volume with its 20-day average, RSI with
the 30 and 70 lines, and a marker on each day at or below the alert threshold. Drawn from the
offline data; matplotlib is never loaded by commands that draw nothing."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pexpect
import pytest
from PIL import Image, ImageChops, ImageStat

from stock_agent.app import App
from stock_agent.config import Settings
from stock_agent.errors import DataUnavailable, InvalidInput
from stock_agent.ui.charts import (
    CHART_DAYS,
    PANELS,
    chart_figure,
    chart_paths,
    chart_series,
    chart_title,
    check_output_path,
    render_chart,
    write_charts,
)
from tests.conftest import MARKET_DATA

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PICTURE_MODULES = ("matplotlib", "mplfinance", "PIL")


def run(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stock_agent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or Path(env["STOCK_AGENT_HOME"]).parent,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def csv_rows(symbol: str) -> list[dict[str, str]]:
    with (MARKET_DATA / f"{symbol}.csv").open() as f:
        return list(csv.DictReader(f))


def drop_days(symbol: str, threshold: float, days: int = CHART_DAYS) -> list[str]:
    """The dates, among the last `days` bars, whose 1-day change was at or below `threshold`."""
    rows = csv_rows(symbol)
    closes = [float(r["Close"]) for r in rows]
    start = len(rows) - days
    return [
        rows[i]["Date"]
        for i in range(max(start, 1), len(rows))
        if closes[i] / closes[i - 1] - 1 <= threshold
    ]


def assert_chart_image(png: bytes, panels: dict[str, tuple[int, int, int, int]]) -> Image.Image:
    """A valid PNG of at least 1000x700 whose every panel has something drawn in it."""
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.verify()
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.width >= 1000 and image.height >= 700
    grey = image.convert("L")
    assert set(panels) == {"price", "volume", "rsi"}
    for name, box in panels.items():
        left, top, right, bottom = box
        assert 0 <= left < right <= image.width and 0 <= top < bottom <= image.height, name
        region = ImageStat.Stat(grey.crop(box))
        assert region.stddev[0] > 8, f"the {name} panel looks blank: {region.stddev}"
        # and it is not one flat colour with a frame: many distinct shades
        assert len(grey.crop(box).getcolors(256) or ()) > 8, name
    return image


@pytest.fixture
def app(settings: Settings):
    with App(settings) as app:
        yield app


# --------------------------------------------------------------------------- the series


def test_the_lines_end_on_the_numbers_of_the_analysis(app: App) -> None:
    (a,) = app.analysis.analyze(["AAPL"]).analyses
    bars = app.market.daily_bars("AAPL")
    series = chart_series(bars)
    rows = csv_rows("AAPL")
    assert len(series.dates) == CHART_DAYS
    assert series.dates == tuple(r["Date"] for r in rows[-CHART_DAYS:])
    assert series.closes[-1] == pytest.approx(a.price)
    ind = a.indicators
    expected = {
        "sma_20": ind.sma_20,
        "sma_50": ind.sma_50,
        "sma_200": ind.sma_200,
        "bb_upper": ind.bb_upper,
        "bb_middle": ind.bb_middle,
        "bb_lower": ind.bb_lower,
        "rsi_14": ind.rsi_14,
    }
    for name, value in expected.items():
        assert series.last(name) == pytest.approx(value, abs=0.01), name
    # volume against the 20 days before it, as the analysis measures it
    assert series.last("volume_avg_20") == pytest.approx(a.volume_avg_20d, abs=1)
    # SMA 200 has a value on the first bar drawn: the history covers its warm-up
    assert series.lines["sma_200"][0] == series.lines["sma_200"][0]  # not NaN


def test_alert_days_are_those_at_or_below_the_threshold(app: App) -> None:
    bars = app.market.daily_bars("TSLA")
    expected = drop_days("TSLA", -0.05)
    assert len(expected) >= 3  # the sample data has several ~5 % drops
    series = chart_series(bars, alert_threshold=-0.05)
    assert [series.dates[i] for i, _ in series.alert_days] == expected
    assert all(change <= -0.05 for _, change in series.alert_days)
    assert chart_series(bars).alert_days == ()  # no threshold, no markers


def test_a_symbol_with_one_bar_cannot_be_charted(app: App) -> None:
    one = app.market.daily_bars("NEWCO").last(1)
    with pytest.raises(DataUnavailable, match="too few to chart"):
        chart_series(one)


# --------------------------------------------------------------------------- the picture


def test_the_chart_is_a_large_png_with_three_drawn_panels(app: App) -> None:
    (a,) = app.analysis.analyze(["TSLA"]).analyses
    chart = render_chart(app.market.daily_bars("TSLA"), a, alert_threshold=-0.05)
    image = assert_chart_image(chart.png, dict(chart.panels))
    assert (image.width, image.height) == (chart.width, chart.height)
    # the panels are stacked: price above volume above RSI
    price, volume, rsi = (chart.panels[n] for n in ("price", "volume", "rsi"))
    assert price[3] <= volume[1] + 1 and volume[3] <= rsi[1] + 1
    assert chart.alert_days == tuple(drop_days("TSLA", -0.05))
    assert chart.title.startswith("TSLA  338.23  (-6.1% 1d)")
    assert "as of 2026-11-20" in chart.title and "offline CSV data" in chart.title


def test_the_alert_markers_are_drawn_on_the_price_panel_only(app: App) -> None:
    (a,) = app.analysis.analyze(["TSLA"]).analyses
    bars = app.market.daily_bars("TSLA")
    marked = render_chart(bars, a, alert_threshold=-0.05)
    plain = render_chart(bars, a, alert_threshold=None)
    assert marked.panels == plain.panels
    with_marks = Image.open(io.BytesIO(marked.png)).convert("RGB")
    without = Image.open(io.BytesIO(plain.png)).convert("RGB")

    def changed_pixels(box: tuple[int, int, int, int]) -> int:
        # The palette of each PNG is its own, so a colour may shift a little everywhere; a
        # marker changes pixels a lot.
        diff = ImageChops.difference(with_marks.crop(box), without.crop(box)).convert("L")
        return sum(diff.histogram()[64:])

    assert changed_pixels(marked.panels["price"]) > 40 * len(marked.alert_days)
    assert changed_pixels(marked.panels["volume"]) == 0
    assert changed_pixels(marked.panels["rsi"]) == 0


def same_values(drawn: Sequence[float], expected: Sequence[float]) -> bool:
    """The same numbers, bar for bar (NaN where the indicator has no value yet)."""
    return len(drawn) == len(expected) and all(
        (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9)
        for x, y in zip(map(float, drawn), map(float, expected), strict=True)
    )


def line_of(ax: Any, values: Sequence[float]) -> Any:
    """The line of `ax` that draws `values`, or None."""
    found = [line for line in ax.get_lines() if same_values(line.get_ydata(), values)]
    assert len(found) <= 1, [line.get_label() for line in found]
    return found[0] if found else None


def test_the_figure_draws_every_overlay_on_its_panel(app: App) -> None:
    """The drawn figure itself (not the pixels): each line of the issue, on its panel, with
    the numbers of the series and the label of its legend."""
    import matplotlib.pyplot as plt

    (a,) = app.analysis.analyze(["TSLA"]).analyses
    bars = app.market.daily_bars("TSLA")
    with chart_figure(bars, a, alert_threshold=-0.05) as drawn:
        s, n = drawn.series, len(drawn.series.dates)
        price, volume, rsi = (drawn.axes[name] for name in PANELS)
        assert n == CHART_DAYS
        for name, label in [
            ("sma_20", "SMA 20"),
            ("sma_50", "SMA 50"),
            ("sma_200", "SMA 200"),
            ("bb_upper", "Bollinger (20, 2)"),
        ]:
            line = line_of(price, s.lines[name])
            assert line is not None, f"no {label} line on the price panel"
            assert line.get_label() == label
            assert line_of(volume, s.lines[name]) is None and line_of(rsi, s.lines[name]) is None
        upper, lower = line_of(price, s.lines["bb_upper"]), line_of(price, s.lines["bb_lower"])
        assert lower is not None, "no lower Bollinger Band"
        assert (lower.get_color(), lower.get_linestyle()) == (upper.get_color(), "--")
        # the band between them is shaded
        (band,) = [c for c in price.collections if type(c).__name__ == "FillBetweenPolyCollection"]
        shaded = [float(y) for path in band.get_paths() for y in path.vertices[:, 1]]
        for edge in (s.lines["bb_upper"], s.lines["bb_lower"]):
            assert any(y == pytest.approx(edge[-1]) for y in shaded)
            assert any(y == pytest.approx(edge[n // 2]) for y in shaded)
        legend = [t.get_text() for t in price.get_legend().get_texts()]
        assert legend == [
            "SMA 20", "SMA 50", "SMA 200", "Bollinger (20, 2)", "1-day change at or below -5%"
        ]  # fmt: skip

        average = line_of(volume, s.volume_avg_20)
        assert average is not None and average.get_label() == "20-day average"
        assert [t.get_text() for t in volume.get_legend().get_texts()] == ["20-day average"]

        assert line_of(rsi, s.rsi_14) is not None
        for level in (30.0, 70.0):
            guide = line_of(rsi, [level] * n)
            assert guide is not None, f"no RSI {level:.0f} line"
            assert guide.get_linestyle() == ":"
        assert rsi.get_ylim() == (0.0, 100.0)
        assert list(rsi.get_yticks()) == [30.0, 70.0]
        figure = drawn.figure
    assert figure.number not in plt.get_fignums()  # closed with the block


def test_a_stale_result_says_so_in_the_title(app: App) -> None:
    (a,) = app.analysis.analyze(["AAPL"]).analyses
    names = {f.name for f in dataclasses.fields(a)}
    if "stale" in names:
        stale = dataclasses.replace(a, stale=True)
    else:  # before the data issue adds the field
        stale = dataclasses.replace(a)
        object.__setattr__(stale, "stale", True)
    assert "STALE" not in chart_title(a, "offline")
    assert chart_title(stale, "offline").startswith("STALE DATA, as of 2026-11-20")
    chart = render_chart(app.market.daily_bars("AAPL"), stale)
    assert chart.title.startswith("STALE DATA")


def test_a_short_history_still_draws_every_panel(app: App) -> None:
    (a,) = app.analysis.analyze(["NEWCO"]).analyses
    chart = render_chart(app.market.daily_bars("NEWCO"), a)
    assert_chart_image(chart.png, dict(chart.panels))


# --------------------------------------------------------------------------- files and paths


def test_chart_paths_append_the_symbol_when_there_are_several(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    assert chart_paths(path, ["AAPL"]) == {"AAPL": path}
    assert chart_paths(path, ["AAPL", "BRK-B", "^GSPC", "EURUSD=X"]) == {
        "AAPL": tmp_path / "chart-AAPL.png",
        "BRK-B": tmp_path / "chart-BRK-B.png",
        "^GSPC": tmp_path / "chart-GSPC.png",
        "EURUSD=X": tmp_path / "chart-EURUSD_X.png",
    }


def test_output_paths_are_checked_first(tmp_path: Path) -> None:
    assert check_output_path(tmp_path / "a.png", ".png", "chart") == tmp_path / "a.png"
    with pytest.raises(InvalidInput, match=r"must end in \.png"):
        check_output_path(tmp_path / "a.jpg", ".png", "chart")
    with pytest.raises(InvalidInput, match="no folder"):
        check_output_path(tmp_path / "missing" / "a.png", ".png", "chart")


def test_write_charts_writes_one_file_per_symbol(app: App, tmp_path: Path) -> None:
    analyses = app.analysis.analyze(["AAPL", "MSFT"]).analyses
    written = write_charts(app.market, analyses, tmp_path / "c.png")
    assert [c.path for c in written] == [tmp_path / "c-AAPL.png", tmp_path / "c-MSFT.png"]
    for chart in written:
        assert chart.path is not None and chart.path.read_bytes() == chart.png


def test_analyze_chart_writes_a_chart_per_symbol(cli_env: dict[str, str], tmp_path: Path) -> None:
    ok(run(cli_env, "profile", "set", "alert_threshold", "-5%"))
    report = json.loads(
        ok(run(cli_env, "analyze", "AAPL", "TSLA", "--json", "--chart", str(tmp_path / "c.png")))
    )
    assert [a["symbol"] for a in report] == ["AAPL", "TSLA"]  # stdout is still only JSON
    result = run(cli_env, "analyze", "AAPL", "TSLA", "--chart", str(tmp_path / "d.png"))
    ok(result)
    for symbol in ("AAPL", "TSLA"):
        path = tmp_path / f"d-{symbol}.png"
        assert f"chart: {path} (1400×950)" in result.stderr
        image = Image.open(path)
        assert image.size == (1400, 950)
        assert (tmp_path / f"c-{symbol}.png").read_bytes() == path.read_bytes()
    assert not (tmp_path / "d.png").exists()


def test_analyze_chart_of_one_symbol_uses_the_path_as_given(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    ok(run(cli_env, "analyze", "MSFT", "--chart", str(tmp_path / "msft.png")))
    assert Image.open(tmp_path / "msft.png").size == (1400, 950)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["msft.png"]


@pytest.mark.parametrize(
    ("path", "message"),
    [("chart.jpg", "the chart path must end in .png"), ("nowhere/c.png", "no folder 'nowhere'")],
)
def test_a_bad_chart_path_is_one_line_and_writes_nothing(
    cli_env: dict[str, str], tmp_path: Path, path: str, message: str
) -> None:
    result = run(cli_env, "analyze", "AAPL", "--chart", path, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {message}")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- start-up


@pytest.mark.parametrize(
    "args",
    [["analyze", "AAPL", "MSFT", "--json"], ["analyze", "AAPL", "MSFT"], ["profile", "show"]],
)
def test_commands_without_charts_never_import_matplotlib(
    cli_env: dict[str, str], args: list[str]
) -> None:
    script = (
        "import sys\n"
        "from stock_agent.cli import main\n"
        f"code = main({args!r})\n"
        f"print('LOADED', code, sorted(m for m in sys.modules if m.split('.')[0] in {PICTURE_MODULES!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(cli_env["STOCK_AGENT_HOME"]).parent,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last == "LOADED 0 []", result.stdout + result.stderr


def test_a_chart_does_load_them_and_chooses_agg_itself(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The check above can fail: the same probe sees the modules when a chart is drawn. And the
    chart picks Agg itself: the environment asks matplotlib for another backend (svg, which
    would draw the PNG as well), and after the chart the backend is Agg."""
    script = (
        "import sys\n"
        "from stock_agent.cli import main\n"
        f"code = main(['analyze', 'AAPL', '--json', '--chart', {str(tmp_path / 'a.png')!r}])\n"
        "import matplotlib\n"
        "print('LOADED', code, 'matplotlib' in sys.modules, 'mplfinance' in sys.modules,"
        " matplotlib.get_backend().lower())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**cli_env, "MPLBACKEND": "svg"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(cli_env["STOCK_AGENT_HOME"]).parent,
    )
    assert result.stdout.strip().splitlines()[-1] == "LOADED 0 True True agg", result.stderr
    assert Image.open(tmp_path / "a.png").size == (1400, 950)


# --------------------------------------------------------------------------- the chat


@pytest.fixture
def chat(model_env: dict[str, str]):
    env = {**model_env, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "stock_agent", "chat", "--new"],
        env=env,
        cwd=str(Path(env["STOCK_AGENT_HOME"]).parent),
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(40, 160),
        timeout=60,
    )
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_chat_slash_chart(chat: Any, cli_env: dict[str, str], tmp_path: Path) -> None:
    ok(run(cli_env, "profile", "set", "alert_threshold", "-5%"))
    chat.expect_exact("you>")
    chat.sendline("/help")
    chat.expect_exact("/chart SYMBOL [PATH]")
    chat.expect_exact("you>")

    target = tmp_path / "tsla.png"
    chat.sendline(f"/chart tsla {target}")
    marked = len(drop_days("TSLA", -0.05))
    chat.expect_exact(f"chart of TSLA: {target} (1400×950, {marked} alert days marked)")
    chat.expect_exact("you>")
    assert Image.open(target).size == (1400, 950)

    chat.sendline("/chart")
    chat.expect_exact("which symbol?")
    chat.expect_exact("you>")
    chat.sendline(f"/chart AAPL {tmp_path / 'a.gif'}")
    chat.expect_exact("the chart path must end in .png")
    chat.expect_exact("you>")
    chat.sendline("/chart NOSUCH")
    chat.expect_exact("NOSUCH")
    chat.expect_exact("you>")
    chat.sendcontrol("d")
    chat.expect_exact("bye")
    chat.expect(pexpect.EOF)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tsla.png"]


def test_the_sample_chart_in_docs_is_a_small_chart() -> None:
    """The README's picture: made from the sample data with
    `stock-agent analyze TSLA --chart docs/chart-TSLA.png` (alert threshold -5%)."""
    path = Path(__file__).resolve().parent.parent / "docs" / "chart-TSLA.png"
    png = path.read_bytes()
    assert len(png) < 150_000
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1400, 950)
