"""The Yahoo Finance provider against a fake yfinance.Ticker: shapes, errors, retries, `check`.

The fake returns what yfinance 1.x returns (tz-aware America/New_York index, the seven
columns of `history()`, yfinance's own empty frame for an unknown symbol, nested news, the
chart metadata) and raises yfinance's real exception classes. No test touches the network
(the real yfinance, over a fake HTTP session, is in test_provider_yahoo_network.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date
from types import SimpleNamespace
from typing import Any

import curl_cffi.requests.exceptions as curl_errors
import pandas as pd
import pytest
import requests
from yfinance import utils as yf_utils
from yfinance.exceptions import YFPricesMissingError, YFRateLimitError, YFTzMissingError

from stock_agent import errors
from stock_agent.core.models import Fundamentals, NewsItem, Quote
from stock_agent.providers import yahoo as provider_module
from stock_agent.providers.base import (
    ALL_CAPABILITIES,
    BAR_COLUMNS,
    FetchInterrupted,
    ProviderCheck,
    SourceUnavailable,
    interrupt_fetches,
    resume_fetches,
)
from stock_agent.providers.yahoo import NETWORK_FIX, YFinanceProvider
from tests.conftest import MARKET_DATA

YAHOO_COLUMNS = ["Open", "High", "Low", "Close", "Volume", "Dividends", "Stock Splits"]

AAPL_INFO = {
    "longName": "Apple Inc.",
    "shortName": "Apple Inc.",
    "sector": "Technology",
    "industry": "Consumer Electronics",
    "currency": "USD",
    "exchange": "NMS",
    "quoteType": "EQUITY",
    "marketCap": 3_500_000_000_000,
    "trailingPE": 35.2,
    "forwardPE": 29.8,
    "priceToBook": 52.1,
    "dividendYield": 0.44,  # percent, as yfinance now reports it
    "trailingEps": 6.59,
    "forwardEps": 7.8,
    "totalRevenue": 391_000_000_000,
    "profitMargins": 0.2397,
    "beta": 1.24,
    "fiftyTwoWeekHigh": 260.1,
    "fiftyTwoWeekLow": 164.08,
    "trailingPegRatio": None,
}

NEWS = [
    {
        "id": "0a1b",
        "content": {
            "id": "0a1b",
            "contentType": "STORY",
            "title": "Apple unveils a thing",
            "summary": "Apple said on Thursday...",
            "pubDate": "2026-11-20T14:30:00Z",
            "displayTime": "2026-11-20T15:02:11Z",
            "provider": {"displayName": "Reuters", "url": "http://www.reuters.com/"},
            "canonicalUrl": {
                "url": "https://finance.yahoo.com/news/apple-thing.html",
                "site": "finance",
            },
            "clickThroughUrl": {"url": "https://finance.yahoo.com/news/apple-thing.html"},
        },
    },
    {
        "id": "2c3d",
        "content": {
            "id": "2c3d",
            "contentType": "VIDEO",
            "title": "Markets wrap",
            "pubDate": "2026-11-19T21:00:00Z",
            "provider": {"displayName": "Yahoo Finance Video"},
            "canonicalUrl": {"url": "https://finance.yahoo.com/video/markets-wrap.html"},
            "clickThroughUrl": None,
        },
    },
    {"id": "4e5f", "content": {"id": "4e5f", "contentType": "STORY", "title": ""}},  # no title
    # The flat shape of older yfinance releases.
    {
        "uuid": "6a7b",
        "title": "An older story",
        "publisher": "Motley Fool",
        "link": "https://finance.yahoo.com/m/older.html",
        "providerPublishTime": 1763650800,
        "type": "STORY",
    },
]


def yahoo_history(symbol: str) -> pd.DataFrame:
    """A sample CSV in the shape `Ticker.history(auto_adjust=True)` returns."""
    raw = pd.read_csv(MARKET_DATA / f"{symbol}.csv")
    index = pd.DatetimeIndex(pd.to_datetime(raw["Date"])).tz_localize("America/New_York")
    frame = pd.DataFrame(
        {
            "Open": raw["Open"].to_numpy(),
            "High": raw["High"].to_numpy(),
            "Low": raw["Low"].to_numpy(),
            "Close": raw["Close"].to_numpy(),
            "Volume": raw["Volume"].to_numpy(),
            "Dividends": 0.0,
            "Stock Splits": 0.0,
        },
        index=index.rename("Date"),
    )
    return frame


class FakeYahoo:
    """Stands in for `yfinance.Ticker` (call it with a symbol to get a ticker).

    Counts calls per method; `fail(method, *exceptions)` makes the next calls raise them
    in turn, after which calls succeed again.
    """

    known = {"AAPL", "TSLA", "NEWCO", "SPY"}

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.history_kwargs: list[dict[str, Any]] = []
        self.failures: dict[str, list[BaseException]] = {}
        # what `get_history_metadata()` gives after a chart request (regularMarketTime as
        # yfinance formats it: a Timestamp in the exchange's zone)
        self.meta: dict[str, Any] = {
            "currency": "USD",
            "regularMarketPrice": 231.5,
            "regularMarketTime": pd.Timestamp("2026-11-20 16:00", tz="America/New_York"),
        }

    def fail(self, method: str, *exceptions: BaseException) -> None:
        self.failures.setdefault(method, []).extend(exceptions)

    def record(self, method: str) -> None:
        self.calls[method] += 1
        pending = self.failures.get(method)
        if pending:
            raise pending.pop(0)

    def __call__(self, symbol: str) -> FakeTicker:
        self.calls["Ticker"] += 1
        return FakeTicker(self, symbol)


class FakeTicker:
    def __init__(self, yahoo: FakeYahoo, symbol: str) -> None:
        self.yahoo, self.ticker = yahoo, symbol

    def history(self, **kwargs: Any) -> pd.DataFrame:
        self.yahoo.history_kwargs.append(kwargs)
        self.yahoo.record("history")
        if self.ticker not in FakeYahoo.known:
            return yf_utils.empty_df()  # yfinance logs "possibly delisted" and returns this
        frame = yahoo_history(self.ticker)
        if kwargs.get("period") == "5d":
            frame = frame.tail(5)
        return frame

    def get_history_metadata(self) -> dict[str, Any]:
        # no request: the metadata came with the last chart reply
        if self.ticker not in FakeYahoo.known:
            return {}
        return dict(self.yahoo.meta)

    @property
    def info(self) -> dict[str, Any]:
        self.yahoo.record("info")
        return dict(AAPL_INFO) if self.ticker == "AAPL" else {"trailingPegRatio": None}

    @property
    def news(self) -> list[dict[str, Any]]:
        self.yahoo.record("news")
        return NEWS if self.ticker == "AAPL" else []


@pytest.fixture
def yahoo() -> FakeYahoo:
    return FakeYahoo()


@pytest.fixture
def sleeps() -> list[float]:
    return []


TODAY = date(2026, 11, 23)  # a Monday: the last bar (Friday 2026-11-20) is 3 days old


@pytest.fixture
def live(yahoo, sleeps) -> YFinanceProvider:
    return YFinanceProvider(yahoo, sleep=sleeps.append, today=lambda: TODAY)


# --- history -------------------------------------------------------------------------------


def test_history_is_normalised_to_tz_naive_dates_and_five_float_columns(live, yahoo):
    assert list(yahoo_history("AAPL").columns) == YAHOO_COLUMNS
    bars = live.history("aapl", days=800)
    assert list(bars.columns) == BAR_COLUMNS
    assert all(dtype == "float64" for dtype in bars.dtypes)
    assert bars.index.tz is None and bars.index.name == "Date"
    assert bars.index.is_monotonic_increasing
    # Local (New York) dates are kept: no shift to the previous day through UTC.
    assert bars.index[-1] == pd.Timestamp("2026-11-20")
    assert pd.Timestamp("2026-11-20") - bars.index[0] < pd.Timedelta(days=800)
    source = yahoo_history("AAPL")
    assert bars["Close"].iloc[-1] == source["Close"].iloc[-1]
    assert bars["Volume"].iloc[-1] == float(source["Volume"].iloc[-1])
    # 800 days from a start date (7 days of margin for a long weekend), not a 5-year range
    assert yahoo.history_kwargs == [
        {"start": "2024-09-07", "interval": "1d", "auto_adjust": True, "timeout": 20.0}
    ]


def test_exchange_local_dates_are_kept_east_of_utc(live, monkeypatch):
    """Tokyo midnight is the previous day in UTC: the bar must keep its Tokyo date."""
    frame = yahoo_history("AAPL")
    frame.index = frame.index.tz_localize(None).tz_localize("Asia/Tokyo")
    monkeypatch.setattr(FakeTicker, "history", lambda self, **kw: frame)
    bars = live.history("7203.T")
    assert bars.index[-1] == pd.Timestamp("2026-11-20")
    assert (bars.index == frame.index.tz_localize(None)[-len(bars) :]).all()


@pytest.mark.parametrize(
    ("days", "start"),
    [(20, "2026-10-27"), (365, "2025-11-16"), (800, "2024-09-07"), (4000, "2015-12-04")],
)
def test_history_asks_from_the_start_date_the_days_need(live, yahoo, days, start):
    """Today's code asked for the shortest covering period: 5y (2.3x the bytes) for 800 days."""
    bars = live.history("SPY", days=days)
    assert yahoo.history_kwargs[-1]["start"] == start
    assert "period" not in yahoo.history_kwargs[-1]
    assert pd.Timestamp("2026-11-20") - bars.index[0] < pd.Timedelta(days=days)


