"""MarketService on the offline sample data, through the real cache on the test server."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from stock_agent.core import analysis as _analysis
from stock_agent.core.models import Fundamentals, Model, NewsItem
from stock_agent.errors import (
    DataUnavailable,
    InvalidInput,
    InvalidSymbol,
    RateLimited,
    UnknownSymbol,
)
from stock_agent.providers.offline import CsvProvider
from stock_agent.services.market import FetchEvent, MarketService
from stock_agent.store.cache import ExecutionCache
from stock_agent.store.keys import KeySpace
from tests.conftest import MARKET_DATA

KEYS = KeySpace("test_agent")


class CountingProvider:
    """The offline provider, counting calls; `delay` slows history down, `failing` makes a
    symbol's history raise the given error."""

    name = "offline"
    capabilities = CsvProvider.capabilities

    def __init__(self, data_dir=MARKET_DATA, delay: float = 0.0, failing=None):
        self.inner = CsvProvider(data_dir)
        self.delay = delay
        self.failing = dict(failing or {})
        self.calls: Counter[tuple[str, str]] = Counter()
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def _count(self, method: str, symbol: str) -> None:
        with self._lock:
            self.calls[(method, symbol)] += 1

    def history(self, symbol, days=800):
        self._count("history", symbol)
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if self.delay:
                time.sleep(self.delay)
            if symbol in self.failing:
                raise self.failing[symbol]
            return self.inner.history(symbol, days)
        finally:
            with self._lock:
                self.running -= 1

    def quote(self, symbol):
        self._count("quote", symbol)
        return self.inner.quote(symbol)

    def fundamentals(self, symbol):
        self._count("fundamentals", symbol)
        return self.inner.fundamentals(symbol)

    def news(self, symbol, limit=5):
        self._count("news", symbol)
        return self.inner.news(symbol, limit)

    def check(self, timeout=5.0):
        return self.inner.check(timeout)

    def identity(self, symbol):
        return self.inner.identity(symbol)


@pytest.fixture
def cache(redis_client, settings) -> ExecutionCache:
    return ExecutionCache(redis_client, KEYS, settings.cache_ttls, poll_interval=0.01)


@pytest.fixture
def events() -> list[FetchEvent]:
    return []


def analyze_bars(*args, **kwargs) -> dict:
    return _analysis.analyze_bars(*args, **kwargs).to_dict()


def plain(value):
    """Typed results as their JSON forms (what these tests compare); errors as they are."""
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class AsDicts:
    """The service, with each result given as its `to_dict()`."""

    def __init__(self, service: MarketService) -> None:
        self.service = service

    def __getattr__(self, name):
        method = getattr(self.service, name)
        return lambda *args, **kwargs: plain(method(*args, **kwargs))


# Friday 2026-11-20, 11:00 in New York: the market is open, so the configured TTLs apply
# (tests/test_service_trust.py has the closed hours).
TRADING = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)


def make_service(cache, events, provider=None, **kwargs) -> AsDicts:
    kwargs.setdefault("clock", lambda: TRADING)
    return AsDicts(
        MarketService(provider or CountingProvider(), cache, listener=events.append, **kwargs)
    )


def without(data: dict, *keys: str) -> dict:
    return {k: v for k, v in data.items() if k not in keys}


FETCHED = ("fetched_at", "source")


def brief(events: list[FetchEvent]) -> list[tuple]:
    return [(e.tool, e.symbol, e.cached, e.error is not None) for e in events]


def test_quote_is_cached_and_reported(cache, events):
    provider = CountingProvider()
    service = make_service(cache, events, provider)

    first = service.quote(" aapl ")
    second = service.quote("AAPL")

    assert first == second
    assert without(first, "fetched_at") == without(
        CsvProvider(MARKET_DATA).quote("AAPL").to_dict(), "fetched_at"
    )
    assert first["fetched_at"] == "2026-11-20T16:00:00+00:00" and first["stale"] is False
    assert first["symbol"] == "AAPL" and first["source"] == "offline"
    assert provider.calls[("quote", "AAPL")] == 1
    assert brief(events) == [("quote", "AAPL", False, False), ("quote", "AAPL", True, False)]
    assert all(e.seconds >= 0 for e in events)


def test_analysis_is_the_base_analysis_with_the_benchmark(cache, events):
    service = make_service(cache, events)
    raw = CsvProvider(MARKET_DATA)
    expected = analyze_bars("AAPL", raw.history("AAPL"), raw.history("SPY"))

    result = service.analysis("aapl")

    assert without(result, *FETCHED) == without(expected, *FETCHED)
    assert result["source"] == "offline" and result["fetched_at"] == "2026-11-20T16:00:00+00:00"
    assert result["benchmark"] == "SPY" and result["indicators"]["beta"] is not None
    assert result["alerts"] == [] and result["position"] is None  # user-independent


