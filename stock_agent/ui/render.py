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


def summary_table(analyses: list[dict[str, Any]]) -> RenderableType:
    from rich.table import Table

    table = Table(title="Summary", title_justify="left", header_style="bold")
    table.add_column("Symbol")
    table.add_column("Price", justify="right")
    for key in RETURN_KEYS:
        table.add_column(key, justify="right")
    table.add_column("RSI", justify="right")
    table.add_column("Vol 1y", justify="right")
    table.add_column("Beta", justify="right")
    for a in analyses:
        r, ind = a.get("returns", {}), a.get("indicators", {})
        table.add_row(
            a["symbol"],
            num(a.get("price")),
            *(_colour(r.get(k), pct(r.get(k))) for k in RETURN_KEYS),
            num(ind.get("rsi_14"), 1),
            pct(ind.get("volatility_1y"), sign=False),
            num(ind.get("beta")),
        )
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
        console.print(summary_table(analyses))
        console.print()
    for a in analyses:
        console.print(symbol_panel(a))