def test_same_bars_as_the_offline_provider(live):
    from stock_agent.providers.offline import CsvProvider

    pd.testing.assert_frame_equal(live.history("TSLA"), CsvProvider(MARKET_DATA).history("TSLA"))


def test_empty_frame_is_an_unknown_symbol_and_is_not_retried(live, yahoo, sleeps):
    with pytest.raises(errors.UnknownSymbol) as info:
        live.history("ZZZZ")
    assert info.value.symbol == "ZZZZ"
    assert yahoo.calls["history"] == 1 and sleeps == []


@pytest.mark.parametrize(
    "exc", [YFPricesMissingError("ZZZZ", "(period=5y)"), YFTzMissingError("ZZZZ")]
)
def test_missing_ticker_errors_are_an_unknown_symbol_and_are_not_retried(live, yahoo, sleeps, exc):
    yahoo.fail("history", exc)
    with pytest.raises(errors.UnknownSymbol, match="ZZZZ"):
        live.history("ZZZZ")
    assert yahoo.calls["history"] == 1 and sleeps == []


def test_invalid_symbol_makes_no_call(live, yahoo):
    with pytest.raises(errors.InvalidSymbol):
        live.history("not a ticker")
    assert sum(yahoo.calls.values()) == 0


# --- retries -------------------------------------------------------------------------------