def test_analysis_is_served_from_the_cache(cache, events, redis_client, settings):
    provider = CountingProvider()
    service = make_service(cache, events, provider)

    first = service.analysis("MSFT")
    second = service.analysis("MSFT")

    assert first == second
    assert provider.calls[("history", "MSFT")] == 1
    assert provider.calls[("history", "SPY")] == 1
    assert brief(events) == [("analysis", "MSFT", False, False), ("analysis", "MSFT", True, False)]
    stats = cache.stats()
    assert stats["analysis"] == {"lookups": 2, "hits": 1, "misses": 1, "hit_rate": 0.5}
    assert stats["history"]["lookups"] == 1
    # TTL of the bars kind, and the data source is part of the key
    args = service.service.analysis_args("MSFT")
    assert args["source"] == "offline" and args["benchmark"] == "SPY"
    key = KEYS.cache("analysis", args)
    assert 0 < redis_client.ttl(key) <= settings.cache_ttls.bars


def test_another_source_does_not_read_offline_entries(cache, events):
    class Live(CountingProvider):
        name = "yfinance"

    offline, live = CountingProvider(), Live()
    make_service(cache, events, offline).analysis("NVDA")
    make_service(cache, events, live).analysis("NVDA")
    assert offline.calls[("history", "NVDA")] == live.calls[("history", "NVDA")] == 1


def test_the_benchmark_is_fetched_once_for_many_concurrent_analyses(cache, events):
    provider = CountingProvider(delay=0.1)
    service = make_service(cache, events, provider)

    results = service.analyses(["AAPL", "MSFT", "NVDA", "TSLA", "GOOGL"])

    assert [r["symbol"] for r in results] == ["AAPL", "MSFT", "NVDA", "TSLA", "GOOGL"]
    assert all(r["indicators"]["beta"] is not None for r in results)
    assert provider.calls[("history", "SPY")] == 1
    assert provider.max_running > 1  # they really ran at the same time
    assert sorted(e.symbol for e in events) == ["AAPL", "GOOGL", "MSFT", "NVDA", "TSLA"]


def test_analyses_keep_order_and_put_errors_in_place(cache, events):
    provider = CountingProvider()
    service = make_service(cache, events, provider)

    results = service.analyses(["msft", "ZZZZ", "not a symbol!", "AAPL", "MSFT"])

    assert results[0]["symbol"] == "MSFT"
    assert isinstance(results[1], UnknownSymbol) and results[1].symbol == "ZZZZ"
    assert isinstance(results[2], InvalidSymbol)
    assert results[3]["symbol"] == "AAPL"
    assert results[4] == results[0] and results[4] is not results[0]  # a copy, fetched once
    assert provider.calls[("history", "MSFT")] == 1


def test_unknown_symbol_is_reported_and_remembered(cache, events):
    provider = CountingProvider()
    service = make_service(cache, events, provider)

    for _ in range(2):
        with pytest.raises(UnknownSymbol):
            service.analysis("ZZZZ")

    assert provider.calls[("history", "ZZZZ")] == 1
    assert [(e.tool, e.symbol, e.error is not None) for e in events] == [
        ("analysis", "ZZZZ", True),
        ("analysis", "ZZZZ", True),
    ]
    assert "unknown symbol ZZZZ" in events[0].error


def test_invalid_symbol_fails_before_any_fetch(cache, events):
    provider = CountingProvider()
    service = make_service(cache, events, provider)
    with pytest.raises(InvalidSymbol):
        service.quote("AAPL; DROP")
    assert not provider.calls and not events and cache.entries() == 0


def test_missing_benchmark_still_gives_an_analysis(cache, events, tmp_path):
    shutil.copy(MARKET_DATA / "AAPL.csv", tmp_path / "AAPL.csv")  # no SPY.csv here
    service = make_service(cache, events, CountingProvider(tmp_path))

    result = service.analysis("AAPL")

    assert result["indicators"]["beta"] is None and result["benchmark"] is None
    assert result["returns"]["1y"] is not None
    assert any("SPY" in note and "no file SPY.csv" in note for note in result["notes"])
    assert service.analysis("AAPL") == result
    assert brief(events)[-1] == ("analysis", "AAPL", True, False)  # a lasting gap: cached


def test_a_passing_benchmark_failure_is_not_cached(cache, events):
    provider = CountingProvider(failing={"SPY": RateLimited("429")})
    service = make_service(cache, events, provider)

    degraded = service.analysis("TSLA")
    assert degraded["indicators"]["beta"] is None
    assert any("rate limited" in note for note in degraded["notes"])

    provider.failing.clear()  # Yahoo answers again
    recovered = service.analysis("TSLA")
    assert recovered["indicators"]["beta"] is not None
    assert [e.cached for e in events] == [False, False]


def test_analysing_the_benchmark_itself(cache, events):
    result = make_service(cache, events).analysis("SPY")
    assert result["indicators"]["beta"] == pytest.approx(1.0)


