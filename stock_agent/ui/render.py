"""Rich renderers for the computed analysis report (`stock-agent analyze --no-llm`): the
multi-symbol summary side by side, each symbol's panel, sparklines of the last three months."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stock_agent.core.models import Returns
from stock_agent.ui.sparkline import can_show_blocks, sparkline
from stock_agent.ui.sparkline import change as spark_change

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

    from stock_agent.core.models import Analysis
    from stock_agent.services.market import MarketService

log = logging.getLogger(__name__)

RETURN_KEYS = (*Returns.windows, "ytd")


def fmt_pct(value: float | None, digits: int = 1, sign: bool = True) -> str:
    """A fraction as display text: 0.0523 -> "+5.2%" ("—" when missing)."""
    if value is None:
        return "—"
    return f"{value * 100:+.{digits}f}%" if sign else f"{value * 100:.{digits}f}%"


def fmt_num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _colour(value: float | None, text: str) -> str:
    if value is None or value == 0:
        return text
    return f"[green]{text}[/]" if value > 0 else f"[red]{text}[/]"


# The multi-symbol summary: what a reader compares side by side. When the terminal is too
# narrow for all of them, columns are left out in this order (and the table says which);
# Symbol, Price and 1d always stay. Each panel below the table repeats every figure.
_SUMMARY_DROP_ORDER = ("vs 52w high", "RSI", "1y", "Trend", "Last 3 months", "1m", "Alert")
_KEPT_COLUMNS = ("Symbol", "Price", "1d")
_COLUMN_GAP = 2
SUMMARY_SPARK_WIDTH = 21  # three months of bars, three to a character
PANEL_SPARK_WIDTH = 42


@dataclass(frozen=True)
class _Column:
    header: str
    # each row: the text and the value whose sign colours it (None: no colour)
    cells: list[tuple[str, float | None]]

    @property
    def width(self) -> int:
        return max(len(self.header), *(len(text) for text, _ in self.cells))


@dataclass(frozen=True)
class SummaryLayout:
    """The summary's columns that fit, and the headers of those left out for width."""

    headers: tuple[str, ...]
    left_out: tuple[str, ...]


def _alert_cell(a: Analysis, down: str) -> tuple[str, float | None]:
    if not a.alerts:
        return "none", None
    alert = a.alerts[0]
    return f"{down} {fmt_pct(alert.threshold, 0)}", -1.0


def _spark_cell(
    closes: Sequence[float] | None, width: int, ascii_only: bool
) -> tuple[str, float | None]:
    if not closes:
        return "—", None
    return sparkline(closes, width, ascii_only=ascii_only), spark_change(closes)


def _summary_columns(
    analyses: Sequence[Analysis],
    closes: Mapping[str, Sequence[float]],
    ascii_only: bool,
) -> list[_Column]:
    down = "v" if ascii_only else "▼"  # an alert is a drop
    trend_sign = {"up": 1.0, "down": -1.0}
    return [
        _Column("Symbol", [(a.symbol, None) for a in analyses]),
        _Column("Price", [(fmt_num(a.price), None) for a in analyses]),
        _Column(
            "Last 3 months",
            [_spark_cell(closes.get(a.symbol), SUMMARY_SPARK_WIDTH, ascii_only) for a in analyses],
        ),
        _Column("1d", [(fmt_pct(a.returns.d1), a.returns.d1) for a in analyses]),
        _Column("1m", [(fmt_pct(a.returns.m1), a.returns.m1) for a in analyses]),
        _Column("1y", [(fmt_pct(a.returns.y1), a.returns.y1) for a in analyses]),
        _Column("RSI", [(fmt_num(a.indicators.rsi_14, 1), None) for a in analyses]),
        _Column("Trend", [(a.trend or "—", trend_sign.get(a.trend or "")) for a in analyses]),
        _Column("vs 52w high", [(fmt_pct(a.pct_from_high_52w), None) for a in analyses]),
        _Column("Alert", [_alert_cell(a, down) for a in analyses]),
    ]


def _fit(columns: list[_Column], width: int) -> tuple[list[_Column], list[str]]:
    def needed(cols: list[_Column]) -> int:
        return sum(c.width for c in cols) + _COLUMN_GAP * (len(cols) - 1)

    left_out: list[str] = []
    for name in _SUMMARY_DROP_ORDER:
        if needed(columns) <= width:
            break
        columns = [c for c in columns if c.header != name]
        left_out.append(name)
    return columns, left_out