def test_rate_limit_is_retried_with_growing_jittered_waits(live, yahoo, sleeps):
    yahoo.fail("history", YFRateLimitError(), YFRateLimitError(), YFRateLimitError())
    bars = live.history("AAPL")
    assert len(bars) > 0
    assert yahoo.calls["history"] == 4
    assert len(sleeps) == 3
    # backoff=1: 2**k seconds plus up to 1 second of jitter.
    for k, wait in enumerate(sleeps):
        assert 2**k <= wait <= 2**k + 1


def test_persistent_rate_limit_becomes_rate_limited(live, yahoo, sleeps):
    yahoo.fail("history", *[YFRateLimitError() for _ in range(10)])
    with pytest.raises(errors.RateLimited) as info:
        live.history("AAPL")
    assert yahoo.calls["history"] == 4  # max_attempts
    assert len(sleeps) == 3
    assert "daily bars of AAPL, 4 attempts in " in info.value.message
    assert isinstance(info.value.__cause__, YFRateLimitError)


@pytest.mark.parametrize(
    "exc",
    [
        curl_errors.Timeout("Operation timed out after 10001 milliseconds", 28),
        curl_errors.ConnectionError("Failed to connect to query2.finance.yahoo.com", 7),
        requests.exceptions.ConnectionError("Connection aborted"),
        requests.exceptions.ReadTimeout("read timed out"),
        TimeoutError("timed out"),
        curl_errors.HTTPError("HTTP Error 503", response=SimpleNamespace(status_code=503)),
        # what curl_cffi really says: one line here, without the "see this URL" tail
        curl_errors.Timeout(
            "Failed to perform, curl: (28) Connection timed out after 10002 milliseconds. "
            "See https://curl.se/libcurl/c/libcurl-errors.html first for more details.",
            28,
        ),
    ],
)
def test_network_failures_are_retried_then_reported(yahoo, sleeps, exc):
    live = YFinanceProvider(yahoo, max_attempts=3, sleep=sleeps.append)
    yahoo.fail("history", exc, exc, exc)
    with pytest.raises(errors.DataSourceError) as info:
        live.history("AAPL")
    assert yahoo.calls["history"] == 3 and len(sleeps) == 2
    assert isinstance(info.value, SourceUnavailable)  # may pass: a stale result may stand in
    assert info.value.message.startswith("could not reach Yahoo Finance for daily bars of AAPL (")
    assert type(exc).__name__ in info.value.message and "3 attempts in " in info.value.message
    assert "\n" not in str(info.value) and "curl.se" not in str(info.value)
    assert "STOCK_AGENT_DATA_DIR" in info.value.fix


