"""Charts of a symbol's last year: candlesticks with SMA 20/50/200 and the Bollinger Bands, a
volume panel with its 20-day average, an RSI(14) panel with the 30 and 70 lines, and a marker
on each day whose 1-day change was at or below the user's alert threshold.

mplfinance on matplotlib with the Agg backend (no display needed). Both are imported when a
chart is drawn, never when this module is: other commands start as fast as before. The
indicators are the core's own (`core.indicators`, TA-Lib conventions), so the lines end
exactly on the numbers the report prints.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stock_agent.errors import DataUnavailable, InvalidInput

if TYPE_CHECKING:
    from stock_agent.app import App
    from stock_agent.core.models import Analysis, DailyBars
    from stock_agent.services.market import MarketService

CHART_DAYS = 252  # trading days drawn: one year
WIDTH_PX, HEIGHT_PX, DPI = 1400, 950, 100
PANELS = ("price", "volume", "rsi")
SOURCE_NAMES = {"offline": "offline CSV data", "yfinance": "Yahoo Finance"}


def source_name(source: str | None) -> str:
    """A data source's name for people ("yfinance" -> "Yahoo Finance")."""
    if not source:
        return "unknown source"
    return SOURCE_NAMES.get(source, source)


@dataclass(frozen=True)
class ChartSeries:
    """What a chart draws, worked out from the bars (pure numbers, no plotting): the last
    `CHART_DAYS` bars and each indicator over them (NaN where it has no value yet), computed
    on the whole history so the 200-day average starts on the first bar drawn when it can."""

    symbol: str
    dates: tuple[str, ...]
    opens: tuple[float, ...]
    highs: tuple[float, ...]
    lows: tuple[float, ...]
    closes: tuple[float, ...]
    volumes: tuple[float, ...]
    lines: Mapping[str, tuple[float, ...]]  # sma_20 sma_50 sma_200 bb_upper bb_middle bb_lower
    rsi_14: tuple[float, ...]
    volume_avg_20: tuple[float, ...]
    # (index into the drawn bars, 1-day change) of each day at or below the threshold
    alert_days: tuple[tuple[int, float], ...]

    def last(self, name: str) -> float | None:
        """The last value of a line ("sma_20", ..., "rsi_14", "volume_avg_20"), None if NaN."""
        values = {**self.lines, "rsi_14": self.rsi_14, "volume_avg_20": self.volume_avg_20}[name]
        value = values[-1] if values else math.nan
        return None if math.isnan(value) else value


def chart_series(
    bars: DailyBars, *, alert_threshold: float | None = None, days: int = CHART_DAYS
) -> ChartSeries:
    """The series a chart of `bars` draws: its last `days` bars with their indicators, and
    the days whose 1-day change was at or below `alert_threshold` (a fraction, e.g. -0.05)."""
    import numpy as np

    from stock_agent.core import indicators as ind

    if len(bars) < 2:
        raise DataUnavailable(
            f"{bars.symbol}: {len(bars)} daily bar(s) is too few to chart",
            fix="a chart needs at least two days of data",
        )
    close = np.asarray(bars.closes, dtype=np.float64)
    volume = np.asarray(bars.volumes, dtype=np.float64)
    upper, middle, lower = ind.bbands(close, 20, 2.0)
    full = {
        "sma_20": ind.sma(close, 20),
        "sma_50": ind.sma(close, 50),
        "sma_200": ind.sma(close, 200),
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
    }
    rsi = ind.rsi(close, 14)
    # Like the analysis: each day's volume against the 20 days before it, so a spike does not
    # lift its own yardstick.
    volume_avg = np.full(volume.shape, np.nan)
    volume_avg[1:] = ind.sma(volume, 20)[:-1]
    change = np.full(close.shape, np.nan)
    change[1:] = close[1:] / close[:-1] - 1.0

    start = max(0, len(bars) - days)

    def cut(values: Any) -> tuple[float, ...]:
        return tuple(float(v) for v in values[start:])

    alerts: tuple[tuple[int, float], ...] = ()
    if alert_threshold is not None:
        alerts = tuple(
            (i - start, float(change[i]))
            for i in range(max(start, 1), len(bars))
            if change[i] <= alert_threshold
        )
    return ChartSeries(
        symbol=bars.symbol,
        dates=bars.dates[start:],
        opens=bars.opens[start:],
        highs=bars.highs[start:],
        lows=bars.lows[start:],
        closes=bars.closes[start:],
        volumes=bars.volumes[start:],
        lines={name: cut(values) for name, values in full.items()},
        rsi_14=cut(rsi),
        volume_avg_20=cut(volume_avg),
        alert_days=alerts,
    )


