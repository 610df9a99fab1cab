"""The agent's tools: thin LangChain adapters over the service layer. Each has an argument
schema (what the model may pass), calls one service method, and returns compact text for the
model (`agent/format.py`). The user comes from the call's runtime context, never from the
tool: one set of tools serves every user.

A tool never raises: a failure comes back as one "error: ..." line the model can relay.
A new tool is one `StockTool` subclass added to `TOOL_CLASSES`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from stock_agent.agent.context import AgentContext, current_context, require_user
from stock_agent.agent.format import (
    MAX_CHARS_PER_SYMBOL,
    RANK_COLUMNS,
    clip,
    compact_json,
    comparison_row,
    error_text,
    fit,
    fundamentals_text,
    news_text,
    profile_view,
    quote_text,
    summarize_analysis,
)
from stock_agent.core import numbers as num
from stock_agent.core.limits import (
    MAX_NEWS_PER_TOOL_CALL,
    MAX_NOTES,
    MAX_SYMBOL_LENGTH,
    MAX_SYMBOLS_PER_TOOL_CALL,
    PROFILE_FIELDS,
)
from stock_agent.core.models import Analysis
from stock_agent.errors import StockAgentError

# At run time, not only for type checking: pydantic resolves the tools' field types.
from stock_agent.services.analysis import AnalysisService  # noqa: TC001
from stock_agent.services.market import MarketService  # noqa: TC001
from stock_agent.services.profiles import ProfileService, ProfileUpdate

log = logging.getLogger(__name__)

MAX_SYMBOLS_PER_CALL = MAX_SYMBOLS_PER_TOOL_CALL
__all__ = ["MAX_CHARS_PER_SYMBOL", "TOOL_CLASSES", "ToolDeps", "build_tools"]


@dataclass(frozen=True)
class ToolDeps:
    """What the tools call: the services, shared by every user and every turn."""

    market: MarketService
    analysis: AnalysisService
    profiles: ProfileService


# -- argument schemas ----------------------------------------------------------------------------

_SYMBOL = "Ticker symbol as Yahoo Finance spells it, e.g. AAPL, BRK-B, ^GSPC."


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SymbolArgs(_Args):
    symbol: str = Field(description=_SYMBOL, min_length=1, max_length=MAX_SYMBOL_LENGTH)


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
    symbol: str = Field(description=_SYMBOL, min_length=1, max_length=MAX_SYMBOL_LENGTH)
    limit: int = Field(
        default=5,
        ge=1,
        le=MAX_NEWS_PER_TOOL_CALL,
        description="How many recent headlines, 1 to 10.",
    )


class NoArgs(_Args):
    pass


ProfileField = Literal["preferred_symbols", "alert_threshold", "portfolio_size", "notes"]
assert set(ProfileField.__args__) == set(PROFILE_FIELDS)  # type: ignore[attr-defined]


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
        max_length=MAX_NOTES,
    )
    clear: list[ProfileField] | None = Field(
        default=None, description="Fields to erase, e.g. ['alert_threshold']."
    )


def _invalid_args(exc: Exception) -> str:
    return error_text(exc)


class StockTool(BaseTool):
    """A tool over `ToolDeps`; `run_tool(ctx, **args)` returns text, failures become "error: ..."."""

    deps: SkipValidation[ToolDeps] = Field(exclude=True)
    handle_validation_error: bool | str | Callable[[Any], str] | None = _invalid_args
    # what the data source must answer for this tool to be offered ("" = always)
    needs: str = ""

    def _run(self, *args: Any, **kwargs: Any) -> str:
        kwargs.pop("run_manager", None)
        try:
            return self.run_tool(current_context(), **kwargs)
        except Exception as exc:  # never raise into the agent: the model relays the error
            if not isinstance(exc, StockAgentError):
                log.warning("tool %s failed", self.name, exc_info=True)
            return error_text(exc)

    def run_tool(self, ctx: AgentContext, *args: Any, **kwargs: Any) -> str:
        raise NotImplementedError


class GetQuoteTool(StockTool):
    name: str = "get_quote"
    description: str = (
        "Latest price of one stock: last price, previous close and the change since then. "
        "Use for 'what is X trading at'. For trend, returns and indicators use analyze_stocks."
    )
    args_schema: type[BaseModel] = SymbolArgs
    needs: str = "quote"

    def run_tool(self, ctx: AgentContext, symbol: str) -> str:
        return quote_text(self.deps.market.quote(symbol, listener=ctx.on_fetch))


class AnalyzeStocksTool(StockTool):
    name: str = "analyze_stocks"
    description: str = (
        "Technical analysis of 1 to 10 stocks in one call (fetched in parallel): price, returns "
        "(1d to 1y, in percent), RSI, MACD, moving averages, Bollinger Bands, ATR, volatility, "
        "drawdown, beta against the benchmark, 52-week range, signals, and the user's alerts and "
        "position size from their profile. Prefer one call with all symbols."
    )
    args_schema: type[BaseModel] = AnalyzeArgs
    needs: str = "history"

    def run_tool(self, ctx: AgentContext, symbols: list[str]) -> str:
        batch = self.deps.analysis.analyze(symbols, user_id=ctx.user_id, listener=ctx.on_fetch)
        lines = []
        for symbol, item in zip(symbols, batch.items, strict=True):
            if isinstance(item, Analysis):
                lines.append(fit(summarize_analysis(item)))
            else:
                lines.append(f"{symbol}: {error_text(item)}")
        return "\n".join(lines)


class GetFundamentalsTool(StockTool):
    name: str = "get_fundamentals"
    description: str = (
        "Company facts and valuation of one stock: name, sector, market cap, P/E, EPS, dividend "
        "yield, margins and similar. Not available with offline data."
    )
    args_schema: type[BaseModel] = SymbolArgs
    needs: str = "fundamentals"

    def run_tool(self, ctx: AgentContext, symbol: str) -> str:
        return fundamentals_text(self.deps.market.fundamentals(symbol, listener=ctx.on_fetch))


class GetNewsTool(StockTool):
    name: str = "get_news"
    description: str = "Recent headlines about one stock (title, publisher, date). Not available with offline data."
    args_schema: type[BaseModel] = NewsArgs
    needs: str = "news"

    def run_tool(self, ctx: AgentContext, symbol: str, limit: int = 5) -> str:
        return news_text(self.deps.market.news(symbol, limit=limit, listener=ctx.on_fetch))


class CompareStocksTool(StockTool):
    name: str = "compare_stocks"
    description: str = (
        "Side-by-side comparison of 2 to 10 stocks: returns (1d, 1m, 3m, 1y in percent), RSI, "
        "annualised volatility, max drawdown, beta and trend, ranked by one criterion."
    )
    args_schema: type[BaseModel] = CompareArgs
    needs: str = "history"

    def run_tool(self, ctx: AgentContext, symbols: list[str], rank_by: str = "return_3m") -> str:
        result = self.deps.analysis.compare(symbols, rank_by, listener=ctx.on_fetch)
        column = RANK_COLUMNS[rank_by]
        lines = [f"ranked by {result.label}"]
        for place, a in enumerate(result.ranked, 1):
            lines.append(f"{place}. {compact_json(comparison_row(a))}")
        for a in result.unranked:
            lines.append(f"- {compact_json(comparison_row(a))}")
        if result.unranked:
            lines.append(
                f"not ranked (no {column}): {', '.join(a.symbol for a in result.unranked)}"
            )
        lines += [f"{symbol}: {error_text(exc)}" for symbol, exc in result.errors]
        return "\n".join(lines)


class GetProfileTool(StockTool):
    name: str = "get_profile"
    description: str = (
        "The user's saved preferences: watchlist (preferred symbols), alert threshold (1-day drop "
        "in percent), portfolio size and notes."
    )
    args_schema: type[BaseModel] = NoArgs

    def run_tool(self, ctx: AgentContext) -> str:
        view = profile_view(self.deps.profiles.get(require_user(ctx)))
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
        ctx: AgentContext,
        add_symbols: list[str] | None = None,
        remove_symbols: list[str] | None = None,
        alert_threshold: float | str | None = None,
        portfolio_size: float | str | None = None,
        notes: str | None = None,
        clear: list[str] | None = None,
    ) -> str:
        change = ProfileUpdate(
            add_symbols=tuple(add_symbols or ()),
            remove_symbols=tuple(remove_symbols or ()),
            alert_threshold=alert_threshold,
            portfolio_size=portfolio_size,
            notes=notes,
            clear=tuple(clear or ()),
        )
        saved = self.deps.profiles.update(require_user(ctx), change)
        view = profile_view(saved)
        return "saved: " + (compact_json(view) if view else "profile is empty")


class CheckWatchlistTool(StockTool):
    name: str = "check_watchlist"
    description: str = (
        "Check every symbol on the user's watchlist: price, 1-day change, and whether the change "
        "breaches the user's alert threshold. Use when the user asks how their stocks are doing."
    )
    args_schema: type[BaseModel] = NoArgs
    needs: str = "history"

    def run_tool(self, ctx: AgentContext) -> str:
        report = self.deps.analysis.watchlist(require_user(ctx), listener=ctx.on_fetch)
        if report.empty:
            return (
                "watchlist is empty: ask the user which symbols to follow, then save them with "
                "update_profile(add_symbols=[...])"
            )
        lines = [
            f"alert threshold: {num.percent(report.threshold, 2)}% 1-day change"
            if report.threshold is not None
            else "no alert threshold set (update_profile(alert_threshold=-0.05) sets one)"
        ]
        for item in report.items:
            if item.analysis is None:
                lines.append(
                    f"{item.symbol}: {error_text(item.error or StockAgentError('no data'))}"
                )
                continue
            a = item.analysis
            change = num.percent(a.returns.d1, 2)
            moved = f"{change:+.2f}% 1d" if change is not None else "1d change unknown"
            line = (
                f"{item.symbol}: {num.for_model(a.price)} ({moved}) {'ALERT' if a.alerts else 'ok'}"
            )
            if a.alerts:
                line += f": {clip('; '.join(alert.text for alert in a.alerts), 200)}"
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


def build_tools(deps: ToolDeps, capabilities: frozenset[str] | None = None) -> list[StockTool]:
    """Every tool over `deps`; with `capabilities` (what the data source answers), only the
    tools it can serve, so the model is never offered a tool that can only fail."""
    tools = [cls(deps=deps) for cls in TOOL_CLASSES]  # type: ignore[call-arg]
    if capabilities is not None:
        tools = [t for t in tools if not t.needs or t.needs in capabilities]
    return tools
