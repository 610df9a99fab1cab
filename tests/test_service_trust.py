"""Market data you can trust (issue 10), through the real cache on the test server: the cache
key follows the data (folders, edited files), the last good result is served, marked stale,
when the source fails in a way that may pass, TTLs follow the market's hours, and each symbol's
bars are fetched once per request even when it is also the benchmark."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd
import pytest

from stock_agent.cli import main
from stock_agent.core.models import Analysis
from stock_agent.errors import DataSourceError, RateLimited, UnknownSymbol
from stock_agent.providers.base import SourceUnavailable
from stock_agent.providers.offline import CsvProvider
from stock_agent.services.market import FetchEvent, MarketService
from stock_agent.store.cache import KEEP_LAST_SECONDS, ExecutionCache
from stock_agent.store.keys import KeySpace
from tests.conftest import MARKET_DATA

KEYS = KeySpace("test_agent")
TRADING = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)  # Friday, 11:00 in New York
LATER = datetime(2026, 11, 20, 17, 30, tzinfo=UTC)


class Flaky:
    """The offline provider, with `down` set to an exception every call raises; counts calls."""

    name = "yfinance"  # plays Yahoo: the one source that fails in ways that pass
    capabilities = CsvProvider.capabilities

    def __init__(self, data_dir=MARKET_DATA) -> None:
        self.inner = CsvProvider(data_dir)
        self.down: BaseException | None = None
        self.calls: Counter[tuple[str, str]] = Counter()

    def _gate(self, method: str, symbol: str) -> None:
        self.calls[(method, symbol)] += 1
        if self.down is not None:
            raise self.down

    def history(self, symbol, days=800):
        self._gate("history", symbol)
        return self.inner.history(symbol, days)

    def quote(self, symbol):
        self._gate("quote", symbol)
        return replace(self.inner.quote(symbol), source=self.name)

    def fundamentals(self, symbol):
        return self.inner.fundamentals(symbol)

    def news(self, symbol, limit=5):
        return self.inner.news(symbol, limit)

    def check(self, timeout=5.0):
        return self.inner.check(timeout)

    def identity(self, symbol):
        return self.name


@pytest.fixture
def cache(redis_client, settings) -> ExecutionCache:
    return ExecutionCache(redis_client, KEYS, settings.cache_ttls, poll_interval=0.01)


def expire(redis_client, service: MarketService, tool: str, args: dict) -> None:
    """What the TTL does, now: the value goes, the last good copy stays."""
    key = KEYS.cache(tool, args)
    assert redis_client.delete(key) == 1
    assert redis_client.exists(f"{key}:last")


# --- the cache key carries the data's identity ----------------------------------------------------


def write_aapl(folder, scale: float) -> None:
    folder.mkdir(exist_ok=True)
    raw = pd.read_csv(MARKET_DATA / "AAPL.csv")
    for column in ("Open", "High", "Low", "Close", "Adj Close"):
        raw[column] = (raw[column] * scale).round(2)
    raw.to_csv(folder / "AAPL.csv", index=False)


def analyze_json(cli_env, folder, capsys, *symbols: str) -> tuple[int, list[dict], str]:
    code = main(["--data-dir", str(folder), "analyze", *symbols, "--json"], env=cli_env)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else []), err


def test_switching_folders_never_serves_the_other_folders_prices(cli_env, tmp_path, capsys):
    write_aapl(tmp_path / "A", 1.0)
    write_aapl(tmp_path / "B", 2.0)  # B's prices are twice A's
    _, [a], _ = analyze_json(cli_env, tmp_path / "A", capsys, "AAPL")
    _, [b], _ = analyze_json(cli_env, tmp_path / "B", capsys, "AAPL")
    assert b["price"] == pytest.approx(2 * a["price"], rel=1e-3)


def test_a_folder_without_the_file_is_an_unknown_symbol(cli_env, tmp_path, capsys):
    write_aapl(tmp_path / "A", 1.0)
    (tmp_path / "empty").mkdir()
    assert analyze_json(cli_env, tmp_path / "A", capsys, "AAPL")[0] == 0
    code, out, err = analyze_json(cli_env, tmp_path / "empty", capsys, "AAPL")
    assert code == 4 and out == []
    assert err.startswith("error: unknown symbol AAPL: no file AAPL.csv in ")


def test_an_edited_file_is_read_again(cli_env, tmp_path, capsys):
    folder = tmp_path / "A"
    write_aapl(folder, 1.0)
    _, [before], _ = analyze_json(cli_env, folder, capsys, "AAPL")
    write_aapl(folder, 3.0)  # rewritten at once: not 15 minutes later
    _, [after], _ = analyze_json(cli_env, folder, capsys, "AAPL")
    assert after["price"] == pytest.approx(3 * before["price"], rel=1e-3)


# --- stale, but said so ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        RateLimited("daily bars of AAPL, 4 attempts in 19 s"),
        SourceUnavailable("Yahoo Finance did not answer for daily bars of AAPL within 20 s"),
    ],
)
def test_the_last_good_analysis_is_served_stale_when_the_source_fails(cache, redis_client, failure):
    provider = Flaky()
    events: list[FetchEvent] = []
    service = MarketService(provider, cache, clock=lambda: TRADING, listener=events.append)
    fresh = service.analysis("AAPL")
    assert fresh.stale is False and fresh.fetched_at == "2026-11-20T16:00:00+00:00"
    key = KEYS.cache("analysis", service.analysis_args("AAPL"))
    # the last good copy is kept for days, written with the value
    assert KEEP_LAST_SECONDS - 60 < redis_client.ttl(f"{key}:last") <= KEEP_LAST_SECONDS

    expire(redis_client, service, "analysis", service.analysis_args("AAPL"))
    provider.down = failure
    stale = MarketService(provider, cache, clock=lambda: LATER, listener=events.append).analysis(
        "AAPL"
    )
    assert stale.stale is True and stale.fetched_at == fresh.fetched_at
    assert stale.price == fresh.price and stale.indicators == fresh.indicators
    assert stale.notes[-1] == (f"as of 2026-11-20 16:00 UTC, Yahoo unavailable ({failure.message})")
    data = stale.to_dict()
    assert data["stale"] is True and data["fetched_at"] == "2026-11-20T16:00:00+00:00"
    assert events[-1].stale and events[-1].cached and events[-1].error is None
    assert provider.calls[("history", "AAPL")] == 2  # it did ask again


def test_a_stale_quote_is_marked_too(cache, redis_client):
    provider = Flaky()
    service = MarketService(provider, cache, clock=lambda: TRADING)
    fresh = service.quote("TSLA")
    expire(redis_client, service, "quote", service.quote_args("TSLA"))
    provider.down = RateLimited()
    stale = service.quote("TSLA")
    assert stale.stale is True and stale.price == fresh.price
    assert stale.fetched_at == fresh.fetched_at == "2026-11-20T16:00:00+00:00"


def test_without_anything_ever_fetched_the_failure_is_the_answer(cache):
    provider = Flaky()
    provider.down = RateLimited()
    with pytest.raises(RateLimited):
        MarketService(provider, cache, clock=lambda: TRADING).analysis("MSFT")


@pytest.mark.parametrize(
    "failure",
    [UnknownSymbol("AAPL", "delisted"), DataSourceError("cannot read AAPL.csv")],
)
def test_an_answer_or_a_lasting_fault_is_never_hidden_by_a_stale_result(
    cache, redis_client, failure
):
    provider = Flaky()
    service = MarketService(provider, cache, clock=lambda: TRADING)
    service.analysis("AAPL")
    expire(redis_client, service, "analysis", service.analysis_args("AAPL"))
    provider.down = failure
    with pytest.raises(type(failure)):
        service.analysis("AAPL")


def test_a_stale_benchmark_still_gives_beta_says_so_and_is_not_kept(cache, redis_client):
    class BenchmarkDown(Flaky):
        def history(self, symbol, days=800):
            if symbol == "SPY" and self.down is not None:
                self.calls[("history", symbol)] += 1
                raise self.down
            self.calls[("history", symbol)] += 1
            return self.inner.history(symbol, days)

    provider = BenchmarkDown()
    service = MarketService(provider, cache, clock=lambda: TRADING)
    fresh = service.analysis("NVDA")
    expire(redis_client, service, "analysis", service.analysis_args("NVDA"))
    history_args = service._args("SPY", days=800, columns="Close", v=_bars_version())
    redis_client.delete(KEYS.cache("history", history_args))
    provider.down = RateLimited()

    again = service.analysis("NVDA")
    assert again.stale is False  # NVDA's own bars are fresh
    assert again.indicators.beta == fresh.indicators.beta  # from SPY's last good closes
    assert any(
        n.startswith("benchmark SPY as of ") and n.endswith(", Yahoo unavailable")
        for n in again.notes
    )
    # not cached: the next request computes it again, with SPY back
    provider.down = None
    assert "Yahoo unavailable" not in " ".join(service.analysis("NVDA").notes)


def _bars_version() -> str:
    from stock_agent.core.models import BarsSummary, schema_version

    return schema_version(BarsSummary)


def test_analyze_json_says_stale_and_the_table_says_as_of_yahoo_unavailable(
    settings, redis_client, capsys
):
    """The front ends read the same flags: JSON `stale: true` with `fetched_at`, the report's
    panel and notes "as of ..., Yahoo unavailable"."""
    from rich.console import Console

    from stock_agent.ui.render import symbol_panel

    provider = Flaky()
    cache = ExecutionCache(redis_client, KEYS, settings.cache_ttls)
    service = MarketService(provider, cache, clock=lambda: TRADING)
    service.analysis("GOOGL")
    expire(redis_client, service, "analysis", service.analysis_args("GOOGL"))
    provider.down = RateLimited()
    stale = service.analysis("GOOGL")
    console = Console(width=120, record=True, color_system=None)
    console.print(symbol_panel(stale))
    text = console.export_text()
    assert "stale: as of 2026-11-20 16:00 UTC, Yahoo unavailable" in text
    assert Analysis.from_dict(json.loads(json.dumps(stale.to_dict()))).stale is True


# --- TTLs follow the market ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Friday 2026-11-20 after the close: valid until Monday 09:30 New York (14:30 UTC)
        (datetime(2026, 11, 20, 22, 0, tzinfo=UTC), 2 * 86_400 + 16 * 3600 + 1800),
        # Thanksgiving (closed): until Friday's open
        (datetime(2026, 11, 26, 15, 0, tzinfo=UTC), 23 * 3600 + 1800),
        # 10 minutes after the close: the day's bar may still change, the configured TTL
        (datetime(2026, 11, 20, 21, 10, tzinfo=UTC), None),
        # in the session: the configured TTL
        (TRADING, None),
    ],
)
def test_quote_and_bars_ttls_follow_the_market(cache, redis_client, settings, now, expected):
    service = MarketService(Flaky(), cache, clock=lambda: now)
    service.quote("AAPL")
    service.analysis("AAPL")
    quote_ttl = redis_client.ttl(KEYS.cache("quote", service.quote_args("AAPL")))
    bars_ttl = redis_client.ttl(KEYS.cache("analysis", service.analysis_args("AAPL")))
    if expected is None:
        assert 0 < quote_ttl <= settings.cache_ttls.quote
        assert settings.cache_ttls.quote < bars_ttl <= settings.cache_ttls.bars
    else:
        assert expected - 60 <= quote_ttl <= expected
        assert expected - 60 <= bars_ttl <= expected


def test_fundamentals_keep_their_own_ttl_when_the_market_is_closed(cache, redis_client, settings):
    from stock_agent.core.models import Fundamentals

    class Facts(Flaky):
        def fundamentals(self, symbol):
            return Fundamentals(symbol=symbol, name="Apple Inc.")

    closed = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday
    service = MarketService(Facts(), cache, clock=lambda: closed)
    service.fundamentals("AAPL")
    ttl = redis_client.ttl(KEYS.cache("fundamentals", service.fundamentals_args("AAPL")))
    assert settings.cache_ttls.fundamentals - 60 < ttl <= settings.cache_ttls.fundamentals


# --- each symbol once per request -------------------------------------------------------------------


def test_the_benchmark_is_fetched_once_when_it_is_also_analysed(cache):
    """Today's code downloaded SPY twice: for its own analysis and as the benchmark."""
    provider = Flaky()
    service = MarketService(provider, cache, clock=lambda: TRADING)
    results = service.analyses(["AAPL", "SPY", "MSFT", "TSLA"])
    assert [r.symbol for r in results] == ["AAPL", "SPY", "MSFT", "TSLA"]
    assert all(r.indicators.beta is not None for r in results)
    assert provider.calls == Counter({("history", s): 1 for s in ("AAPL", "SPY", "MSFT", "TSLA")})


