"""Market data for every front end: each fetch goes through the execution cache with the TTL of
its kind of data, and comes back as a typed model that is the same for every user.

Cache keys hold the tool, the symbol, the provider's identity of the data (offline: the file's
folder, size and modification time; Yahoo: the provider) and, for analyses, the schema
version of the model, so another folder, an edited file or an older shape is never served.
Personalisation (alerts, position size) happens after the cache (`services.analysis`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from stock_agent.core.limits import HISTORY_DAYS, MAX_NEWS
from stock_agent.core.models import (
    Analysis,
    BarsSummary,
    DailyBars,
    Fundamentals,
    Model,
    News,
    NewsItem,
    Quote,
    schema_version,
)
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

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class FetchEvent:
    """One symbol fetched for a tool, e.g. to show "analysing AAPL (cached)" in the chat."""

    tool: str
    symbol: str
    cached: bool
    seconds: float
    error: str | None = None


Listener = Callable[[FetchEvent], None]


class _Uncacheable(Exception):
    """Carries a result that must not be cached (it was degraded by a passing failure)."""

    def __init__(self, value: Any) -> None:
        super().__init__("uncacheable result")
        self.value = value


class MarketService:
    """Quotes, analyses, fundamentals and news for symbols, through the cache when there is one.
    `listener` (here or per call) hears one `FetchEvent` per symbol fetched."""

    def __init__(
        self,
        provider: MarketDataProvider,
        cache: ExecutionCache | None,
        *,
        benchmark_symbol: str = "SPY",
        listener: Listener | None = None,
        max_workers: int = 8,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.benchmark_symbol = normalize_symbol(benchmark_symbol)
        self.listener = listener
        self.max_workers = max(1, max_workers)

    @property
    def capabilities(self) -> frozenset[str]:
        """What the data source can answer ("quote", "history", "fundamentals", "news")."""
        return self.provider.capabilities

    # -- public API ---------------------------------------------------------------------------

    def quote(self, symbol: str, *, listener: Listener | None = None) -> Quote:
        """The latest price of `symbol` (cached for the quote TTL)."""
        sym = normalize_symbol(symbol)
        return self._fetch(
            "quote",
            sym,
            "quote",
            self._args(sym),
            lambda: self.provider.quote(sym).to_dict(),
            Quote,
            listener,
        )

    def analysis(self, symbol: str, *, listener: Listener | None = None) -> Analysis:
        """The base analysis of `symbol` (returns, indicators, signals; no alerts or position),
        computed from its daily bars and the benchmark's (cached for the bars TTL)."""
        sym = normalize_symbol(symbol)
        args = self.analysis_args(sym)
        return self._fetch(
            "analysis", sym, "bars", args, lambda: self._compute_analysis(sym), Analysis, listener
        )

    def analyses(
        self, symbols: Sequence[str], *, listener: Listener | None = None
    ) -> list[Analysis | StockAgentError]:
        """`analysis` of each symbol, fetched concurrently, in the given order. A symbol that
        fails gives its error in its place instead of failing the others."""
        normalized: list[str | StockAgentError] = []
        for raw in symbols:
            try:
                normalized.append(normalize_symbol(raw))
            except StockAgentError as exc:
                normalized.append(exc)
        unique = list(dict.fromkeys(s for s in normalized if isinstance(s, str)))

        def one(sym: str) -> Analysis | StockAgentError:
            return self._analysis_or_error(sym, listener)

        if len(unique) <= 1:
            done = {sym: one(sym) for sym in unique}
        else:
            with ThreadPoolExecutor(
                max_workers=min(self.max_workers, len(unique)), thread_name_prefix="analysis"
            ) as pool:
                done = dict(zip(unique, pool.map(one, unique), strict=True))
        return [item if not isinstance(item, str) else done[item] for item in normalized]

    def fundamentals(self, symbol: str, *, listener: Listener | None = None) -> Fundamentals:
        """Valuation and company facts of `symbol` (cached for the fundamentals TTL)."""
        sym = normalize_symbol(symbol)
        return self._fetch(
            "fundamentals",
            sym,
            "fundamentals",
            self._args(sym),
            lambda: self.provider.fundamentals(sym).to_dict(),
            Fundamentals,
            listener,
        )

    def news(self, symbol: str, limit: int = 5, *, listener: Listener | None = None) -> News:
        """The latest `limit` headlines (cached for the news TTL)."""
        sym = normalize_symbol(symbol)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_NEWS:
            raise InvalidInput(
                f"news limit must be a whole number from 1 to {MAX_NEWS}, got {limit!r}",
                fix="e.g. 5",
            )

        def fetch() -> dict[str, Any]:
            items: list[NewsItem] = list(self.provider.news(sym, limit=limit))
            return News(sym, tuple(items)).to_dict()

        return self._fetch("news", sym, "news", self._args(sym, limit=limit), fetch, News, listener)

    # -- internals ----------------------------------------------------------------------------

    def analysis_args(self, symbol: str) -> dict[str, Any]:
        """The cache arguments of `symbol`'s analysis: its data, the benchmark's data and the
        model's schema version."""
        return self._args(
            symbol,
            benchmark=self.benchmark_symbol,
            benchmark_data=self.provider.identity(self.benchmark_symbol),
            v=schema_version(Analysis),
        )

    def _args(self, symbol: str, **extra: Any) -> dict[str, Any]:
        # The source and the identity of its data are part of the key: offline sample data
        # never answers for Yahoo, another folder or an edited file never for the old one.
        return {
            "symbol": symbol,
            "source": self.provider.name,
            "data": self.provider.identity(symbol),
            **extra,
        }

    def _cached(
        self,
        tool: str,
        kind: str,
        args: dict[str, Any],
        fetch: Callable[[], Any],
        model: type[M],
    ) -> tuple[M, bool]:
        if self.cache is None:
            try:
                return model.from_dict(fetch()), False
            except _Uncacheable as degraded:
                return model.from_dict(degraded.value), False
        try:
            return self.cache.get_or_fetch(tool, args, fetch, kind, load=model.from_dict)
        except _Uncacheable as degraded:
            return model.from_dict(degraded.value), False

    def _fetch(
        self,
        tool: str,
        symbol: str,
        kind: str,
        args: dict[str, Any],
        fetch: Callable[[], Any],
        model: type[M],
        listener: Listener | None,
    ) -> M:
        started = time.perf_counter()
        hear = listener or self.listener
        try:
            value, cached = self._cached(tool, kind, args, fetch, model)
        except Exception as exc:
            self._emit(
                hear, FetchEvent(tool, symbol, False, time.perf_counter() - started, str(exc))
            )
            raise
        self._emit(hear, FetchEvent(tool, symbol, cached, time.perf_counter() - started))
        return value

    @staticmethod
    def _emit(listener: Listener | None, event: FetchEvent) -> None:
        if listener is None:
            return
        try:
            listener(event)
        except Exception:  # a display problem must not fail the fetch
            log.debug("fetch listener failed on %s", event, exc_info=True)

    def _analysis_or_error(
        self, symbol: str, listener: Listener | None
    ) -> Analysis | StockAgentError:
        try:
            return self.analysis(symbol, listener=listener)
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
        result = analyze_bars(symbol, bars, benchmark, benchmark_symbol=self.benchmark_symbol)
        if note:
            result = replace(result, notes=(*result.notes, note))
        if not cacheable:
            raise _Uncacheable(result.to_dict())
        return result.to_dict()

    def _benchmark_bars(self) -> pd.DataFrame:
        """The benchmark's closes (all beta needs), shared by every analysis through the cache."""
        sym = self.benchmark_symbol

        def fetch() -> dict[str, Any]:
            return closes_of(sym, self.provider.history(sym, days=HISTORY_DAYS)).to_dict()

        if self.cache is None:
            return closes_frame(BarsSummary.from_dict(fetch()))
        summary, _ = self.cache.get_or_fetch(
            "history",
            self._args(sym, days=HISTORY_DAYS, columns="Close", v=schema_version(BarsSummary)),
            fetch,
            "bars",
            load=BarsSummary.from_dict,
        )
        return closes_frame(summary)

    # -- pictures: charts and sparklines ------------------------------------------------------

    def daily_bars(
        self, symbol: str, days: int = HISTORY_DAYS, *, listener: Listener | None = None
    ) -> DailyBars:
        """`symbol`'s daily bars over about the last `days` calendar days, as columns (cached
        for the bars TTL): what a chart draws. The default covers a year plus the 200-day
        warm-up, so a year of SMA 200 can be drawn."""
        sym = normalize_symbol(symbol)

        def fetch() -> dict[str, Any]:
            bars = self.provider.history(sym, days=days)
            return self._bars_of(sym, bars, self.provider.name).to_dict()

        args = self._args(sym, days=days, v=schema_version(DailyBars))
        return self._fetch("daily_bars", sym, "bars", args, fetch, DailyBars, listener)

    def recent_closes(
        self, symbol: str, bars: int = 63, *, listener: Listener | None = None
    ) -> BarsSummary:
        """The dates and closes of `symbol`'s last `bars` daily bars (default: three months),
        for a sparkline. Its own small cache entry, so a hit needs neither pandas nor the
        whole history; a miss is cut from `daily_bars` (one history fetch serves both)."""
        sym = normalize_symbol(symbol)
        if isinstance(bars, bool) or not isinstance(bars, int) or bars < 2:
            raise InvalidInput(
                f"bars must be a whole number of 2 or more, got {bars!r}", fix="e.g. 63"
            )

        def fetch() -> dict[str, Any]:
            return self.daily_bars(sym, listener=listener).closes_summary(bars).to_dict()

        args = self._args(sym, bars=bars, v=schema_version(BarsSummary))
        return self._fetch("recent_closes", sym, "bars", args, fetch, BarsSummary, listener)

    @staticmethod
    def _bars_of(symbol: str, frame: pd.DataFrame, source: str) -> DailyBars:
        def column(name: str) -> tuple[float, ...]:
            return tuple(float(v) for v in frame[name].tolist())

        return DailyBars(
            symbol,
            tuple(d.strftime("%Y-%m-%d") for d in frame.index),
            column("Open"),
            column("High"),
            column("Low"),
            column("Close"),
            column("Volume"),
            source,
        )


def closes_of(symbol: str, frame: pd.DataFrame) -> BarsSummary:
    """A frame of daily bars as its dates and closes."""
    return BarsSummary(
        symbol,
        tuple(d.strftime("%Y-%m-%d") for d in frame.index),
        tuple(float(c) for c in frame["Close"].tolist()),
    )


def closes_frame(summary: BarsSummary) -> pd.DataFrame:
    import pandas as pd

    index = pd.DatetimeIndex(pd.to_datetime(list(summary.dates)))
    return pd.DataFrame({"Close": list(summary.closes)}, index=index).astype("float64")