def test_a_network_blip_is_survived(live, yahoo, sleeps):
    yahoo.fail("history", curl_errors.Timeout("timed out", 28))
    assert len(live.history("AAPL")) > 0
    assert yahoo.calls["history"] == 2 and len(sleeps) == 1


def test_total_wait_is_bounded(yahoo, sleeps):
    """With long waits, attempts stop before the time budget would be exceeded."""
    live = YFinanceProvider(
        yahoo, max_attempts=10, max_wait=20.0, backoff=4.0, max_backoff=60.0, sleep=sleeps.append
    )
    yahoo.fail("history", *[YFRateLimitError() for _ in range(10)])
    with pytest.raises(errors.RateLimited):
        live.history("AAPL")
    assert sum(sleeps) <= 20.0
    assert yahoo.calls["history"] == len(sleeps) + 1 < 10
    assert len(sleeps) >= 1


def test_no_retry_without_a_time_budget(yahoo):
    """max_wait=0 allows the first attempt and no wait, so nothing more."""
    live = YFinanceProvider(yahoo, max_wait=0.0, sleep=lambda s: None)
    yahoo.fail("history", YFRateLimitError(), YFRateLimitError())
    with pytest.raises(errors.RateLimited):
        live.history("AAPL")
    assert yahoo.calls["history"] == 1


def test_unexpected_errors_are_not_retried(live, yahoo, sleeps):
    yahoo.fail("history", KeyError("chart"))
    with pytest.raises(errors.DataSourceError) as info:
        live.history("AAPL")
    assert yahoo.calls["history"] == 1 and sleeps == []
    assert "Yahoo Finance failed on daily bars of AAPL" in info.value.message
    assert "KeyError" in info.value.message


def test_frame_without_prices_is_a_data_error(live, yahoo, monkeypatch):
    monkeypatch.setattr(FakeTicker, "history", lambda self, **kw: pd.DataFrame({"Close": [1.0]}))
    with pytest.raises(errors.DataSourceError, match="Open, High, Low, Volume"):
        live.history("AAPL")


# --- quote ---------------------------------------------------------------------------------


def test_a_quote_is_one_chart_request(live, yahoo):
    """Today's code read fast_info: a 1-year and a 5-day hourly chart request per quote."""
    q = live.quote("aapl")
    assert isinstance(q, Quote)
    bars = yahoo_history("AAPL")
    assert q.symbol == "AAPL" and q.price == 231.5
    assert q.previous_close == bars["Close"].iloc[-2]  # the session before the last bar's
    assert q.change == round(231.5 - bars["Close"].iloc[-2], 6)
    assert q.change_pct == round(231.5 / bars["Close"].iloc[-2] - 1, 6)
    assert q.currency == "USD" and q.source == "yfinance"
    assert q.as_of == "2026-11-20T21:00:00+00:00"  # the live price's time, in UTC
    assert yahoo.calls == Counter({"Ticker": 1, "history": 1})
    assert yahoo.history_kwargs == [
        {"period": "5d", "interval": "1d", "auto_adjust": False, "timeout": 20.0}
    ]


def test_a_quote_before_the_first_bar_of_the_day_compares_with_the_last_close(live, yahoo):
    yahoo.meta["regularMarketTime"] = pd.Timestamp("2026-11-23 09:31", tz="America/New_York")
    q = live.quote("AAPL")
    assert q.previous_close == yahoo_history("AAPL")["Close"].iloc[-1]


def test_a_quote_without_a_live_price_is_the_last_bars(live, yahoo):
    yahoo.meta = {"currency": "USD"}
    q = live.quote("TSLA")
    bars = yahoo_history("TSLA")
    assert q.price == bars["Close"].iloc[-1]
    assert q.previous_close == bars["Close"].iloc[-2]
    assert q.change_pct == pytest.approx(-0.061, abs=0.001)
    assert q.as_of == "2026-11-20"
    assert q.currency == "USD"
    assert yahoo.calls["history"] == 1


