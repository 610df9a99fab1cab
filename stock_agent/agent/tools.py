"""The agent's tools: market data through `MarketService` and the user's profile, as compact
text for the model (rounded numbers, at most ~1,500 characters per symbol, no raw tables).

A tool never raises: a failure comes back as one "error: ..." line the model can relay.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, SkipValidation, ValidationError

from stock_agent.errors import InvalidInput, StockAgentError
from stock_agent.market.service import MarketService
from stock_agent.store.profile import Profile, ProfileStore

log = logging.getLogger(__name__)

MAX_CHARS_PER_SYMBOL = 1500
MAX_SYMBOLS_PER_CALL = 10


@dataclass
class ToolContext:
    """What the tools work with: market data, the profile store, and whose profile it is."""

    service: MarketService
    profiles: ProfileStore
    user_id: str


# -- formatting -----------------------------------------------------------------------------------


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


def rounded(value: Any, digits: int = 2) -> Any:
    """Floats rounded (to `digits` decimals, or 3 significant digits for small numbers),
    Nones dropped from dicts, recursively."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value != 0 and abs(value) < 1:
            return float(f"{value:.3g}")
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def pct(value: Any, digits: int = 1) -> float | None:
    """A fraction as a rounded percentage (0.0523 -> 5.2)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return round(value * 100, digits)
    return None


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
    return text if len(text) <= limit else clip(text, limit)


_FRACTION_INDICATORS = ("volatility_20d", "volatility_1y", "max_drawdown_1y")
_SHORT_HISTORY = re.compile(r"^(.+) needs (\d+) bars, have (\d+)$")


def short_notes(notes: list[str]) -> list[str]:
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


def summarize_analysis(analysis: dict[str, Any]) -> dict[str, Any]:
    """The (personalised) analysis as a small dict for the model: percentages instead of
    fractions, rounded numbers, signals as their one-line texts, most important keys first."""
    returns = {k: pct(v) for k, v in (analysis.get("returns") or {}).items()}
    indicators = dict(analysis.get("indicators") or {})
    for name in _FRACTION_INDICATORS:
        if name in indicators:
            indicators[f"{name}_pct"] = pct(indicators.pop(name))
    position = analysis.get("position")
    if isinstance(position, dict):
        position = {k: v for k, v in position.items() if k != "portfolio_size"}
        position["pct_of_portfolio"] = pct(position.get("pct_of_portfolio"))
    summary: dict[str, Any] = {
        "symbol": analysis.get("symbol"),
        "as_of": analysis.get("as_of"),
        "price": analysis.get("price"),
        "returns_pct": returns,
        "alerts": [
            clip(a.get("text") if isinstance(a, dict) else str(a), 200)
            for a in analysis.get("alerts") or []
        ],
        "position": position,
        "indicators": indicators,
        "range_52w": {
            "high": analysis.get("high_52w"),
            "low": analysis.get("low_52w"),
            "from_high_pct": pct(analysis.get("pct_from_high_52w")),
            "from_low_pct": pct(analysis.get("pct_from_low_52w")),
        },
        "volume_vs_20d_avg": analysis.get("volume_ratio_20d"),
        "beta_vs": analysis.get("benchmark"),
        "signals": [
            clip(s.get("text") or f"{s.get('name')}: {s.get('state')}", 120)
            for s in analysis.get("signals") or []
            if isinstance(s, dict)
        ],
        "notes": short_notes(list(analysis.get("notes") or [])),
    }
    return _drop_empty(rounded(summary))


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, [], {})}
    return value


def _profile_for(ctx: ToolContext) -> tuple[Profile | None, str | None]:
    """The user's profile, or None and a note when the store cannot be read (the analysis still works)."""
    try:
        return ctx.profiles.get(ctx.user_id), None
    except Exception as exc:
        log.debug("profile unavailable for %s", ctx.user_id, exc_info=True)
        return None, f"profile unavailable ({type(exc).__name__}); alerts and position not applied"


