"""Market data for the tools and the CLI: every fetch goes through the execution cache with the
right kind of TTL, and results are JSON-ready dicts that are the same for every user.

Personalisation (alerts, position size) is applied by callers with `apply_profile` after the
cache, so one user's profile never ends up in another user's cached result.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stock_agent.core.symbols import normalize_symbol
from stock_agent.errors import (
    DataSourceError,
    DataUnavailable,
    InvalidInput,
    StockAgentError,
    UnknownSymbol,
)

if TYPE_CHECKING:
    import pandas as pd

    from stock_agent.providers.base import MarketDataProvider
    from stock_agent.store.cache import ExecutionCache

log = logging.getLogger(__name__)

# Part of every analysis cache key: bump it when the analysis output changes shape, so entries
# written by an older version are not served.
ANALYSIS_VERSION = 1
HISTORY_DAYS = 800
MAX_NEWS = 20


@dataclass(frozen=True)
class FetchEvent:
    """One symbol fetched for a tool, e.g. to show "analysing AAPL (cached)" in the chat."""

    tool: str
    symbol: str
    cached: bool
    seconds: float
    error: str | None = None


class _Uncacheable(Exception):
    """Carries a result that must not be cached (it was degraded by a passing failure)."""

    def __init__(self, value: Any) -> None:
        super().__init__("uncacheable result")
        self.value = value


class MarketService:
    """Quotes, analyses, fundamentals and news for symbols, through the cache when there is one."""

    def __init__(
        self,
        provider: MarketDataProvider,
        cache: ExecutionCache | None,
        *,
        benchmark_symbol: str = "SPY",
        listener: Callable[[FetchEvent], None] | None = None,
        max_workers: int = 8,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.benchmark_symbol = normalize_symbol(benchmark_symbol)
        self.listener = listener
        self.max_workers = max(1, max_workers)

    # -- public API ---------------------------------------------------------------------------

    def quote(self, symbol: str) -> dict[str, Any]:
        """The latest price of `symbol` (cached for the quote TTL)."""
        sym = normalize_symbol(symbol)
        return self._fetch(
            "quote", sym, "quote", self._args(sym), lambda: self.provider.quote(sym).to_dict()
        )

    def analysis(self, symbol: str) -> dict[str, Any]:
        """The base analysis of `symbol` (returns, indicators, signals; no alerts or position),
        computed from its daily bars and the benchmark's (cached for the bars TTL)."""
        sym = normalize_symbol(symbol)
        args = self._args(sym, benchmark=self.benchmark_symbol, v=ANALYSIS_VERSION)
        return self._fetch("analysis", sym, "bars", args, lambda: self._compute_analysis(sym))

    def analyses(self, symbols: Sequence[str]) -> list[dict[str, Any] | StockAgentError]:
        """`analysis` of each symbol, fetched concurrently, in the given order. A symbol that
        fails gives its error in its place instead of failing the others."""
        normalized: list[str | StockAgentError] = []
        for raw in symbols:
            try:
                normalized.append(normalize_symbol(raw))
            except StockAgentError as exc:
                normalized.append(exc)
        unique = list(dict.fromkeys(s for s in normalized if isinstance(s, str)))

        if len(unique) <= 1:
            done = {sym: self._analysis_or_error(sym) for sym in unique}
        else:
            with ThreadPoolExecutor(
                max_workers=min(self.max_workers, len(unique)), thread_name_prefix="analysis"
            ) as pool:
                done = dict(zip(unique, pool.map(self._analysis_or_error, unique), strict=True))

        results: list[dict[str, Any] | StockAgentError] = []
        seen: set[str] = set()
        for item in normalized:
            if not isinstance(item, str):
                results.append(item)
                continue
            value = done[item]
            # a symbol asked twice gets its own copy, so a caller may personalise each one
            results.append(
                copy.deepcopy(value) if item in seen and isinstance(value, dict) else value
            )
            seen.add(item)
        return results

    def fundamentals(self, symbol: str) -> dict[str, Any]:
        """Valuation and company facts of `symbol` (cached for the fundamentals TTL)."""
        sym = normalize_symbol(symbol)
        return self._fetch(
            "fundamentals",
            sym,
            "fundamentals",
            self._args(sym),
            lambda: self.provider.fundamentals(sym).to_dict(),
        )

    def news(self, symbol: str, limit: int = 5) -> dict[str, Any]:
        """`{"symbol", "items": [...]}`: the latest `limit` headlines (cached for the news TTL)."""
        sym = normalize_symbol(symbol)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_NEWS:
            raise InvalidInput(
                f"news limit must be a whole number from 1 to {MAX_NEWS}, got {limit!r}",
                fix="e.g. 5",
            )

        def fetch() -> dict[str, Any]:
            items = self.provider.news(sym, limit=limit)
            return {"symbol": sym, "items": [item.to_dict() for item in items]}

        return self._fetch("news", sym, "news", self._args(sym, limit=limit), fetch)

    # -- internals ----------------------------------------------------------------------------

    def _args(self, symbol: str, **extra: Any) -> dict[str, Any]:
        # the source is part of the key: offline sample data must never answer for Yahoo
        return {"symbol": symbol, "source": self.provider.name, **extra}

    def _cached(
        self, tool: str, kind: str, args: dict[str, Any], fetch: Callable[[], Any]
    ) -> tuple[Any, bool]:
        if self.cache is None:
            return fetch(), False
        try:
            return self.cache.get_or_fetch(tool, args, fetch, kind)
        except _Uncacheable as degraded:
            return degraded.value, False

    def _fetch(
        self, tool: str, symbol: str, kind: str, args: dict[str, Any], fetch: Callable[[], Any]
    ) -> Any:
        started = time.perf_counter()
        try:
            value, cached = self._cached(tool, kind, args, fetch)
        except Exception as exc:
            self._emit(FetchEvent(tool, symbol, False, time.perf_counter() - started, str(exc)))
            raise
        self._emit(FetchEvent(tool, symbol, cached, time.perf_counter() - started))
        return value

    def _emit(self, event: FetchEvent) -> None:
        if self.listener is None:
            return
        try:
            self.listener(event)
        except Exception:  # a display problem must not fail the fetch
            log.debug("fetch listener failed on %s", event, exc_info=True)

    def _analysis_or_error(self, symbol: str) -> dict[str, Any] | StockAgentError:
        try:
            return self.analysis(symbol)
        except StockAgentError as exc:
            return exc
        except Exception as exc:  # a bug or a bad file must not sink the other symbols
            log.warning("analysis of %s failed", symbol, exc_info=True)
            return DataSourceError(f"analysis of {symbol} failed: {exc}")

    def _compute_analysis(self, symbol: str) -> dict[str, Any]:
        from stock_agent.core.analysis import analyze_bars

        bars = self.provider.history(symbol, days=HISTORY_DAYS)
        benchmark: pd.DataFrame | None
        cacheable = True
        note = None
        if symbol == self.benchmark_symbol:
            benchmark = bars
        else:
            try:
                benchmark = self._benchmark_bars()
            except (UnknownSymbol, DataUnavailable) as exc:
                benchmark, note = None, f"benchmark {self.benchmark_symbol}: {exc.message}"
            except StockAgentError as exc:  # rate limited, network down: retry next time
                benchmark, note = None, f"benchmark {self.benchmark_symbol}: {exc.message}"
                cacheable = False
        # analyze_bars notes the missing beta itself; the note here says why
        result = to_jsonable(
            analyze_bars(symbol, bars, benchmark, benchmark_symbol=self.benchmark_symbol)
        )
        if note:
            result.setdefault("notes", []).append(note)
        if not cacheable:
            raise _Uncacheable(result)
        return result

    def _benchmark_bars(self) -> pd.DataFrame:
        """The benchmark's closes (all beta needs), shared by every analysis through the cache."""
        sym = self.benchmark_symbol
        if self.cache is None:
            return self.provider.history(sym, days=HISTORY_DAYS)[["Close"]]
        encoded, _ = self.cache.get_or_fetch(
            "history",
            self._args(sym, days=HISTORY_DAYS, columns="Close"),
            lambda: frame_to_json(self.provider.history(sym, days=HISTORY_DAYS)[["Close"]]),
            "bars",
        )
        return frame_from_json(encoded)


# -- JSON helpers -------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """`value` with numpy/pandas scalars, dates and tuples turned into plain JSON types;
    NaN and infinities become None (they are not JSON)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return to_jsonable(value.item())
    if hasattr(value, "tolist"):  # numpy array
        return to_jsonable(value.tolist())
    return str(value)


def frame_to_json(frame: pd.DataFrame) -> dict[str, Any]:
    """Daily bars as `{"dates": [...], "<column>": [...]}` (compact, exact floats)."""
    encoded: dict[str, Any] = {"dates": [d.strftime("%Y-%m-%d") for d in frame.index]}
    for column in frame.columns:
        encoded[str(column)] = to_jsonable(frame[column].tolist())
    return encoded


def frame_from_json(encoded: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    columns = {k: v for k, v in encoded.items() if k != "dates"}
    frame = pd.DataFrame(columns, index=pd.DatetimeIndex(pd.to_datetime(encoded["dates"])))
    return frame.astype("float64")