def test_a_rate_limited_quote_is_retried(live, yahoo, sleeps):
    yahoo.fail("history", YFRateLimitError())
    assert live.quote("AAPL").price == 231.5
    assert yahoo.calls["history"] == 2 and len(sleeps) == 1


def test_quote_of_an_unknown_symbol(live, yahoo):
    with pytest.raises(errors.UnknownSymbol):
        live.quote("ZZZZ")


# --- fundamentals --------------------------------------------------------------------------


def test_fundamentals_mapping(live):
    f = live.fundamentals("AAPL")
    assert isinstance(f, Fundamentals) and f.symbol == "AAPL"
    assert f.name == "Apple Inc."
    assert f.sector == "Technology" and f.industry == "Consumer Electronics"
    assert f.market_cap == 3.5e12
    assert f.trailing_pe == 35.2 and f.forward_pe == 29.8
    assert f.price_to_book == 52.1
    assert f.dividend_yield == pytest.approx(0.0044)  # 0.44 percent as a fraction
    assert f.eps == 6.59 and f.revenue == 3.91e11
    assert f.profit_margin == 0.2397 and f.beta == 1.24
    assert f.currency == "USD"
    assert f.source == "yfinance"


def test_fundamentals_missing_and_bad_values_are_none(live, monkeypatch):
    info = {
        "shortName": "Tiny Corp",
        "trailingPE": float("nan"),
        "forwardPE": "Infinity",
        "beta": None,
    }
    monkeypatch.setattr(FakeTicker, "info", property(lambda self: info))
    f = live.fundamentals("TINY")
    assert f.name == "Tiny Corp"
    for key in ("trailing_pe", "forward_pe", "beta", "dividend_yield", "sector", "market_cap"):
        assert getattr(f, key) is None, key


def test_fundamentals_of_an_unknown_symbol(live):
    with pytest.raises(errors.UnknownSymbol):
        live.fundamentals("ZZZZ")


def test_http_404_is_an_unknown_symbol(live, yahoo):
    yahoo.fail(
        "info", curl_errors.HTTPError("HTTP Error 404", response=SimpleNamespace(status_code=404))
    )
    with pytest.raises(errors.UnknownSymbol):
        live.fundamentals("AAPL")
    assert yahoo.calls["info"] == 1


# --- news ----------------------------------------------------------------------------------


def test_news_reads_nested_and_flat_items(live):
    items = live.news("AAPL", limit=10)
    assert all(isinstance(item, NewsItem) for item in items)
    assert [item.to_dict() for item in items] == [
        {
            "title": "Apple unveils a thing",
            "publisher": "Reuters",
            "published": "2026-11-20T14:30:00+00:00",
            "link": "https://finance.yahoo.com/news/apple-thing.html",
        },
        {
            "title": "Markets wrap",
            "publisher": "Yahoo Finance Video",
            "published": "2026-11-19T21:00:00+00:00",
            "link": "https://finance.yahoo.com/video/markets-wrap.html",
        },
        {
            "title": "An older story",
            "publisher": "Motley Fool",
            "published": "2025-11-20T15:00:00+00:00",
            "link": "https://finance.yahoo.com/m/older.html",
        },
    ]


def test_news_limit(live):
    assert [i.title for i in live.news("AAPL", limit=1)] == ["Apple unveils a thing"]
    with pytest.raises(errors.InvalidInput):
        live.news("AAPL", limit=0)


def test_no_news_is_an_empty_list(live):
    assert live.news("TSLA") == []


def test_news_rate_limited(live, yahoo):
    yahoo.fail("news", *[YFRateLimitError() for _ in range(4)])
    with pytest.raises(errors.RateLimited):
        live.news("AAPL")
    assert yahoo.calls["news"] == 4


# --- check, identity, capabilities -----------------------------------------------------------


def test_capabilities_and_identity(live, yahoo):
    assert live.capabilities == ALL_CAPABILITIES
    assert live.identity("AAPL") == live.identity("spy") == "yfinance"
    assert sum(yahoo.calls.values()) == 0  # identity asks nothing of Yahoo


def test_check_makes_one_small_request(live, yahoo, sleeps):
    result = live.check(timeout=3.0)  # (yfinance's own cookie and crumb: see the network tests)
    assert result == ProviderCheck(
        True, "ok", "Yahoo Finance via yfinance (online): SPY answered, latest bar 2026-11-20"
    )
    assert yahoo.history_kwargs == [
        {"period": "5d", "interval": "1d", "auto_adjust": True, "timeout": 3.0}
    ]
    assert yahoo.calls == Counter({"Ticker": 1, "history": 1}) and sleeps == []