def test_short_history_gives_notes_not_errors(cache, events):
    result = make_service(cache, events).analysis("NEWCO")
    assert result["bars"] == 10
    assert result["indicators"]["rsi_14"] is None
    assert any("rsi_14 needs 15 bars" in note for note in result["notes"])


def test_fundamentals_and_news_offline_are_unavailable_and_not_cached(cache, events):
    provider = CountingProvider()
    service = make_service(cache, events, provider)
    for _ in range(2):
        with pytest.raises(DataUnavailable):
            service.fundamentals("AAPL")
        with pytest.raises(DataUnavailable):
            service.news("AAPL", limit=3)
    assert provider.calls[("fundamentals", "AAPL")] == 2
    assert provider.calls[("news", "AAPL")] == 2
    assert cache.entries() == 0


def test_fundamentals_and_news_are_cached_with_their_kind(cache, events, redis_client, settings):
    class Rich(CountingProvider):
        def fundamentals(self, symbol):
            self._count("fundamentals", symbol)
            return Fundamentals(symbol=symbol, name="Apple Inc.", trailing_pe=31.2)

        def news(self, symbol, limit=5):
            self._count("news", symbol)
            return [NewsItem(title=f"headline {i}", publisher="Wire") for i in range(limit)]

    provider = Rich()
    service = make_service(cache, events, provider)
    assert service.fundamentals("aapl") == service.fundamentals("AAPL")
    assert service.news("AAPL", 2) == {
        "symbol": "AAPL",
        "items": [
            {"title": "headline 0", "publisher": "Wire", "published": None, "link": None},
            {"title": "headline 1", "publisher": "Wire", "published": None, "link": None},
        ],
        "stale": False,
        "fetched_at": "2026-11-20T16:00:00+00:00",
    }
    service.news("AAPL", 2)
    assert provider.calls[("fundamentals", "AAPL")] == provider.calls[("news", "AAPL")] == 1
    ttls = settings.cache_ttls
    fkey = KEYS.cache("fundamentals", service.service.fundamentals_args("AAPL"))
    nkey = KEYS.cache("news", service.service.news_args("AAPL", 2))
    assert ttls.news < redis_client.ttl(fkey) <= ttls.fundamentals
    assert 0 < redis_client.ttl(nkey) <= ttls.news


@pytest.mark.parametrize("limit", [0, 21, "5", True])
def test_news_limit_is_checked(cache, events, limit):
    with pytest.raises(InvalidInput):
        make_service(cache, events).news("AAPL", limit=limit)


def test_works_without_a_cache(events):
    provider = CountingProvider()
    service = make_service(None, events, provider)
    assert service.analysis("AAPL") == service.analysis("AAPL")
    assert provider.calls[("history", "AAPL")] == 2
    assert [e.cached for e in events] == [False, False]


def test_a_failing_listener_does_not_fail_the_fetch(cache):
    def broken(event):
        raise RuntimeError("display gone")

    service = MarketService(CountingProvider(), cache, listener=broken)
    assert service.quote("AAPL").symbol == "AAPL"


def test_every_kind_s_cache_key_carries_its_model_s_version(cache, events, monkeypatch):
    """A model whose stored shape changes (a field added, a nested type changed) gets a new
    version, so entries written by the older shape are never read as the new one: each kind
    misses once its model's version moves."""
    import stock_agent.services.market as market_module
    from stock_agent.core.models import schema_version

    provider = CountingProvider()
    service = make_service(cache, events, provider)
    service.quote("AAPL")
    service.analysis("AAPL")
    service.quote("AAPL")
    service.analysis("AAPL")
    assert provider.calls[("quote", "AAPL")] == 1 and provider.calls[("history", "AAPL")] == 1

    real = schema_version
    monkeypatch.setattr(market_module, "schema_version", lambda model: real(model) + "-next")
    service.quote("AAPL")
    service.analysis("AAPL")
    assert provider.calls[("quote", "AAPL")] == 2  # a miss: the quote's version moved
    assert provider.calls[("history", "AAPL")] == 2  # the analysis's and the bars' too


@dataclass(frozen=True)
class _Inner(Model):
    a: int


@dataclass(frozen=True)
class _InnerWider(Model):
    a: float


@dataclass(frozen=True)
class _Outer(Model):
    x: str
    inner: _Inner


@dataclass(frozen=True)
class _OuterMore(Model):
    x: str
    inner: _Inner
    y: int | None = None


@dataclass(frozen=True)
class _OuterNestedChanged(Model):
    x: str
    inner: _InnerWider


def test_a_model_s_version_follows_its_fields_and_nested_types():
    from stock_agent.core.models import schema_version

    versions = {schema_version(m) for m in (_Outer, _OuterMore, _OuterNestedChanged)}
    assert len(versions) == 3  # a field added, a nested field's type changed: new versions
    assert schema_version(_Outer) == schema_version(_Outer)  # stable
