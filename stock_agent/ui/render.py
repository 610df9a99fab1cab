"""Rich renderers for the computed analysis report (`stock-agent analyze --no-llm`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stock_agent.core.models import Returns

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from stock_agent.core.models import Analysis

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


# Summary columns in the order they are given up when the terminal is too narrow for all of
# them (each panel below the table repeats every figure, so nothing is lost).
_SUMMARY_DROP_ORDER = ("Beta", "Vol 1y", "6m", "3m", "5d", "ytd", "RSI")
_COLUMN_GAP = 2


def summary_table(analyses: list[Analysis], width: int = 100) -> RenderableType:
    """One row per symbol, with as many columns as fit in `width`: numbers are never cut short."""
    from rich import box
    from rich.table import Table

    columns: list[tuple[str, list[tuple[str, float | None]]]] = [
        ("Symbol", [(a.symbol, None) for a in analyses]),
        ("Price", [(fmt_num(a.price), None) for a in analyses]),
    ]
    for key in RETURN_KEYS:
        values = [a.returns.get(key) for a in analyses]
        columns.append((key, [(fmt_pct(v), v) for v in values]))
    indicators = [a.indicators for a in analyses]
    columns += [
        ("RSI", [(fmt_num(i.rsi_14, 1), None) for i in indicators]),
        ("Vol 1y", [(fmt_pct(i.volatility_1y, sign=False), None) for i in indicators]),
        ("Beta", [(fmt_num(i.beta), None) for i in indicators]),
    ]

    def needed(cols: list[tuple[str, list[tuple[str, float | None]]]]) -> int:
        widths = [max(len(h), *(len(c) for c, _ in cells)) for h, cells in cols]
        return sum(widths) + _COLUMN_GAP * (len(widths) - 1)

    for name in _SUMMARY_DROP_ORDER:
        if needed(columns) <= width:
            break
        columns = [c for c in columns if c[0] != name]

    table = Table(
        title="Summary",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 0, 0, _COLUMN_GAP - 1),  # plus the one-space column divider
        pad_edge=False,
    )
    for i, (header, _) in enumerate(columns):
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
    for row in range(len(analyses)):
        table.add_row(*(_colour(cells[row][1], cells[row][0]) for _, cells in columns))
    return table


def symbol_panel(a: Analysis) -> RenderableType:
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
    extra = []
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
        parts.extend(Text(f"  ▲ {al.text}", style="bold red") for al in a.alerts)
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
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


def print_report(console: Console, analyses: list[Analysis]) -> None:
    if len(analyses) > 1:
        console.print(summary_table(analyses, console.width))
        console.print()
    for a in analyses:
        console.print(symbol_panel(a))
