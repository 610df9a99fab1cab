"""The typed results as compact text for the model: rounded numbers, percentages instead of
fractions, at most ~1,500 characters per symbol, no raw tables. What the model reads of a
result is decided here; what the result *is* lives in the core models."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from stock_agent.core import numbers as num
from stock_agent.core.calendar import stale_note
from stock_agent.core.limits import MAX_TOOL_CHARS_PER_SYMBOL
from stock_agent.core.models import Analysis, Fundamentals, News, Profile, Quote
from stock_agent.errors import StockAgentError

MAX_CHARS_PER_SYMBOL = MAX_TOOL_CHARS_PER_SYMBOL


def error_text(exc: BaseException) -> str:
    """One line for the model. Our own errors carry their fix; anything else is named."""
    if isinstance(exc, StockAgentError):
        return exc.one_line()
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
        )
        return f"error: invalid arguments: {problems}"
    return f"error: {type(exc).__name__}: {exc}"


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def clip(text: Any, limit: int) -> Any:
    if isinstance(text, str) and len(text) > limit:
        return text[: limit - 1].rstrip() + "…"
    return text


def fit(payload: dict[str, Any], limit: int = MAX_CHARS_PER_SYMBOL) -> str:
    """Compact JSON of `payload` within `limit` characters: long strings are shortened, then
    the last (least important) keys are dropped and named under `omitted`."""
    text = compact_json(payload)
    if len(text) <= limit:
        return text
    payload = {k: clip(v, 200) for k, v in payload.items()}
    omitted: list[str] = []
    while True:
        text = compact_json({**payload, "omitted": omitted} if omitted else payload)
        if len(text) <= limit or len(payload) <= 1:
            break
        omitted.insert(0, payload.popitem()[0])
    return text if len(text) <= limit else str(clip(text, limit))


def drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {k: drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, [], {})}
    return value


def big_number(value: float | None) -> Any:
    """3.1e12 -> "3.10T": large amounts the way people read them."""
    number = num.finite(value)
    if number is None:
        return None
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(number) >= size:
            return f"{number / size:.2f}{suffix}"
    return round(number, 2)


_FRACTION_INDICATORS = ("volatility_20d", "volatility_1y", "max_drawdown_1y")
_SHORT_HISTORY = re.compile(r"^(.+) needs (\d+) bars, have (\d+)$")


def short_notes(notes: list[str] | tuple[str, ...]) -> list[str]:
    """The analysis notes, with the many "X needs N bars, have M" lines folded into one."""
    folded, kept, have = [], [], None
    for note in notes:
        match = _SHORT_HISTORY.match(note)
        if match:
            folded.append(match.group(1))
            have = match.group(3)
        else:
            kept.append(clip(note, 160))
    if folded:
        kept.insert(0, f"only {have} bars of history, so no {', '.join(folded)}")
    return kept


def stale_text(stale: bool, fetched_at: str | None, source: str | None) -> str | None:
    """For a result served stale: "as of 2026-11-20 16:00 UTC, Yahoo unavailable"; else None
    (and the key is dropped)."""
    return stale_note(fetched_at, source) if stale else None


def quote_text(quote: Quote) -> str:
    data = quote.to_dict()
    data["change_pct"] = num.percent(quote.change_pct, 2)  # percent for the model
    data.pop("fetched_at", None)
    data["stale"] = stale_text(quote.stale, quote.fetched_at, quote.source)
    return fit(drop_empty(num.for_model(data)))


def summarize_analysis(a: Analysis) -> dict[str, Any]:
    """The (personalised) analysis as a small dict for the model: percentages instead of
    fractions, rounded numbers, signals as their one-line texts, most important keys first."""
    returns = {k: num.percent(v) for k, v in a.returns.to_dict().items()}
    indicators = a.indicators.to_dict()
    for name in _FRACTION_INDICATORS:
        indicators[f"{name}_pct"] = num.percent(indicators.pop(name))
    position: dict[str, Any] | None = None
    if a.position is not None:
        position = {k: v for k, v in a.position.to_dict().items() if k != "portfolio_size"}
        position["pct_of_portfolio"] = num.percent(a.position.pct_of_portfolio)
    summary: dict[str, Any] = {
        "symbol": a.symbol,
        "as_of": a.as_of,
        "stale": stale_text(a.stale, a.fetched_at, a.source),
        "price": a.price,
        "returns_pct": returns,
        "alerts": [clip(alert.text, 200) for alert in a.alerts],
        "position": position,
        "indicators": indicators,
        "range_52w": {
            "high": a.high_52w,
            "low": a.low_52w,
            "from_high_pct": num.percent(a.pct_from_high_52w),
            "from_low_pct": num.percent(a.pct_from_low_52w),
        },
        "volume_vs_20d_avg": a.volume_ratio_20d,
        "beta_vs": a.benchmark,
        "signals": [clip(s.text or f"{s.name}: {s.state}", 120) for s in a.signals],
        "notes": short_notes(a.notes),
    }
    return drop_empty(num.for_model(summary))  # type: ignore[no-any-return]


def comparison_row(a: Analysis) -> dict[str, Any]:
    ind = a.indicators
    row = {
        "symbol": a.symbol,
        "price": a.price,
        "ret_1d_pct": num.percent(a.returns.d1),
        "ret_1m_pct": num.percent(a.returns.m1),
        "ret_3m_pct": num.percent(a.returns.m3),
        "ret_1y_pct": num.percent(a.returns.y1),
        "rsi": ind.rsi_14,
        "vol_pct": num.percent(
            ind.volatility_1y if ind.volatility_1y is not None else ind.volatility_20d
        ),
        "max_dd_pct": num.percent(ind.max_drawdown_1y),
        "beta": ind.beta,
        "trend": a.trend,
    }
    return num.for_model(row)  # type: ignore[no-any-return]


# which comparison_row column each ranking reads
RANK_COLUMNS = {
    "return_1m": "ret_1m_pct",
    "return_3m": "ret_3m_pct",
    "return_1y": "ret_1y_pct",
    "rsi": "rsi",
    "volatility": "vol_pct",
    "drawdown": "max_dd_pct",
    "beta": "beta",
}

_FRACTION_FIELDS = ("dividend_yield", "profit_margin")
_BIG_FIELDS = ("market_cap", "revenue")


def fundamentals_text(facts: Fundamentals) -> str:
    data: dict[str, Any] = {}
    for key, value in facts.to_dict().items():
        if key in ("stale", "fetched_at"):
            continue
        if key in _FRACTION_FIELDS:
            data[f"{key}_pct"] = num.percent(value, 2)
        elif key in _BIG_FIELDS:
            data[key] = big_number(value)
        else:
            data[key] = clip(value, 300)
    data["stale"] = stale_text(facts.stale, facts.fetched_at, facts.source)
    return fit(drop_empty(num.for_model(data)))


def news_text(news: News) -> str:
    items = []
    for item in news.items:
        keep = {
            k: v
            for k, v in (
                ("title", item.title),
                ("publisher", item.publisher),
                ("published", item.published),
            )
            if v
        }
        items.append({k: clip(v, 160) for k, v in keep.items()})
    if not items:
        return f"{news.symbol}: no recent news"
    head: dict[str, Any] = {"symbol": news.symbol}
    stale = stale_text(news.stale, news.fetched_at, "yfinance")
    if stale:
        head["stale"] = stale
    text = compact_json({**head, "news": items})
    while len(text) > MAX_CHARS_PER_SYMBOL and len(items) > 1:
        items.pop()  # the oldest headlines go first
        text = compact_json({**head, "news": items, "more_not_shown": True})
    if len(text) > MAX_CHARS_PER_SYMBOL:
        return fit({**head, "news": items})
    return text


def profile_view(profile: Profile) -> dict[str, Any]:
    view: dict[str, Any] = {
        "preferred_symbols": profile.preferred_symbols,
        "alert_threshold_pct": num.percent(profile.alert_threshold, 2),
        "portfolio_size": profile.portfolio_size,
        "notes": clip(profile.notes, 600),
    }
    return {k: v for k, v in view.items() if v not in (None, [])}
