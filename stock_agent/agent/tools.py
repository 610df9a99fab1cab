"""The agent's tools: thin LangChain adapters over the service layer. Each has an argument
schema (what the model may pass), calls one service method, and returns compact text for the
model (`agent/format.py`). The user comes from the call's runtime context, never from the
tool: one set of tools serves every user.

A tool never raises: a failure comes back as one "error: ..." line the model can relay.
There is no profile-reading tool: every turn's system prompt carries the user's profile.
A new tool is one `StockTool` subclass added to `TOOL_CLASSES`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from langchain_core.tools import BaseTool
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SkipValidation

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
    MAX_NOTES_FROM_MODEL,
    MAX_SYMBOL_LENGTH,
    MAX_SYMBOLS_PER_TOOL_CALL,
    PROFILE_FIELDS,
)
from stock_agent.core.models import Analysis
from stock_agent.errors import StockAgentError
from stock_agent.sanitize import strip_control_line, wrap_data

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
# Every request carries every offered tool's schema, so they are short: descriptions name what
# an argument is and its unit, nothing the system prompt already says.

_SYMBOL = "Ticker, e.g. BRK-B."


def _compact_schema(schema: dict[str, Any]) -> None:
    """What the model reads: optional arguments as their plain type (no `null` branch, no
    `default: null`), no titles, no string lengths. Validation is unchanged."""
    schema.pop("title", None)
    schema.pop("additionalProperties", None)  # extra arguments are still refused when validated
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        if prop.get("type") == "string":  # lengths are checked when validated; the model needs
            prop.pop("minLength", None)  # only what a value means
            prop.pop("maxLength", None)
        options = prop.get("anyOf")
        if options and {"type": "null"} in options:
            kept = [o for o in options if o != {"type": "null"}]
            prop.pop("anyOf")
            prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
        if prop.get("default", ...) is None:
            prop.pop("default")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_compact_schema)


class SymbolArgs(_Args):
    symbol: str = Field(description=_SYMBOL, min_length=1, max_length=MAX_SYMBOL_LENGTH)


class AnalyzeArgs(_Args):
    symbols: list[str] = Field(
        description="1 to 10 tickers.", min_length=1, max_length=MAX_SYMBOLS_PER_CALL
    )


class CompareArgs(_Args):
    symbols: list[str] = Field(
        description="2 to 10 tickers.", min_length=2, max_length=MAX_SYMBOLS_PER_CALL
    )
    rank_by: Literal[
        "return_1m", "return_3m", "return_1y", "rsi", "volatility", "drawdown", "beta"
    ] = Field(
        default="return_3m",
        description="Returns, RSI: highest first; volatility, drawdown, beta: lowest first.",
    )


class CompanyArgs(_Args):
    symbol: str = Field(description=_SYMBOL, min_length=1, max_length=MAX_SYMBOL_LENGTH)
    headlines: int = Field(
        default=0, ge=0, le=MAX_NEWS_PER_TOOL_CALL, description="Recent headlines, 0 to 10."
    )


class NoArgs(_Args):
    pass


ProfileField = Literal["preferred_symbols", "alert_threshold", "portfolio_size", "notes"]
assert set(ProfileField.__args__) == set(PROFILE_FIELDS)  # type: ignore[attr-defined]


def _as_text(value: Any) -> Any:
    """A number the model sends where the schema says text (-0.05 for '-5%') is read as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return value


class UpdateProfileArgs(_Args):
    add_symbols: list[str] | None = Field(default=None, description="Tickers to watch.")
    remove_symbols: list[str] | None = Field(default=None, description="Tickers to stop watching.")
    alert_threshold: Annotated[str | None, BeforeValidator(_as_text)] = Field(
        default=None, description="1-day drop that alerts, e.g. '-5%'."
    )
    portfolio_size: Annotated[str | None, BeforeValidator(_as_text)] = Field(
        default=None, description="Portfolio value, account currency, e.g. '250k'."
    )
    notes: str | None = Field(
        default=None,
        description="Short note on goals.",
        max_length=MAX_NOTES_FROM_MODEL,
    )
    clear: list[ProfileField] | None = Field(default=None, description="Fields to erase.")