def summary_layout(
    analyses: Sequence[Analysis],
    width: int = 100,
    closes: Mapping[str, Sequence[float]] | None = None,
) -> SummaryLayout:
    """Which summary columns fit in `width`, and which were left out."""
    columns, left_out = _fit(_summary_columns(analyses, closes or {}, False), width)
    return SummaryLayout(tuple(c.header for c in columns), tuple(left_out))


def summary_table(
    analyses: Sequence[Analysis],
    width: int = 100,
    closes: Mapping[str, Sequence[float]] | None = None,
    *,
    ascii_only: bool = False,
) -> RenderableType:
    """One row per symbol, with as many columns as fit in `width` (numbers are never cut
    short); when some are left out, a line under the table names them."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    columns, left_out = _fit(_summary_columns(analyses, closes or {}, ascii_only), width)
    table = Table(
        title="Summary",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 0, 0, _COLUMN_GAP - 1),  # plus the one-space column divider
        pad_edge=False,
    )
    for i, column in enumerate(columns):
        justify = "left" if i == 0 or column.header == "Last 3 months" else "right"
        table.add_column(column.header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in range(len(analyses)):
        table.add_row(*(_colour(c.cells[row][1], c.cells[row][0]) for c in columns))
    if not left_out:
        return table
    note = Text(
        f"left out to fit {width} columns: {', '.join(left_out)} (each symbol's panel has them)",
        style="dim",
    )
    return Group(table, note)


def spark_text(
    closes: Sequence[float] | None, width: int, *, ascii_only: bool = False
) -> Text | None:
    """The "last 3 months" line of a panel: the sparkline, green when the closes rose over the
    window and red when they fell, and the change (None without closes to draw)."""
    from rich.text import Text

    line = sparkline(closes or (), width, ascii_only=ascii_only)
    if not line:
        return None
    moved = spark_change(closes or ())
    style = "" if not moved else ("green" if moved > 0 else "red")
    text = Text("3 months ", style="dim")
    text.append(line, style=style)
    text.append(f" {fmt_pct(moved)}", style=style)
    return text


def symbol_panel(
    a: Analysis,
    closes: Sequence[float] | None = None,
    *,
    spark_width: int = PANEL_SPARK_WIDTH,
    ascii_only: bool = False,
) -> RenderableType:
    """One symbol's numbers in a panel, with the sparkline of `closes` (its last three months)
    on top when given."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    ind = a.indicators
    r = a.returns.to_dict()
    price = a.price

    returns = Table.grid(padding=(0, 2))
    for _ in RETURN_KEYS:
        returns.add_column(justify="right")
    returns.add_row(*(f"[dim]{k}[/]" for k in RETURN_KEYS))
    returns.add_row(*(_colour(r.get(k), fmt_pct(r.get(k))) for k in RETURN_KEYS))

    levels = Table.grid(padding=(0, 2))
    levels.add_column(style="dim")
    levels.add_column(justify="right")
    levels.add_column(style="dim")
    levels.add_column(justify="right")
    rows = [
        ("SMA 20", fmt_num(ind.sma_20), "RSI 14", fmt_num(ind.rsi_14, 1)),
        ("SMA 50", fmt_num(ind.sma_50), "MACD", fmt_num(ind.macd, 3)),
        ("SMA 200", fmt_num(ind.sma_200), "MACD signal", fmt_num(ind.macd_signal, 3)),
        ("EMA 20", fmt_num(ind.ema_20), "MACD hist", fmt_num(ind.macd_hist, 3)),
        ("BB upper", fmt_num(ind.bb_upper), "ATR 14", fmt_num(ind.atr_14)),
        (
            "BB middle",
            fmt_num(ind.bb_middle),
            "Volatility 20d",
            fmt_pct(ind.volatility_20d, sign=False),
        ),
        (
            "BB lower",
            fmt_num(ind.bb_lower),
            "Volatility 1y",
            fmt_pct(ind.volatility_1y, sign=False),
        ),
        ("52w high", fmt_num(a.high_52w), "Max drawdown 1y", fmt_pct(ind.max_drawdown_1y)),
        (
            "52w low",
            fmt_num(a.low_52w),
            f"Beta vs {a.benchmark or '—'}",
            fmt_num(ind.beta),
        ),
    ]
    for row in rows:
        levels.add_row(*row)

    parts: list[Any] = [returns, Text(""), levels]
    if a.stale:  # the last good result, served because the source failed: said first
        from stock_agent.core.calendar import stale_note

        parts[:0] = [Text(f"stale: {stale_note(a.fetched_at, a.source)}", style="bold yellow")]
    spark = spark_text(closes, spark_width, ascii_only=ascii_only)
    if spark is not None:
        parts[:0] = [spark, Text("")]
    extra = []
    if a.trend is not None:
        extra.append(f"trend {a.trend}")
    if a.pct_from_high_52w is not None:
        extra.append(f"{fmt_pct(a.pct_from_high_52w)} from the 52-week high")
    if a.volume_ratio_20d is not None:
        extra.append(f"volume {fmt_num(a.volume_ratio_20d, 2)}× its 20-day average")
    if extra:
        parts.append(Text(" · ".join(extra), style="dim"))
    if a.signals:
        parts.append(Text(""))
        parts.append(Text("Signals", style="bold"))
        parts.extend(Text(f"  • {s.text}") for s in a.signals)
    if a.alerts:
        parts.append(Text(""))
        parts.extend(Text(f"  ▼ {al.text}", style="bold red") for al in a.alerts)
    position = a.position
    if position:
        parts.append(Text(""))
        parts.append(
            Text(
                f"Position: {position.shares} shares ≈ {fmt_num(position.value)} "
                f"({fmt_pct(position.pct_of_portfolio, sign=False)} of {fmt_num(position.portfolio_size, 0)}), "
                f"stop {fmt_num(position.stop_price)}",
            )
        )
        if position.method:
            parts.append(Text(f"  {position.method}", style="dim"))
    if a.notes:
        parts.append(Text(""))
        parts.extend(Text(f"  note: {n}", style="dim") for n in a.notes)
    title = f"[bold]{a.symbol}[/]  {fmt_num(price)}  [dim]as of {a.as_of}[/]"
    if a.stale:
        title += "  [bold yellow]stale[/]"
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