@dataclass(frozen=True)
class Chart:
    """A drawn chart: the PNG, its size, and where each panel is in it (left, top, right,
    bottom in pixels from the top-left corner), for a caller that crops or checks a panel."""

    symbol: str
    png: bytes
    width: int
    height: int
    panels: Mapping[str, tuple[int, int, int, int]]
    title: str
    alert_days: tuple[str, ...]
    path: Path | None = None


def chart_title(analysis: Analysis, source: str | None) -> str:
    """The title of a symbol's chart: price, 1-day change, as-of date and source; a stale
    result says so first."""
    from stock_agent.ui.render import fmt_pct

    title = (
        f"{analysis.symbol}  {analysis.price:,.2f}  ({fmt_pct(analysis.returns.d1)} 1d)"
        f"  ·  as of {analysis.as_of}  ·  {source_name(source)}"
    )
    if getattr(analysis, "stale", False):
        title = f"STALE DATA, as of {analysis.as_of}: {title}"
    return title


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (left alone if the process already chose one)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class ChartFigure:
    """A chart as drawn, before it becomes a PNG: the matplotlib figure, the axes of each
    panel (by name, as in PANELS), the series drawn and the title."""

    figure: Any
    axes: Mapping[str, Any]
    series: ChartSeries
    title: str