@functools.cache
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


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
            text = self.run_tool(current_context(), **kwargs)
        except Exception as exc:  # never raise into the agent: the model relays the error
            if not isinstance(exc, StockAgentError):
                log.warning("tool %s failed", self.name, exc_info=True)
            text = error_text(exc)
        # Everything a tool returns may carry text from data (company names, headlines, file
        # cells in an error): the model gets it inside delimiters the system prompt calls data.
        return wrap_data(self.name, text)

    def run_tool(self, ctx: AgentContext, *args: Any, **kwargs: Any) -> str:
        raise NotImplementedError

    @property
    def tool_call_schema(self) -> Any:
        # The argument schema as written (LangChain would rebuild it without our compact JSON
        # schema); the tools take no injected arguments, so nothing needs hiding. As its JSON
        # schema, made once per class: the agent binds the tools for every model request, and
        # pydantic would generate each schema again each time (a fifth of a turn's CPU).
        # LangChain's conversion builds new dicts from it (tests/test_tools.py checks it is
        # never changed), so the one copy is shared.
        return _json_schema(cast("type[BaseModel]", self.args_schema))


class GetQuoteTool(StockTool):
    name: str = "get_quote"
    description: str = "Latest price, previous close and change (percent)."
    args_schema: type[BaseModel] = SymbolArgs
    needs: str = "quote"

    def run_tool(self, ctx: AgentContext, symbol: str) -> str:
        return quote_text(self.deps.market.quote(symbol, listener=ctx.on_fetch))


class AnalyzeStocksTool(StockTool):
    name: str = "analyze_stocks"
    description: str = (
        "Technical analysis: returns, volatility, drawdown (percent), moving averages, RSI, "
        "MACD, Bollinger, ATR, beta, 52-week range, signals, the user's alerts and position."
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


class GetCompanyTool(StockTool):
    name: str = "get_company"
    description: str = (
        "Company facts and valuation (yields, margins in percent), and optionally headlines."
    )
    args_schema: type[BaseModel] = CompanyArgs
    needs: str = "fundamentals"

    def run_tool(self, ctx: AgentContext, symbol: str, headlines: int = 0) -> str:
        parts = []
        try:
            parts.append(
                fundamentals_text(self.deps.market.fundamentals(symbol, listener=ctx.on_fetch))
            )
        except StockAgentError as exc:
            parts.append(error_text(exc))
        if headlines:
            try:
                news = self.deps.market.news(symbol, limit=headlines, listener=ctx.on_fetch)
                parts.append(news_text(news))
            except StockAgentError as exc:
                parts.append(error_text(exc))
        return "\n".join(parts)


class CompareStocksTool(StockTool):
    name: str = "compare_stocks"
    description: str = (
        "Stocks side by side, ranked by one criterion: returns, volatility and drawdown "
        "(percent), RSI, beta, trend."
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


class UpdateProfileTool(StockTool):
    name: str = "update_profile"
    description: str = (
        "Save what the user asks to change in their profile; only the given fields change."
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
        user = require_user(ctx)
        change = ProfileUpdate(
            add_symbols=tuple(add_symbols or ()),
            remove_symbols=tuple(remove_symbols or ()),
            alert_threshold=alert_threshold,
            portfolio_size=portfolio_size,
            notes=None if notes is None else strip_control_line(notes),
            clear=tuple(clear or ()),
        ).validated()
        # The model proposes; the user decides. Without a way to ask, nothing is written.
        if ctx.confirm is None:
            return (
                "not saved: profile changes need the user's confirmation and this session "
                "cannot ask; tell the user the change so they can make it with "
                "`stock-agent profile set` (or chat with --allow-profile-writes)"
            )
        if not ctx.confirm(change):
            return "not saved: the user declined this change"
        saved = self.deps.profiles.update(user, change)
        view = profile_view(saved)
        return "saved: " + (compact_json(view) if view else "profile is empty")


class CheckWatchlistTool(StockTool):
    name: str = "check_watchlist"
    description: str = "The user's watchlist: price, 1-day change (percent), alerts."
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
    GetCompanyTool,
    CompareStocksTool,
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
