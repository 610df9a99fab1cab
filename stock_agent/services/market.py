"""Market data for every front end: each fetch goes through the execution cache with the TTL of
its kind of data, and comes back as a typed model that is the same for every user.

Cache keys hold the tool, the symbol, the provider's identity of the data (offline: the file's
folder, size and modification time; Yahoo: the provider) and, for analyses, the schema
version of the model, so another folder, an edited file or an older shape is never served.
Personalisation (alerts, position size) happens after the cache (`services.analysis`).

Trustworthy under a rate-limiting source: a quote or a day's bars stay valid until the next
session opens when the market is closed (`core.calendar`); each symbol's bars are fetched once
per request even when it is also the benchmark; and when the source fails in a way that may
pass (rate limit, timeout, network, 5xx) the last good result is served, marked `stale` with
the time it was fetched, rather than an error (an error only when nothing was ever fetched).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
    from stock_agent.store.cache import ExecutionCache, Lookup

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
    stale: bool = False  # the last good result, served because the source failed


Listener = Callable[[FetchEvent], None]
# Kinds whose data stops changing when the market closes (their TTL follows the calendar).
_MARKET_KINDS = ("quote", "bars")


class _Uncacheable(Exception):
    """Carries a result that must not be cached (it was degraded by a passing failure)."""

    def __init__(self, value: Any) -> None:
        super().__init__("uncacheable result")
        self.value = value


class _Slot:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: pd.DataFrame | None = None
        self.error: BaseException | None = None


class _Run:
    """The daily bars fetched during one request: each symbol's history is asked of the
    provider once, even when it is also the benchmark of the others (threads share it)."""

    def __init__(self, fetch: Callable[[str], pd.DataFrame]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}

    def bars(self, symbol: str) -> pd.DataFrame:
        from stock_agent.providers.base import FetchInterrupted, fetches_interrupted

        with self._lock:
            slot = self._slots.get(symbol)
            owner = slot is None
            if slot is None:
                slot = self._slots[symbol] = _Slot()
        if owner:
            try:
                slot.value = self._fetch(symbol)
            except BaseException as exc:
                slot.error = exc
                raise
            finally:
                slot.done.set()
        else:
            while not slot.done.wait(0.05):
                if fetches_interrupted():
                    raise FetchInterrupted("fetch interrupted")
            if slot.error is not None:
                raise slot.error
        assert slot.value is not None
        return slot.value.copy()


class MarketService:
    """Quotes, analyses, fundamentals and news for symbols, through the cache when there is one.
    `listener` (here or per call) hears one `FetchEvent` per symbol fetched. `clock` (UTC now)
    decides the market-hours TTLs; `market_hours=False` keeps the configured TTLs always."""

    def __init__(
        self,
        provider: MarketDataProvider,
        cache: ExecutionCache | None,
        *,
        benchmark_symbol: str = "SPY",
        listener: Listener | None = None,
        max_workers: int = 8,
        clock: Callable[[], datetime] | None = None,
        market_hours: bool = True,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.benchmark_symbol = normalize_symbol(benchmark_symbol)
        self.listener = listener
        self.max_workers = max(1, max_workers)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.market_hours = market_hours

    @staticmethod
    def interrupt() -> None:
        """Stop every fetch in flight now (their callers raise FetchInterrupted, a
        KeyboardInterrupt, within a fraction of a second); `resume()` lets fetches run again.
        For a front end's Ctrl-C (see `ui.progress.stop_fetches_on_ctrl_c`)."""
        from stock_agent.providers.base import interrupt_fetches

        interrupt_fetches()

    @staticmethod
    def resume() -> None:
        from stock_agent.providers.base import resume_fetches

        resume_fetches()

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
            self.quote_args(sym),
            lambda: self._stamped(self.provider.quote(sym)),
            Quote,
            listener,
        )

    def analysis(self, symbol: str, *, listener: Listener | None = None) -> Analysis:
        """The base analysis of `symbol` (returns, indicators, signals; no alerts or position),
        computed from its daily bars and the benchmark's (cached for the bars TTL)."""
        sym = normalize_symbol(symbol)
        return self._analysis(sym, self._new_run(), listener)

    def _analysis(self, sym: str, run: _Run, listener: Listener | None) -> Analysis:
        args = self.analysis_args(sym)
        return self._fetch(
            "analysis",
            sym,
            "bars",
            args,
            lambda: self._compute_analysis(sym, run),
            Analysis,
            listener,
        )

    def _new_run(self) -> _Run:
        return _Run(lambda sym: self.provider.history(sym, days=HISTORY_DAYS))

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
        run = self._new_run()  # one history fetch per symbol for the whole batch

        def one(sym: str) -> Analysis | StockAgentError:
            return self._analysis_or_error(sym, run, listener)

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
            self.fundamentals_args(sym),
            lambda: self._stamped(self.provider.fundamentals(sym)),
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
            return self._stamped(News(sym, tuple(items)))

        return self._fetch("news", sym, "news", self.news_args(sym, limit), fetch, News, listener)

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

    def quote_args(self, symbol: str) -> dict[str, Any]:
        """The cache arguments of `symbol`'s quote (every kind's carry its model's version)."""
        return self._args(symbol, v=schema_version(Quote))

    def fundamentals_args(self, symbol: str) -> dict[str, Any]:
        return self._args(symbol, v=schema_version(Fundamentals))

    def news_args(self, symbol: str, limit: int) -> dict[str, Any]:
        return self._args(symbol, limit=limit, v=schema_version(News))

    def _args(self, symbol: str, **extra: Any) -> dict[str, Any]:
        # The source and the identity of its data are part of the key: offline sample data
        # never answers for Yahoo, another folder or an edited file never for the old one.
        return {
            "symbol": symbol,
            "source": self.provider.name,
            "data": self.provider.identity(symbol),
            **extra,
        }

    def _ttl(self, kind: str) -> Callable[[int], int] | None:
        """For quotes and bars: the configured TTL while the market is open, else until the
        next session opens."""
        if not self.market_hours or kind not in _MARKET_KINDS:
            return None

        def ttl(configured: int) -> int:
            from stock_agent.core.calendar import market_ttl

            return market_ttl(configured, self.clock())

        return ttl

    def _lookup(
        self,
        tool: str,
        kind: str,
        args: dict[str, Any],
        fetch: Callable[[], Any],
        load: Callable[[Any], M],
    ) -> Lookup:
        """The cache's answer (a stale one when the source failed in a way that may pass)."""
        from stock_agent.providers.base import is_transient
        from stock_agent.store.cache import Lookup

        if self.cache is None:
            return Lookup(load(fetch()), False)
        return self.cache.lookup(
            tool, args, fetch, kind, load=load, ttl=self._ttl(kind), stale_if=is_transient
        )

    def _cached(
        self,
        tool: str,
        kind: str,
        args: dict[str, Any],
        fetch: Callable[[], Any],
        model: type[M],
    ) -> tuple[M, bool, bool]:
        """(value, cached, stale)."""
        try:
            found = self._lookup(tool, kind, args, fetch, model.from_dict)
        except _Uncacheable as degraded:
            return model.from_dict(degraded.value), False, False
        value: M = found.value
        if found.stale:
            value = self._marked_stale(value, found)
        return value, found.cached, found.stale

    def _marked_stale(self, value: M, found: Lookup) -> M:
        """`value` with `stale=True` (for models that have the field) and, for an analysis, a
        note that says since when and why."""
        names = {f.name for f in dataclasses.fields(value)}  # type: ignore[arg-type]
        if "stale" not in names:
            return value
        changes: dict[str, Any] = {"stale": True}
        fetched_at = getattr(value, "fetched_at", None)
        if fetched_at is None and found.stored_at is not None:
            fetched_at = datetime.fromtimestamp(found.stored_at, UTC).isoformat(timespec="seconds")
            changes["fetched_at"] = fetched_at
        if isinstance(value, Analysis):
            from stock_agent.core.calendar import stale_note

            why = found.error.message if isinstance(found.error, StockAgentError) else None
            note = stale_note(fetched_at, value.source or self.provider.name)
            changes["notes"] = (*value.notes, f"{note}{f' ({why})' if why else ''}")
        return replace(value, **changes)  # type: ignore[type-var]

    def _stamped(self, value: Model) -> dict[str, Any]:
        """`value` as stored: with the time it was fetched (and, for an analysis, its source)."""
        data = value.to_dict()
        data["fetched_at"] = self.clock().astimezone(UTC).isoformat(timespec="seconds")
        if isinstance(value, Analysis):
            data["source"] = self.provider.name
        return data

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
            value, cached, stale = self._cached(tool, kind, args, fetch, model)
        except Exception as exc:
            self._emit(
                hear, FetchEvent(tool, symbol, False, time.perf_counter() - started, str(exc))
            )
            raise
        seconds = time.perf_counter() - started
        self._emit(hear, FetchEvent(tool, symbol, cached, seconds, stale=stale))
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
        self, symbol: str, run: _Run, listener: Listener | None
    ) -> Analysis | StockAgentError:
        try:
            return self._analysis(symbol, run, listener)
        except StockAgentError as exc:
            return exc
        except Exception as exc:  # a bug or a bad file must not sink the other symbols
            log.warning("analysis of %s failed", symbol, exc_info=True)
            return DataSourceError(f"analysis of {symbol} failed: {exc}")

    def _compute_analysis(self, symbol: str, run: _Run) -> dict[str, Any]:
        from stock_agent.core.analysis import analyze_bars

        bars = run.bars(symbol)
        benchmark: pd.DataFrame | None
        cacheable = True
        note = None
        if symbol == self.benchmark_symbol:
            benchmark = bars
        else:
            try:
                benchmark, note = self._benchmark_bars(run)
                cacheable = note is None  # a stale benchmark: compute again next time
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
            raise _Uncacheable(self._stamped(result))
        return self._stamped(result)

    def _benchmark_bars(self, run: _Run) -> tuple[pd.DataFrame, str | None]:
        """The benchmark's closes (all beta needs), shared by every analysis through the cache
        (and, within one request, with the benchmark's own analysis); with a note when they
        are the last good ones, served because the source failed."""
        sym = self.benchmark_symbol

        def fetch() -> dict[str, Any]:
            return closes_of(sym, run.bars(sym)).to_dict()

        found = self._lookup(
            "history",
            "bars",
            self._args(sym, days=HISTORY_DAYS, columns="Close", v=schema_version(BarsSummary)),
            fetch,
            BarsSummary.from_dict,
        )
        note = None
        if found.stale:
            from stock_agent.core.calendar import stale_note

            when = (
                None
                if found.stored_at is None
                else datetime.fromtimestamp(found.stored_at, UTC).isoformat(timespec="seconds")
            )
            note = f"benchmark {sym} {stale_note(when, self.provider.name)}"
        return closes_frame(found.value), note

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