def _personalised(ctx: ToolContext, symbols: list[str]) -> list[dict[str, Any] | StockAgentError]:
    from stock_agent.market.analysis import apply_profile

    results = ctx.service.analyses(symbols)
    profile, note = _profile_for(ctx)
    out: list[dict[str, Any] | StockAgentError] = []
    for item in results:
        if isinstance(item, dict):
            if profile is not None:
                item = apply_profile(
                    item,
                    alert_threshold=profile.alert_threshold,
                    portfolio_size=profile.portfolio_size,
                )
            elif note:
                item = {**item, "notes": [*(item.get("notes") or []), note]}
        out.append(item)
    return out


def _profile_view(profile: Profile) -> dict[str, Any]:
    view: dict[str, Any] = {
        "preferred_symbols": profile.preferred_symbols,
        "alert_threshold_pct": pct(profile.alert_threshold, 2),
        "portfolio_size": profile.portfolio_size,
        "notes": clip(profile.notes, 600),
    }
    return {k: v for k, v in view.items() if v not in (None, [])}


# -- argument schemas ----------------------------------------------------------------------------

_SYMBOL = "Ticker symbol as Yahoo Finance spells it, e.g. AAPL, BRK-B, ^GSPC."


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SymbolArgs(_Args):
    symbol: str = Field(description=_SYMBOL, min_length=1, max_length=15)


class AnalyzeArgs(_Args):
    symbols: list[str] = Field(
        description="1 to 10 ticker symbols to analyse together, e.g. ['AAPL', 'MSFT'].",
        min_length=1,
        max_length=MAX_SYMBOLS_PER_CALL,
    )


class CompareArgs(_Args):
    symbols: list[str] = Field(
        description="2 to 10 ticker symbols to compare side by side.",
        min_length=2,
        max_length=MAX_SYMBOLS_PER_CALL,
    )
    rank_by: Literal[
        "return_1m", "return_3m", "return_1y", "rsi", "volatility", "drawdown", "beta"
    ] = Field(
        default="return_3m",
        description=(
            "Ranking criterion: return_1m/return_3m/return_1y (highest first), rsi (highest first), "
            "volatility (lowest first), drawdown (shallowest first), beta (lowest first)."
        ),
    )


class NewsArgs(_Args):
    symbol: str = Field(description=_SYMBOL, min_length=1, max_length=15)
    limit: int = Field(default=5, ge=1, le=10, description="How many recent headlines, 1 to 10.")


class NoArgs(_Args):
    pass


ProfileField = Literal["preferred_symbols", "alert_threshold", "portfolio_size", "notes"]


class UpdateProfileArgs(_Args):
    add_symbols: list[str] | None = Field(
        default=None, description="Symbols to add to the user's watchlist (preferred symbols)."
    )
    remove_symbols: list[str] | None = Field(
        default=None, description="Symbols to remove from the watchlist."
    )
    alert_threshold: float | str | None = Field(
        default=None,
        description=(
            "1-day drop that should raise an alert, as a negative fraction (-0.05) or a percentage "
            "text ('-5%')."
        ),
    )
    portfolio_size: float | str | None = Field(
        default=None, description="Total portfolio value in dollars, e.g. 100000 or '250k'."
    )
    notes: str | None = Field(
        default=None,
        description="Free-text note about the user's goals or constraints (replaces the old note).",
        max_length=2000,
    )
    clear: list[ProfileField] | None = Field(
        default=None, description="Fields to erase, e.g. ['alert_threshold']."
    )


# -- tools ----------------------------------------------------------------------------------------


def _invalid_args(exc: Exception) -> str:
    return error_text(exc)


class StockTool(BaseTool):
    """A tool bound to a `ToolContext`; `run_tool` returns text and failures become "error: ..."."""

    ctx: SkipValidation[ToolContext] = Field(exclude=True)
    handle_validation_error: bool | str | Callable[[Any], str] | None = _invalid_args

    def _run(self, *args: Any, **kwargs: Any) -> str:
        try:
            return self.run_tool(**kwargs)
        except Exception as exc:  # never raise into the agent: the model relays the error
            if not isinstance(exc, StockAgentError):
                log.warning("tool %s failed", self.name, exc_info=True)
            return error_text(exc)

    def run_tool(self, *args: Any, **kwargs: Any) -> str:
        raise NotImplementedError