@contextlib.contextmanager
def chart_figure(
    bars: DailyBars,
    analysis: Analysis,
    *,
    alert_threshold: float | None = None,
    days: int = CHART_DAYS,
) -> Iterator[ChartFigure]:
    """Draw `analysis`'s symbol from `bars` (its daily bars, the whole history the analysis
    used) as a figure of WIDTH_PX x HEIGHT_PX pixels, closed when the block ends (pyplot
    keeps every open figure)."""
    plt = _pyplot()
    import mplfinance as mpf
    import numpy as np
    import pandas as pd

    from stock_agent.ui.render import fmt_pct

    series = chart_series(bars, alert_threshold=alert_threshold, days=days)
    frame = pd.DataFrame(
        {
            "Open": series.opens,
            "High": series.highs,
            "Low": series.lows,
            "Close": series.closes,
            "Volume": series.volumes,
        },
        index=pd.DatetimeIndex(pd.to_datetime(list(series.dates)), name="Date"),
    )
    n = len(frame)

    def drawable(values: Sequence[float]) -> bool:
        return any(not math.isnan(v) for v in values)

    plots = []
    styles = {
        "sma_20": ("SMA 20", "#f28e2b", "-"),
        "sma_50": ("SMA 50", "#4e79a7", "-"),
        "sma_200": ("SMA 200", "#8c564b", "-"),
        "bb_upper": ("Bollinger (20, 2)", "#9c9c9c", "--"),
        "bb_lower": (None, "#9c9c9c", "--"),
    }
    for name, (label, colour, style) in styles.items():
        values = series.lines[name]
        if drawable(values):
            extra = {"label": label} if label else {}
            plots.append(
                mpf.make_addplot(
                    list(values),
                    color=colour,
                    linestyle=style,
                    width=1.1,
                    secondary_y=False,
                    **extra,
                )
            )
    if series.alert_days:
        marks = [math.nan] * n
        for i, _ in series.alert_days:
            marks[i] = series.highs[i] * 1.02
        plots.append(
            mpf.make_addplot(
                marks,
                type="scatter",
                marker="v",
                markersize=70,
                color="#d62728",
                secondary_y=False,
                label=f"1-day change at or below {fmt_pct(alert_threshold, 0)}",
            )
        )
    if drawable(series.volume_avg_20):
        plots.append(
            mpf.make_addplot(
                list(series.volume_avg_20),
                panel=1,
                color="#f28e2b",
                width=1.1,
                secondary_y=False,
                label="20-day average",
            )
        )
    if drawable(series.rsi_14):
        plots.append(
            mpf.make_addplot(
                list(series.rsi_14),
                panel=2,
                color="#4e79a7",
                width=1.1,
                ylabel="RSI 14",
                secondary_y=False,
            )
        )
    for level in (70.0, 30.0):
        plots.append(
            mpf.make_addplot(
                [level] * n,
                panel=2,
                color="#d62728",
                linestyle=":",
                width=1.0,
                ylim=(0, 100),
                secondary_y=False,
            )
        )

    style = mpf.make_mpf_style(
        base_mpf_style="yahoo", gridstyle=":", gridcolor="#dddddd", facecolor="white"
    )
    fill: Any = None
    upper, lower = series.lines["bb_upper"], series.lines["bb_lower"]
    if drawable(upper):
        fill = {
            "y1": np.asarray(upper),
            "y2": np.asarray(lower),
            "alpha": 0.08,
            "color": "#4e79a7",
        }
    kwargs: dict[str, Any] = {"fill_between": fill} if fill is not None else {}
    fig, axes = mpf.plot(
        frame,
        type="candle",
        style=style,
        volume=True,
        addplot=plots,
        panel_ratios=(5, 1.6, 1.6),
        figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI),
        ylabel="Price",
        ylabel_lower="Volume",
        datetime_format="%b %Y" if n > 60 else "%d %b",
        xrotation=0,
        returnfig=True,
        scale_padding={"left": 0.35, "right": 0.75, "top": 0.9, "bottom": 0.55},
        warn_too_much_data=10_000,
        **kwargs,
    )
    try:
        title = chart_title(analysis, bars.source)
        stale = bool(getattr(analysis, "stale", False))
        fig.suptitle(title, fontsize=14, fontweight="bold", color="#b00020" if stale else "black")
        price_ax, volume_ax, rsi_ax = axes[0], axes[2], axes[4]
        if price_ax.get_legend_handles_labels()[0]:
            price_ax.legend(loc="upper left", fontsize=9, framealpha=0.85, ncol=3)
        if drawable(series.volume_avg_20):
            volume_ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
        rsi_ax.set_yticks([30, 70])
        if not drawable(series.rsi_14):
            rsi_ax.text(
                0.5,
                0.5,
                "RSI(14) needs 15 days of data",
                transform=rsi_ax.transAxes,
                ha="center",
                va="center",
                color="#666666",
            )
        panels = dict(zip(PANELS, (price_ax, volume_ax, rsi_ax), strict=True))
        yield ChartFigure(figure=fig, axes=panels, series=series, title=title)
    finally:
        plt.close(fig)


def render_chart(
    bars: DailyBars,
    analysis: Analysis,
    *,
    alert_threshold: float | None = None,
    days: int = CHART_DAYS,
) -> Chart:
    """Draw `analysis`'s symbol from `bars` (its daily bars, the whole history the analysis
    used): a PNG of WIDTH_PX x HEIGHT_PX pixels."""
    with chart_figure(bars, analysis, alert_threshold=alert_threshold, days=days) as drawn:
        fig = drawn.figure
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        width, height = (round(v) for v in fig.canvas.get_width_height())
        panels = {}
        for name, ax in drawn.axes.items():
            box = ax.get_window_extent()
            panels[name] = (
                math.ceil(box.x0),
                math.ceil(height - box.y1),
                math.floor(box.x1),
                math.floor(height - box.y0),
            )
    series = drawn.series
    return Chart(
        symbol=series.symbol,
        png=compact_png(buffer.getvalue()),
        width=width,
        height=height,
        panels=panels,
        title=drawn.title,
        alert_days=tuple(series.dates[i] for i, _ in series.alert_days),
    )