def print_report(
    console: Console,
    analyses: Sequence[Analysis],
    closes: Mapping[str, Sequence[float]] | None = None,
) -> None:
    """The summary (for several symbols) and each symbol's panel, with sparklines of `closes`
    (symbol -> its last three months). On a terminal whose encoding cannot show the unicode
    glyphs the report is drawn in ASCII instead of failing."""
    closes = closes or {}
    ascii_only = not can_show_blocks(console.encoding)
    if ascii_only:
        with console.capture() as captured:
            _print_report(console, analyses, closes, ascii_only=True)
        console.file.write(to_ascii(captured.get(), console.encoding))
        console.file.flush()
    else:
        _print_report(console, analyses, closes, ascii_only=False)


def _print_report(
    console: Console,
    analyses: Sequence[Analysis],
    closes: Mapping[str, Sequence[float]],
    *,
    ascii_only: bool,
) -> None:
    if len(analyses) > 1:
        console.print(summary_table(analyses, console.width, closes, ascii_only=ascii_only))
        console.print()
    spark_width = max(10, min(PANEL_SPARK_WIDTH, console.width - 20))
    for a in analyses:
        console.print(
            symbol_panel(a, closes.get(a.symbol), spark_width=spark_width, ascii_only=ascii_only)
        )


# What the report's own glyphs become on a terminal that cannot show them.
_ASCII_GLYPHS = str.maketrans(
    {"—": "-", "–": "-", "×": "x", "▼": "v", "•": "*", "≈": "~", "·": "|", "…": "...", "≤": "<="}
)


def to_ascii(text: str, encoding: str) -> str:
    """`text` with the report's glyphs in ASCII and anything else `encoding` cannot hold as "?"."""
    return text.translate(_ASCII_GLYPHS).encode(encoding, "replace").decode(encoding)


def fetch_closes(
    market: MarketService, symbols: Sequence[str], bars: int = 63
) -> dict[str, tuple[float, ...]]:
    """Each symbol's last `bars` closes (three months by default) for its sparkline, fetched
    concurrently through the cache. A symbol whose closes cannot be had simply has none: a
    sparkline never fails a report."""
    from concurrent.futures import ThreadPoolExecutor

    def one(symbol: str) -> tuple[float, ...]:
        try:
            return market.recent_closes(symbol, bars).closes
        except Exception:  # a missing sparkline is not worth failing the report
            log.debug("no sparkline closes for %s", symbol, exc_info=True)
            return ()

    unique = list(dict.fromkeys(symbols))
    if len(unique) <= 1:
        found = [one(s) for s in unique]
    else:
        with ThreadPoolExecutor(max_workers=min(8, len(unique))) as pool:
            found = list(pool.map(one, unique))
    return {s: c for s, c in zip(unique, found, strict=True) if c}
