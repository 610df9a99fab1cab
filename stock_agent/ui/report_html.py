"""The shareable report page (`stock-agent analyze ... --html PATH.html`): one self-contained
HTML file with the summary table, each symbol's chart (base64 PNG), signals, alerts, position
sizing with its method, the model's narration when there is one, as-of times and the source.

Nothing is fetched when the page is opened (no scripts, fonts or style sheets from anywhere),
it reads on a phone (one column, tables that scroll sideways), and every piece of text from
data or a model is escaped: a headline or an answer can never become markup.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stock_agent.sanitize import strip_control
from stock_agent.ui.render import RETURN_KEYS, fmt_num, fmt_pct

if TYPE_CHECKING:
    from stock_agent.core.models import Analysis

_CSS = """
:root { color-scheme: light; --up: #0a7d38; --down: #c62828; --muted: #5f6368; --line: #e3e3e3; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color: #1f1f1f; background: #fafafa; }
main { max-width: 1000px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.25rem; margin: 0; }
h3 { font-size: 1rem; margin: 16px 0 4px; }
.meta, .muted { color: var(--muted); font-size: 0.9rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 16px;
  margin: 16px 0; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 8px; text-align: right; white-space: nowrap; border-bottom: 1px solid
  var(--line); }
th:first-child, td:first-child, table.kv td:nth-child(3) { text-align: left; }
th { font-weight: 600; font-size: 0.85rem; color: var(--muted); }
.up { color: var(--up); } .down { color: var(--down); }
.price { font-size: 1.25rem; font-weight: 600; }
.alert { color: var(--down); font-weight: 600; }
.stale { background: #fff3e0; color: #8a4b00; border-radius: 6px; padding: 2px 8px;
  font-size: 0.85rem; font-weight: 600; }
img.chart { width: 100%; height: auto; display: block; margin: 12px 0; border-radius: 6px; }
ul { padding-left: 20px; margin: 4px 0; }
.narration p { margin: 8px 0; }
footer { color: var(--muted); font-size: 0.85rem; margin: 24px 0; }
@media (max-width: 600px) { main { padding: 8px; } .card { padding: 12px; }
  th, td { padding: 4px 6px; font-size: 0.9rem; } }
"""


@dataclass(frozen=True)
class ReportInputs:
    """What the page shows besides the analyses: where the data came from, when the page was
    made, the user's threshold (to say why no alert fired) and the narration, if any."""

    source: str
    generated_at: str
    alert_threshold: float | None = None
    narration: str | None = None
    user_id: str | None = None


def _e(text: object) -> str:
    return html.escape(strip_control(str(text)), quote=True)


def _signed(value: float | None, text: str | None = None) -> str:
    shown = _e(text if text is not None else fmt_pct(value))
    if value is None or value == 0:
        return shown
    return f'<span class="{"up" if value > 0 else "down"}">{shown}</span>'


def _is_stale(a: Analysis) -> bool:
    return bool(getattr(a, "stale", False))


def _summary(analyses: Sequence[Analysis]) -> str:
    head = (
        "<tr><th>Symbol</th><th>Price</th><th>1d</th><th>1m</th><th>1y</th><th>RSI</th>"
        "<th>Trend</th><th>vs 52w high</th><th>Alert</th><th>As of</th></tr>"
    )
    rows = []
    for a in analyses:
        trend = a.trend or "—"
        trend_cell = _signed({"up": 1.0, "down": -1.0}.get(trend), trend)
        alert = (
            f'<span class="alert">▼ {_e(fmt_pct(a.alerts[0].threshold, 0))}</span>'
            if a.alerts
            else "none"
        )
        as_of = _e(a.as_of) + (' <span class="stale">stale</span>' if _is_stale(a) else "")
        rows.append(
            f'<tr><td><a href="#{_e(_anchor(a.symbol))}">{_e(a.symbol)}</a></td>'
            f"<td>{_e(fmt_num(a.price))}</td>"
            f"<td>{_signed(a.returns.d1)}</td><td>{_signed(a.returns.m1)}</td>"
            f"<td>{_signed(a.returns.y1)}</td><td>{_e(fmt_num(a.indicators.rsi_14, 1))}</td>"
            f"<td>{trend_cell}</td><td>{_e(fmt_pct(a.pct_from_high_52w))}</td>"
            f"<td>{alert}</td><td>{as_of}</td></tr>"
        )
    return (
        '<section class="card"><h2>Summary</h2><div class="scroll"><table>'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _anchor(symbol: str) -> str:
    return "sym-" + "".join(c if c.isalnum() else "-" for c in symbol)


def _returns_table(a: Analysis) -> str:
    values = a.returns.to_dict()
    head = "".join(f"<th>{_e(k)}</th>" for k in RETURN_KEYS)
    cells = "".join(f"<td>{_signed(values.get(k))}</td>" for k in RETURN_KEYS)
    return f'<div class="scroll"><table><tr>{head}</tr><tr>{cells}</tr></table></div>'


def _levels_table(a: Analysis) -> str:
    ind = a.indicators
    rows = [
        ("SMA 20", fmt_num(ind.sma_20), "RSI 14", fmt_num(ind.rsi_14, 1)),
        ("SMA 50", fmt_num(ind.sma_50), "MACD", fmt_num(ind.macd, 3)),
        ("SMA 200", fmt_num(ind.sma_200), "MACD signal", fmt_num(ind.macd_signal, 3)),
        ("BB upper", fmt_num(ind.bb_upper), "ATR 14", fmt_num(ind.atr_14)),
        (
            "BB lower",
            fmt_num(ind.bb_lower),
            "Volatility 1y",
            fmt_pct(ind.volatility_1y, sign=False),
        ),
        ("52w high", fmt_num(a.high_52w), "Max drawdown 1y", fmt_pct(ind.max_drawdown_1y)),
        ("52w low", fmt_num(a.low_52w), f"Beta vs {a.benchmark or '—'}", fmt_num(ind.beta)),
    ]
    body = "".join(
        f"<tr><td>{_e(n1)}</td><td>{_e(v1)}</td><td>{_e(n2)}</td><td>{_e(v2)}</td></tr>"
        for n1, v1, n2, v2 in rows
    )
    return f'<div class="scroll"><table class="kv">{body}</table></div>'


def _alerts(a: Analysis, threshold: float | None) -> str:
    if a.alerts:
        items = "".join(f'<li class="alert">▼ {_e(al.text)}</li>' for al in a.alerts)
        return f"<h3>Alerts</h3><ul>{items}</ul>"
    if threshold is None:
        why = "no alert threshold in the profile (stock-agent profile set alert_threshold -5%)"
    else:
        why = f"1-day change {fmt_pct(a.returns.d1)} is above the threshold {fmt_pct(threshold, 0)}"
    return f'<h3>Alerts</h3><p class="muted">None: {_e(why)}.</p>'


def _position(a: Analysis) -> str:
    p = a.position
    if p is None:
        return (
            '<h3>Position sizing</h3><p class="muted">No portfolio size in the profile '
            "(stock-agent profile set portfolio_size 100000).</p>"
        )
    stop = f", stop {fmt_num(p.stop_price)}" if p.stop_price is not None else ""
    risk = f", risking {fmt_num(p.risk_amount)}" if p.risk_amount is not None else ""
    line = (
        f"{p.shares} shares ≈ {fmt_num(p.value)} "
        f"({fmt_pct(p.pct_of_portfolio, sign=False)} of {fmt_num(p.portfolio_size, 0)}){stop}{risk}"
    )
    method = f'<p class="muted">Method: {_e(p.method)}</p>' if p.method else ""
    return f"<h3>Position sizing</h3><p>{_e(line)}</p>{method}"


def _symbol_section(a: Analysis, chart: bytes | None, inputs: ReportInputs) -> str:
    stale = ""
    if _is_stale(a):
        fetched = getattr(a, "fetched_at", None)
        stale = ' <span class="stale">stale data' + (
            f", fetched {_e(fetched)}</span>" if fetched else "</span>"
        )
    parts = [
        f'<section class="card" id="{_e(_anchor(a.symbol))}">',
        f'<h2>{_e(a.symbol)} <span class="price">{_e(fmt_num(a.price))}</span> '
        f"{_signed(a.returns.d1)}{stale}</h2>",
        f'<p class="meta">as of {_e(a.as_of)} · {_e(inputs.source)}</p>',
    ]
    if chart:
        data = base64.b64encode(chart).decode("ascii")
        alt = (
            f"{a.symbol}: one year of daily candles with SMA 20/50/200 and Bollinger Bands, "
            "volume with its 20-day average, RSI(14) with the 30 and 70 lines"
        )
        parts.append(f'<img class="chart" alt="{_e(alt)}" src="data:image/png;base64,{data}">')
    parts.append(_returns_table(a))
    parts.append("<h3>Levels</h3>" + _levels_table(a))
    extra = []
    if a.trend:
        extra.append(f"trend {a.trend}")
    if a.pct_from_high_52w is not None:
        extra.append(f"{fmt_pct(a.pct_from_high_52w)} from the 52-week high")
    if a.volume_ratio_20d is not None:
        extra.append(f"volume {fmt_num(a.volume_ratio_20d, 2)}× its 20-day average")
    if extra:
        parts.append(f'<p class="muted">{_e(" · ".join(extra))}</p>')
    if a.signals:
        items = "".join(f"<li>{_e(s.text)}</li>" for s in a.signals)
        parts.append(f"<h3>Signals</h3><ul>{items}</ul>")
    parts.append(_alerts(a, inputs.alert_threshold))
    parts.append(_position(a))
    if a.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in a.notes)
        parts.append(f'<h3>Notes</h3><ul class="muted">{items}</ul>')
    parts.append("</section>")
    return "".join(parts)


def narration_html(text: str) -> str:
    """The model's answer (Markdown) as HTML with raw HTML in it shown as text, and links
    only of the usual kinds (markdown-it refuses `javascript:` and the like)."""
    clean = strip_control(text)
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # pragma: no cover - rich depends on markdown-it-py
        return f'<p style="white-space: pre-wrap">{html.escape(clean)}</p>'
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    return str(md.render(clean))


def build_report(
    analyses: Sequence[Analysis],
    inputs: ReportInputs,
    charts: Mapping[str, bytes] | None = None,
) -> str:
    """The whole page, as text."""
    charts = charts or {}
    symbols = ", ".join(a.symbol for a in analyses)
    dates = sorted({a.as_of for a in analyses})
    as_of = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else "—"
    who = f" for {inputs.user_id}" if inputs.user_id else ""
    stale = [a.symbol for a in analyses if _is_stale(a)]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>stock-agent report: {_e(symbols)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<header><h1>Stock report: {_e(symbols)}</h1>",
        f'<p class="meta">Data as of {_e(as_of)} · source: {_e(inputs.source)} · '
        f"made {_e(inputs.generated_at)}{_e(who)} by stock-agent</p>",
    ]
    if stale:
        parts.append(
            f'<p><span class="stale">stale</span> the latest data could not be had for '
            f"{_e(', '.join(stale))}: their figures are from the last good fetch.</p>"
        )
    parts.append("</header>")
    parts.append(_summary(analyses))
    if inputs.narration and inputs.narration.strip():
        parts.append(
            '<section class="card narration"><h2>The agent\'s reading</h2>'
            f"{narration_html(inputs.narration)}</section>"
        )
    parts.extend(_symbol_section(a, charts.get(a.symbol), inputs) for a in analyses)
    parts.append(
        "<footer>Computed from daily bars; not investment advice. "
        f"Source: {_e(inputs.source)}.</footer></main></body></html>"
    )
    return "\n".join(parts)


def write_report(
    path: Path,
    analyses: Sequence[Analysis],
    inputs: ReportInputs,
    charts: Mapping[str, bytes] | None = None,
) -> Path:
    """Write the page to `path` (UTF-8) and return it."""
    path.write_text(build_report(analyses, inputs, charts), encoding="utf-8")
    return path