def test_the_cache_stats_do_not_count_the_last_good_copies(cache):
    MarketService(Flaky(), cache, clock=lambda: TRADING).analyses(["AAPL", "MSFT"])
    # AAPL, MSFT and SPY's closes: three results, whatever is kept beside them
    assert cache.entries() == 3


def test_a_folder_copy_keeps_working_offline(cache, tmp_path):
    """Offline files never fail in a way that passes: nothing stale, the file's own answer."""
    shutil.copy(MARKET_DATA / "AAPL.csv", tmp_path / "AAPL.csv")
    service = MarketService(CsvProvider(tmp_path), cache, clock=lambda: TRADING)
    result = service.analysis("AAPL")
    assert result.stale is False and result.source == "offline"


def test_the_models_text_says_as_of_yahoo_unavailable_only_when_stale(cache, redis_client):
    from stock_agent.agent.format import quote_text, summarize_analysis

    provider = Flaky()
    service = MarketService(provider, cache, clock=lambda: TRADING)
    fresh, quote = service.analysis("MSFT"), service.quote("MSFT")
    assert "stale" not in summarize_analysis(fresh)
    assert "stale" not in quote_text(quote) and "fetched_at" not in quote_text(quote)

    expire(redis_client, service, "analysis", service.analysis_args("MSFT"))
    expire(redis_client, service, "quote", service.quote_args("MSFT"))
    provider.down = SourceUnavailable("could not reach Yahoo Finance")
    summary = summarize_analysis(service.analysis("MSFT"))
    assert summary["stale"] == "as of 2026-11-20 16:00 UTC, Yahoo unavailable"
    assert list(summary)[:3] == ["symbol", "as_of", "stale"]  # read before the numbers
    assert json.loads(quote_text(service.quote("MSFT")))["stale"] == (
        "as of 2026-11-20 16:00 UTC, Yahoo unavailable"
    )