class GetQuoteTool(StockTool):
    name: str = "get_quote"
    description: str = (
        "Latest price of one stock: last price, previous close and the change since then. "
        "Use for 'what is X trading at'. For trend, returns and indicators use analyze_stocks."
    )
    args_schema: type[BaseModel] = SymbolArgs

    def run_tool(self, symbol: str) -> str:
        quote = dict(self.ctx.service.quote(symbol))
        quote["change_pct"] = pct(quote.get("change_pct"), 2)  # percent for the model
        return fit(_drop_empty(rounded(quote)))


class AnalyzeStocksTool(StockTool):
    name: str = "analyze_stocks"
    description: str = (
        "Technical analysis of 1 to 10 stocks in one call (fetched in parallel): price, returns "
        "(1d to 1y, in percent), RSI, MACD, moving averages, Bollinger Bands, ATR, volatility, "
        "drawdown, beta against the benchmark, 52-week range, signals, and the user's alerts and "
        "position size from their profile. Prefer one call with all symbols."
    )
    args_schema: type[BaseModel] = AnalyzeArgs

    def run_tool(self, symbols: list[str]) -> str:
        lines = []
        for symbol, item in zip(symbols, _personalised(self.ctx, symbols), strict=True):
            if isinstance(item, dict):
                lines.append(fit(summarize_analysis(item)))
            else:
                lines.append(f"{symbol}: {error_text(item)}")
        return "\n".join(lines)


_FRACTION_FIELDS = ("dividend_yield", "profit_margin", "operating_margin", "revenue_growth")
_BIG_FIELDS = ("market_cap", "revenue", "enterprise_value", "free_cash_flow")


