"""Rich renderers for the computed analysis report (`stock-agent analyze --no-llm`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

RETURN_KEYS = ("1d", "5d", "1m", "3m", "6m", "1y", "ytd")


def pct(value: float | None, digits: int = 1, sign: bool = True) -> str:
    if value is None:
        return "—"
    return f"{value * 100:+.{digits}f}%" if sign else f"{value * 100:.{digits}f}%"


def num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _colour(value: float | None, text: str) -> str:
    if value is None or value == 0:
        return text
    return f"[green]{text}[/]" if value > 0 else f"[red]{text}[/]"


# Summary columns in the order they are given up when the terminal is too narrow for all of
# them (each panel below the table repeats every figure, so nothing is lost).
_SUMMARY_DROP_ORDER = ("Beta", "Vol 1y", "6m", "3m", "5d", "ytd", "RSI")
_COLUMN_GAP = 2


def summary_table(analyses: list[dict[str, Any]], width: int = 100) -> RenderableType:
    """One row per symbol, with as many columns as fit in `width`: numbers are never cut short."""
    from rich import box
    from rich.table import Table

    columns: list[tuple[str, list[tuple[str, float | None]]]] = [
        ("Symbol", [(a["symbol"], None) for a in analyses]),
        ("Price", [(num(a.get("price")), None) for a in analyses]),
    ]
    for key in RETURN_KEYS:
        values = [a.get("returns", {}).get(key) for a in analyses]
        columns.append((key, [(pct(v), v) for v in values]))
    indicators = [a.get("indicators", {}) for a in analyses]
    columns += [
        ("RSI", [(num(i.get("rsi_14"), 1), None) for i in indicators]),
        ("Vol 1y", [(pct(i.get("volatility_1y"), sign=False), None) for i in indicators]),
        ("Beta", [(num(i.get("beta")), None) for i in indicators]),
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


def symbol_panel(a: dict[str, Any]) -> RenderableType:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    ind = a.get("indicators", {})
    r = a.get("returns", {})
    price = a.get("price")

    returns = Table.grid(padding=(0, 2))
    for _ in RETURN_KEYS:
        returns.add_column(justify="right")
    returns.add_row(*(f"[dim]{k}[/]" for k in RETURN_KEYS))
    returns.add_row(*(_colour(r.get(k), pct(r.get(k))) for k in RETURN_KEYS))

    levels = Table.grid(padding=(0, 2))
    levels.add_column(style="dim")
    levels.add_column(justify="right")
    levels.add_column(style="dim")
    levels.add_column(justify="right")
    rows = [
        ("SMA 20", num(ind.get("sma_20")), "RSI 14", num(ind.get("rsi_14"), 1)),
        ("SMA 50", num(ind.get("sma_50")), "MACD", num(ind.get("macd"), 3)),
        ("SMA 200", num(ind.get("sma_200")), "MACD signal", num(ind.get("macd_signal"), 3)),
        ("EMA 20", num(ind.get("ema_20")), "MACD hist", num(ind.get("macd_hist"), 3)),
        ("BB upper", num(ind.get("bb_upper")), "ATR 14", num(ind.get("atr_14"))),
        (
            "BB middle",
            num(ind.get("bb_middle")),
            "Volatility 20d",
            pct(ind.get("volatility_20d"), sign=False),
        ),
        (
            "BB lower",
            num(ind.get("bb_lower")),
            "Volatility 1y",
            pct(ind.get("volatility_1y"), sign=False),
        ),
        ("52w high", num(a.get("high_52w")), "Max drawdown 1y", pct(ind.get("max_drawdown_1y"))),
        (
            "52w low",
            num(a.get("low_52w")),
            f"Beta vs {a.get('benchmark') or '—'}",
            num(ind.get("beta")),
        ),
    ]
    for row in rows:
        levels.add_row(*row)

    parts: list[Any] = [returns, Text(""), levels]
    extra = []
    if a.get("pct_from_high_52w") is not None:
        extra.append(f"{pct(a.get('pct_from_high_52w'))} from the 52-week high")
    if a.get("volume_ratio_20d") is not None:
        extra.append(f"volume {num(a.get('volume_ratio_20d'), 2)}× its 20-day average")
    if extra:
        parts.append(Text(" · ".join(extra), style="dim"))
    signals = a.get("signals") or []
    if signals:
        parts.append(Text(""))
        parts.append(Text("Signals", style="bold"))
        parts.extend(Text(f"  • {s.get('text', s)}") for s in signals)
    alerts = a.get("alerts") or []
    if alerts:
        parts.append(Text(""))
        parts.extend(Text(f"  ▲ {al.get('text', al)}", style="bold red") for al in alerts)
    position = a.get("position")
    if position:
        parts.append(Text(""))
        parts.append(
            Text(
                f"Position: {position.get('shares')} shares ≈ {num(position.get('value'))} "
                f"({pct(position.get('pct_of_portfolio'), sign=False)} of {num(position.get('portfolio_size'), 0)}), "
                f"stop {num(position.get('stop_price'))}",
            )
        )
        if position.get("method"):
            parts.append(Text(f"  {position['method']}", style="dim"))
    notes = a.get("notes") or []
    if notes:
        parts.append(Text(""))
        parts.extend(Text(f"  note: {n}", style="dim") for n in notes)
    title = f"[bold]{a['symbol']}[/]  {num(price)}  [dim]as of {a.get('as_of')}[/]"
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


def print_report(console: Console, analyses: list[dict[str, Any]]) -> None:
    if len(analyses) > 1:
        console.print(summary_table(analyses, console.width))
        console.print()
    for a in analyses:
        console.print(symbol_panel(a))