def compact_png(png: bytes) -> bytes:
    """`png` as a 256-colour palette image: about a third of the size, and a chart's flat
    colours, thin lines and faint band survive it (median cut keeps the rare colours)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        palette = image.convert("RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


# --------------------------------------------------------------------------- files


def check_output_path(path: Path, suffix: str, what: str) -> Path:
    """`path` if a `what` file can be written there: it ends in `suffix` and its folder
    exists. Checked before any work, so a typo fails in one line and at once."""
    if path.suffix.lower() != suffix:
        raise InvalidInput(
            f"the {what} path must end in {suffix}, got {str(path)!r}",
            fix=f"e.g. {path.with_suffix(suffix).name}",
        )
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidInput(
            f"no folder {str(folder)!r} for the {what}", fix="create it or choose another path"
        )
    return path


def chart_paths(path: Path, symbols: Sequence[str]) -> dict[str, Path]:
    """Where each symbol's chart goes: `path` itself for one symbol; for several, the symbol
    appended to its name (chart.png -> chart-AAPL.png, chart-MSFT.png)."""
    unique = list(dict.fromkeys(symbols))
    if len(unique) == 1:
        return {unique[0]: path}
    return {s: path.with_name(f"{path.stem}-{_safe_name(s)}{path.suffix}") for s in unique}


def _safe_name(symbol: str) -> str:
    # Symbols hold letters, digits and `. - ^ =`; `^` and `=` are awkward in file names.
    return symbol.replace("^", "").replace("=", "_")


def draw_charts(
    market: MarketService,
    analyses: Sequence[Analysis],
    *,
    alert_threshold: float | None = None,
) -> list[Chart]:
    """Each analysis drawn from its symbol's daily bars (through the cache), in order."""
    return [
        render_chart(market.daily_bars(a.symbol), a, alert_threshold=alert_threshold)
        for a in analyses
    ]


def write_charts(
    market: MarketService,
    analyses: Sequence[Analysis],
    path: Path,
    *,
    alert_threshold: float | None = None,
) -> list[Chart]:
    """Draw each analysis and write it as a PNG (see `chart_paths` for the names)."""
    check_output_path(path, ".png", "chart")
    paths = chart_paths(path, [a.symbol for a in analyses])
    written = []
    for chart in draw_charts(market, analyses, alert_threshold=alert_threshold):
        target = paths[chart.symbol]
        target.write_bytes(chart.png)
        written.append(
            Chart(
                chart.symbol,
                chart.png,
                chart.width,
                chart.height,
                chart.panels,
                chart.title,
                chart.alert_days,
                path=target,
            )
        )
    return written


CHART_USAGE = "/chart SYMBOL [PATH.png]"


def chart_command(app: App, user_id: str, line: str) -> str:
    """The chat's `/chart SYMBOL [PATH]` (`line` as typed): draw SYMBOL, with the user's alert
    threshold, to PATH (default `chart-SYMBOL.png` in the current folder); the line to show."""
    parts = line.split(None, 1)[1:]
    parts = parts[0].split(None, 1) if parts else []
    if not parts:
        raise InvalidInput("which symbol?", fix=f"usage: {CHART_USAGE}")
    from stock_agent.core.symbols import normalize_symbol

    symbol = normalize_symbol(parts[0])
    raw = parts[1].strip() if len(parts) > 1 else f"chart-{_safe_name(symbol)}.png"
    path = check_output_path(Path(raw).expanduser(), ".png", "chart")
    profile = app.profiles.get(user_id)
    batch = app.analysis.analyze([symbol], profile=profile)
    if batch.errors:
        raise batch.errors[0]
    (chart,) = write_charts(
        app.market, batch.analyses, path, alert_threshold=profile.alert_threshold
    )
    marked = len(chart.alert_days)
    alerts = f", {marked} alert day{'s' if marked != 1 else ''} marked" if marked else ""
    return f"chart of {symbol}: {path.resolve()} ({chart.width}×{chart.height}{alerts})"