def big_number(value: Any) -> Any:
    """3.1e12 -> "3.10T": large amounts the way people read them."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return value
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(value) >= size:
            return f"{value / size:.2f}{suffix}"
    return round(value, 2)


class GetFundamentalsTool(StockTool):
    name: str = "get_fundamentals"
    description: str = (
        "Company facts and valuation of one stock: name, sector, market cap, P/E, EPS, dividend "
        "yield, margins and similar. Not available with offline data."
    )
    args_schema: type[BaseModel] = SymbolArgs

    def run_tool(self, symbol: str) -> str:
        data: dict[str, Any] = {}
        for key, value in self.ctx.service.fundamentals(symbol).items():
            if key in _FRACTION_FIELDS:
                data[f"{key}_pct"] = pct(value, 2)
            elif key in _BIG_FIELDS:
                data[key] = big_number(value)
            else:
                data[key] = clip(value, 300)
        return fit(_drop_empty(rounded(data)))


class GetNewsTool(StockTool):
    name: str = "get_news"
    description: str = "Recent headlines about one stock (title, publisher, date). Not available with offline data."
    args_schema: type[BaseModel] = NewsArgs

    def run_tool(self, symbol: str, limit: int = 5) -> str:
        data = self.ctx.service.news(symbol, limit=limit)
        items = []
        for item in data.get("items") or []:
            if not isinstance(item, dict):
                continue
            keep = {
                k: item.get(k) for k in ("title", "publisher", "published", "date") if item.get(k)
            }
            items.append({k: clip(v, 160) for k, v in keep.items()})
        sym = data.get("symbol", symbol)
        if not items:
            return f"{sym}: no recent news"
        text = compact_json({"symbol": sym, "news": items})
        while len(text) > MAX_CHARS_PER_SYMBOL and len(items) > 1:
            items.pop()  # the oldest headlines go first
            text = compact_json({"symbol": sym, "news": items, "more_not_shown": True})
        return fit({"symbol": sym, "news": items}) if len(text) > MAX_CHARS_PER_SYMBOL else text


# what each compare criterion reads, and whether higher is better
_RANKS: dict[str, tuple[str, bool, str]] = {
    "return_1m": ("ret_1m_pct", True, "1-month return, highest first"),
    "return_3m": ("ret_3m_pct", True, "3-month return, highest first"),
    "return_1y": ("ret_1y_pct", True, "1-year return, highest first"),
    "rsi": ("rsi", True, "RSI(14), highest first"),
    "volatility": ("vol_pct", False, "annualised volatility, lowest first"),
    "drawdown": ("max_dd_pct", True, "max drawdown, shallowest first"),
    "beta": ("beta", False, "beta, lowest first"),
}


def _first(mapping: dict[str, Any], *names: str) -> Any:
    for name in names:
        if mapping.get(name) is not None:
            return mapping[name]
    return None


def comparison_row(analysis: dict[str, Any]) -> dict[str, Any]:
    returns = analysis.get("returns") or {}
    ind = analysis.get("indicators") or {}
    price = analysis.get("price")
    sma50, sma200 = ind.get("sma_50"), ind.get("sma_200")
    if (
        isinstance(price, int | float)
        and isinstance(sma50, int | float)
        and isinstance(sma200, int | float)
    ):
        trend = "up" if price > sma50 > sma200 else "down" if price < sma50 < sma200 else "mixed"
    else:
        trend = None
    row = {
        "symbol": analysis.get("symbol"),
        "price": price,
        "ret_1d_pct": pct(returns.get("1d")),
        "ret_1m_pct": pct(returns.get("1m")),
        "ret_3m_pct": pct(returns.get("3m")),
        "ret_1y_pct": pct(returns.get("1y")),
        "rsi": ind.get("rsi_14"),
        "vol_pct": pct(_first(ind, "volatility_1y", "volatility_20d")),
        "max_dd_pct": pct(ind.get("max_drawdown_1y")),
        "beta": ind.get("beta"),
        "trend": trend,
    }
    return rounded(row)


class CompareStocksTool(StockTool):
    name: str = "compare_stocks"
    description: str = (
        "Side-by-side comparison of 2 to 10 stocks: returns (1d, 1m, 3m, 1y in percent), RSI, "
        "annualised volatility, max drawdown, beta and trend, ranked by one criterion."
    )
    args_schema: type[BaseModel] = CompareArgs

    def run_tool(self, symbols: list[str], rank_by: str = "return_3m") -> str:
        column, higher_first, label = _RANKS[rank_by]
        rows, errors = [], []
        for symbol, item in zip(symbols, self.ctx.service.analyses(symbols), strict=True):
            if isinstance(item, dict):
                rows.append(comparison_row(item))
            else:
                errors.append(f"{symbol}: {error_text(item)}")
        ranked = [r for r in rows if r.get(column) is not None]
        ranked.sort(key=lambda r: r[column], reverse=higher_first)
        unranked = [r for r in rows if r.get(column) is None]
        lines = [f"ranked by {label}"]
        for place, row in enumerate(ranked + unranked, 1):
            prefix = f"{place}." if row.get(column) is not None else "-"
            lines.append(
                f"{prefix} {compact_json({k: v for k, v in row.items() if v is not None})}"
            )
        if unranked:
            lines.append(
                f"not ranked (no {column}): {', '.join(str(r['symbol']) for r in unranked)}"
            )
        return "\n".join(lines + errors)


class GetProfileTool(StockTool):
    name: str = "get_profile"
    description: str = (
        "The user's saved preferences: watchlist (preferred symbols), alert threshold (1-day drop "
        "in percent), portfolio size and notes."
    )
    args_schema: type[BaseModel] = NoArgs

    def run_tool(self) -> str:
        view = _profile_view(self.ctx.profiles.get(self.ctx.user_id))
        return compact_json(view) if view else "profile is empty"


class UpdateProfileTool(StockTool):
    name: str = "update_profile"
    description: str = (
        "Save the user's preferences when they state them: add or remove watchlist symbols, set "
        "the alert threshold (a 1-day drop such as -5%), the portfolio size, or a note; or clear "
        "fields (clear=['preferred_symbols'] with add_symbols replaces the watchlist). Only the "
        "given fields change. Returns the saved profile."
    )
    args_schema: type[BaseModel] = UpdateProfileArgs

    def run_tool(
        self,
        add_symbols: list[str] | None = None,
        remove_symbols: list[str] | None = None,
        alert_threshold: float | str | None = None,
        portfolio_size: float | str | None = None,
        notes: str | None = None,
        clear: list[str] | None = None,
    ) -> str:
        from stock_agent.store.profile import parse_amount, parse_symbols, parse_threshold

        # Validate everything first, so a bad value changes nothing.
        adds = parse_symbols(add_symbols) if add_symbols else []
        removes = parse_symbols(remove_symbols) if remove_symbols else []
        if alert_threshold is not None:
            parse_threshold(alert_threshold)
        if portfolio_size is not None:
            parse_amount(portfolio_size)
        cleared = list(dict.fromkeys(clear or []))
        given = {
            "alert_threshold": alert_threshold,
            "portfolio_size": portfolio_size,
            "notes": notes,
        }
        both = [f for f in cleared if given.get(f) is not None]
        if both:
            raise InvalidInput(
                f"{', '.join(both)} given and cleared at once", fix="do one or the other"
            )
        if not (adds or removes or cleared or any(v is not None for v in given.values())):
            raise InvalidInput("nothing to update", fix="give at least one field to change")

        store, user = self.ctx.profiles, self.ctx.user_id
        for field in cleared:
            store.set_field(user, field, None)
        if adds:
            store.add_symbols(user, adds)
        if removes:
            store.remove_symbols(user, removes)
        for field, value in given.items():
            if value is not None:
                store.set_field(user, field, value)
        view = _profile_view(store.get(user))
        return "saved: " + (compact_json(view) if view else "profile is empty")


class CheckWatchlistTool(StockTool):
    name: str = "check_watchlist"
    description: str = (
        "Check every symbol on the user's watchlist: price, 1-day change, and whether the change "
        "breaches the user's alert threshold. Use when the user asks how their stocks are doing."
    )
    args_schema: type[BaseModel] = NoArgs

    def run_tool(self) -> str:
        profile = self.ctx.profiles.get(self.ctx.user_id)
        if not profile.preferred_symbols:
            return (
                "watchlist is empty: ask the user which symbols to follow, then save them with "
                "update_profile(add_symbols=[...])"
            )
        threshold = profile.alert_threshold
        header = (
            f"alert threshold: {pct(threshold, 2)}% 1-day change"
            if threshold is not None
            else "no alert threshold set (update_profile(alert_threshold=-0.05) sets one)"
        )
        lines = [header]
        symbols = profile.preferred_symbols
        for symbol, item in zip(symbols, _personalised(self.ctx, symbols), strict=True):
            if not isinstance(item, dict):
                lines.append(f"{symbol}: {error_text(item)}")
                continue
            change = pct((item.get("returns") or {}).get("1d"), 2)
            price = rounded(item.get("price"))
            moved = f"{change:+.2f}% 1d" if change is not None else "1d change unknown"
            # apply_profile decides what is an alert; this only reports it
            alerts = [a.get("text", "") if isinstance(a, dict) else str(a) for a in item["alerts"]]
            line = f"{symbol}: {price} ({moved}) {'ALERT' if alerts else 'ok'}"
            if alerts:
                line += f": {clip('; '.join(alerts), 200)}"
            lines.append(line)
        return "\n".join(lines)


TOOL_CLASSES: tuple[type[StockTool], ...] = (
    GetQuoteTool,
    AnalyzeStocksTool,
    GetFundamentalsTool,
    GetNewsTool,
    CompareStocksTool,
    GetProfileTool,
    UpdateProfileTool,
    CheckWatchlistTool,
)


def build_tools(ctx: ToolContext) -> list[BaseTool]:
    """Every tool, bound to `ctx` (one user's profile)."""
    return [cls(ctx=ctx) for cls in TOOL_CLASSES]  # type: ignore[call-arg]  # name: set per class