@pytest.mark.parametrize(
    "exc",
    [
        YFRateLimitError(),
        curl_errors.HTTPError("HTTP Error 429", response=SimpleNamespace(status_code=429)),
    ],
)
def test_check_when_rate_limited(live, yahoo, sleeps, exc):
    yahoo.fail("history", exc)
    result = live.check()
    assert (result.ok, result.state) == (False, "rate-limited")
    assert "rate limiting" in result.detail
    assert result.fix and "wait a minute" in result.fix and "STOCK_AGENT_DATA_DIR" in result.fix
    assert yahoo.calls["history"] == 1 and sleeps == []  # a check is never retried


@pytest.mark.parametrize(
    "exc",
    [
        curl_errors.Timeout("Operation timed out after 5001 milliseconds", 28),
        # what curl says with no network at all
        curl_errors.ConnectionError("Could not resolve host: query2.finance.yahoo.com", 6),
        curl_errors.ConnectionError("Failed to connect to query2.finance.yahoo.com port 443", 7),
        requests.exceptions.ConnectTimeout("connect timed out"),
        requests.exceptions.ConnectionError("Max retries exceeded (NameResolutionError)"),
        TimeoutError("timed out"),
        curl_errors.HTTPError("HTTP Error 503", response=SimpleNamespace(status_code=503)),
    ],
)
def test_check_when_yahoo_cannot_be_reached(live, yahoo, sleeps, exc):
    yahoo.fail("history", exc)
    result = live.check()
    assert (result.ok, result.state, result.fix) == (False, "unreachable", NETWORK_FIX)
    assert result.detail.startswith("cannot reach Yahoo Finance (")
    assert type(exc).__name__ in result.detail
    assert yahoo.calls["history"] == 1 and sleeps == []


def test_check_gives_up_on_a_request_that_hangs(yahoo):
    """yfinance's timeout does not cover all of its requests: the check's own clock does."""
    release = threading.Event()

    def hang(self, **kwargs):
        release.wait(10)
        return yahoo_history("SPY")

    live = YFinanceProvider(yahoo, sleep=lambda s: None)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(FakeTicker, "history", hang)
            result = live.check(timeout=0.05)
    finally:
        release.set()
    assert (result.ok, result.state, result.fix) == (False, "unreachable", NETWORK_FIX)
    assert result.detail == "Yahoo Finance did not answer within 0.05 s"


def test_check_when_yahoo_answers_without_bars(live, yahoo, monkeypatch):
    # what yfinance returns when it hides an error, or when Yahoo changed its reply
    monkeypatch.setattr(FakeTicker, "history", lambda self, **kw: yf_utils.empty_df())
    result = live.check()
    assert (result.ok, result.state) == (False, "error")
    assert result.detail == "Yahoo Finance answered, but with no daily bars for SPY"
    assert result.fix and "pip install -U yfinance" in result.fix


def test_check_of_an_unexpected_failure(live, yahoo):
    yahoo.fail("history", KeyError("chart"))
    result = live.check()
    assert (result.ok, result.state) == (False, "error")
    assert "KeyError" in result.detail and result.fix


def test_check_without_yfinance_installed(monkeypatch):
    def no_yfinance(session=None):
        raise ModuleNotFoundError("No module named 'yfinance'", name="yfinance")

    monkeypatch.setattr(provider_module, "_default_ticker_factory", no_yfinance)
    result = YFinanceProvider(sleep=lambda s: None).check()
    assert (result.ok, result.state) == (False, "missing")
    assert "yfinance" in result.detail and result.fix and "pip install yfinance" in result.fix


# --- deadlines and interruptions ------------------------------------------------------------


def hanging(release: threading.Event):
    def history(self, **kwargs):
        self.yahoo.record("history")
        release.wait(60)
        return yahoo_history("SPY")

    return history


def test_a_call_that_hangs_ends_at_its_deadline(yahoo, monkeypatch):
    """Retries and waits included, a call takes at most `timeout` seconds in all."""
    release = threading.Event()
    monkeypatch.setattr(FakeTicker, "history", hanging(release))
    live = YFinanceProvider(yahoo, timeout=0.3, today=lambda: TODAY)
    try:
        with pytest.raises(SourceUnavailable) as info:
            live.history("AAPL")
    finally:
        release.set()
    assert info.value.message == "Yahoo Finance did not answer for daily bars of AAPL within 0.3 s"
    assert info.value.fix == NETWORK_FIX
    assert yahoo.calls["history"] == 1  # no time left for another attempt


def test_interrupting_stops_a_hanging_call_at_once(yahoo, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(FakeTicker, "history", hanging(release))
    live = YFinanceProvider(yahoo, timeout=120.0, today=lambda: TODAY)
    raised: list[BaseException] = []

    def call() -> None:
        try:
            live.history("AAPL")
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    try:
        while yahoo.calls["history"] == 0:  # the request is in flight
            release.wait(0.01)
        interrupt_fetches()
        worker.join(60)  # a deadlock guard: the call gives up long before its 120 s
        assert not worker.is_alive()
        assert len(raised) == 1 and isinstance(raised[0], FetchInterrupted)
        with pytest.raises(FetchInterrupted):  # and new calls too, until resumed
            live.history("SPY")
    finally:
        resume_fetches()
        release.set()
    assert len(live.history("SPY")) > 0


def test_an_interrupted_retry_wait_ends_at_once(yahoo):
    live = YFinanceProvider(yahoo, timeout=120.0, backoff=50.0, max_backoff=50.0)
    yahoo.fail("history", YFRateLimitError())
    raised: list[BaseException] = []

    def call() -> None:
        try:
            live.history("AAPL")
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    try:
        while yahoo.calls["history"] == 0:
            threading.Event().wait(0.01)
        interrupt_fetches()
        worker.join(60)
        assert not worker.is_alive() and isinstance(raised[0], FetchInterrupted)
    finally:
        resume_fetches()
    assert yahoo.calls["history"] == 1


def test_the_session_cuts_each_request_to_the_deadline_left():
    seen: list[Any] = []

    class Recording(provider_module.deadline_session_class()):
        def send(self, method, url, *args, **kwargs):
            seen.append(kwargs.get("timeout"))
            return SimpleNamespace(status_code=200, text="", url=url)

    session = Recording()
    session.get("https://fc.yahoo.com", timeout=30)  # no call running: as asked
    import time

    provider_module._call_deadline.at = time.monotonic() + 2.0
    try:
        session.get("https://fc.yahoo.com", timeout=30)  # yfinance's cookie request asks 30 s
        session.get("https://query1.finance.yahoo.com/v1/test/getcrumb")
        provider_module._call_deadline.at = time.monotonic() - 0.1
        with pytest.raises(curl_errors.Timeout, match="deadline passed before fc.yahoo.com"):
            session.get("https://fc.yahoo.com", timeout=30)
    finally:
        provider_module._call_deadline.at = None
    assert seen[0] == 30
    assert 0 < seen[1] <= 2.0 and 0 < seen[2] <= 2.0
    assert len(seen) == 3  # the late request was never sent


# --- the real yfinance, without the network ------------------------------------------------


def test_default_factory_makes_tickers_on_the_deadline_session_with_exceptions_surfaced():
    import logging

    import yfinance

    before = (yfinance.config.debug.hide_exceptions, yfinance.config.network.retries)
    yfinance.config.debug.hide_exceptions = True  # yfinance's default
    yfinance.config.network.retries = 3
    try:
        factory = provider_module._default_ticker_factory()
        ticker = factory("AAPL")  # no request is made to build a ticker
        assert isinstance(ticker, yfinance.Ticker) and ticker.ticker == "AAPL"
        assert ticker._data._session is provider_module.deadline_session()
        # Network failures must raise (and be retried) instead of becoming an empty frame;
        # yfinance does not retry on its own, outside our deadline.
        assert yfinance.config.debug.hide_exceptions is False
        assert yfinance.config.network.retries == 0
        handlers = logging.getLogger("yfinance").handlers
        assert any(isinstance(h, logging.NullHandler) for h in handlers)
    finally:
        yfinance.config.debug.hide_exceptions, yfinance.config.network.retries = before


def test_the_default_factory_is_resolved_only_when_data_is_needed(monkeypatch):
    calls = []
    monkeypatch.setattr(
        provider_module,
        "_default_ticker_factory",
        lambda session=None: calls.append(1) or FakeYahoo(),
    )
    live = YFinanceProvider(sleep=lambda s: None)
    assert calls == []
    live.history("AAPL")
    live.history("SPY")
    assert calls == [1]
