"""The live provider: Yahoo Finance through yfinance, with bounded retries.

yfinance (and tenacity, for the retries) are imported when data is first needed, so building
the provider costs nothing; library exceptions become `stock_agent.errors` classes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from stock_agent import errors
from stock_agent.core.limits import HISTORY_DAYS
from stock_agent.core.models import Fundamentals, NewsItem, Quote
from stock_agent.core.numbers import finite
from stock_agent.core.symbols import normalize_symbol
from stock_agent.providers import register
from stock_agent.providers.base import (
    ALL_CAPABILITIES,
    ProviderCheck,
    check_days,
    check_limit,
    clean_bars,
    last_days,
    make_quote,
    quote_from_bars,
)

if TYPE_CHECKING:
    import pandas as pd
    from tenacity import RetryCallState

    from stock_agent.config import Settings

__all__ = ["YFinanceProvider"]

NETWORK_FIX = (
    "check the internet connection, or work offline with STOCK_AGENT_DATA_DIR=examples/market"
)
RATE_LIMIT_FIX = (
    "wait a minute and try again (Yahoo allows about 60 requests a minute), "
    "or work offline with STOCK_AGENT_DATA_DIR=examples/market"
)
# What `check` asks for: one small request for a symbol that always has bars.
CHECK_SYMBOL = "SPY"

T = TypeVar("T")

# yfinance's own retries are off by default (config.network.retries = 0); we retry here.
_PERIODS = [(28, "1mo"), (89, "3mo"), (180, "6mo"), (365, "1y"), (730, "2y"), (1825, "5y")]
_transient_types: tuple[type[BaseException], ...] | None = None


def _period_for(days: int) -> str:
    """The shortest yfinance period that covers `days` calendar days (bars are then trimmed)."""
    for limit, period in _PERIODS:
        if days <= limit:
            return period
    return "10y" if days <= 3650 else "max"


def _network_errors() -> tuple[type[BaseException], ...]:
    """Timeouts and connection failures from every HTTP stack yfinance may use."""
    global _transient_types
    if _transient_types is None:
        found: list[type[BaseException]] = [TimeoutError, ConnectionError]
        try:
            import requests.exceptions as rq

            found += [rq.Timeout, rq.ConnectionError, rq.ChunkedEncodingError]
        except ImportError:  # pragma: no cover - requests ships with yfinance
            pass
        try:
            import curl_cffi.requests.exceptions as cc

            found += [cc.Timeout, cc.ConnectionError]
        except ImportError:  # pragma: no cover - curl_cffi is optional for yfinance
            pass
        _transient_types = tuple(found)
    return _transient_types


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_rate_limit(exc: BaseException) -> bool:
    from yfinance.exceptions import YFRateLimitError

    return isinstance(exc, YFRateLimitError) or _http_status(exc) == 429


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: a rate limit, a timeout, a dropped connection, a 5xx reply.

    Never "no data": an unknown symbol stays unknown however often it is asked for.
    """
    if _is_rate_limit(exc) or isinstance(exc, _network_errors()):
        return True
    return _http_status(exc) in (500, 502, 503, 504)


class _StopRetrying:
    """Tenacity stop condition: no further attempt after `attempts` attempts, nor once the
    time spent (real, or slept, whichever is larger) plus the coming wait would exceed
    `seconds`. (A plain callable, so that tenacity is imported only when data is fetched.)"""

    def __init__(self, attempts: int, seconds: float) -> None:
        self.attempts = attempts
        self.seconds = seconds

    def __call__(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.attempts:
            return True
        spent = max(state.seconds_since_start or 0.0, state.idle_for)
        return spent + state.upcoming_sleep > self.seconds


def _default_ticker_factory() -> Callable[[str], Any]:
    import yfinance

    # By default yfinance logs network failures and returns an empty frame, which would
    # read as "unknown symbol" and never be retried; this makes them raise instead.
    yfinance.config.debug.hide_exceptions = False
    ticker: Callable[[str], Any] = yfinance.Ticker
    return ticker


class YFinanceProvider:
    """Yahoo Finance through yfinance, with bounded retries.

    Rate limits, timeouts and connection errors are retried with exponential backoff and
    jitter, at most `max_attempts` attempts and no new attempt after `max_wait` seconds.
    A rate limit that persists becomes RateLimited, another failure DataSourceError, no
    data UnknownSymbol. `ticker_factory(symbol)` makes a yfinance.Ticker (tests pass
    fakes); `sleep` and `backoff` (the first wait, seconds) exist so tests need not wait.
    """

    name = "yfinance"
    capabilities = ALL_CAPABILITIES

    def __init__(
        self,
        ticker_factory: Callable[[str], Any] | None = None,
        *,
        max_attempts: int = 4,
        max_wait: float = 20.0,
        backoff: float = 1.0,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._factory = ticker_factory
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    def _ticker(self, symbol: str) -> Any:
        if self._factory is None:
            self._factory = _default_ticker_factory()
        return self._factory(symbol)

    def _call(self, symbol: str, what: str, fetch: Callable[[], T]) -> T:
        """Run `fetch` with retries and turn whatever it raises into a StockAgentError."""
        from tenacity import Retrying, retry_if_exception, wait_exponential, wait_random

        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=_StopRetrying(self.max_attempts, self.max_wait),
            # backoff * 2**(n-1), at most max_backoff, plus up to `backoff` seconds of jitter
            wait=wait_exponential(multiplier=self.backoff, max=self.max_backoff)
            + wait_random(0, self.backoff),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(fetch)
        except errors.StockAgentError:
            raise
        except Exception as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise _translate(exc, symbol, what, attempts) from exc

    def history(self, symbol: str, days: int = HISTORY_DAYS) -> pd.DataFrame:
        symbol, days = normalize_symbol(symbol), check_days(days)
        period = _period_for(days)
        frame = self._call(
            symbol,
            "daily bars",
            lambda: self._ticker(symbol).history(period=period, interval="1d", auto_adjust=True),
        )
        return last_days(clean_bars(frame, symbol, f"Yahoo Finance's reply for {symbol}"), days)

    def quote(self, symbol: str) -> Quote:
        """The latest price from `fast_info`; the last two daily bars when it has none."""
        symbol = normalize_symbol(symbol)

        def read() -> tuple[float | None, float | None, str | None]:
            info = self._ticker(symbol).fast_info
            return (
                finite(_read_attr(info, "last_price")),
                finite(_read_attr(info, "previous_close")),
                _text(_read_attr(info, "currency")),
            )

        price, previous, currency = self._call(symbol, "quote", read)
        if price is not None and price > 0 and previous:
            as_of = datetime.now(UTC).isoformat(timespec="seconds")
            return make_quote(symbol, price, previous, currency, as_of, self.name)
        return quote_from_bars(symbol, self.history(symbol, days=10), currency, self.name)

    def fundamentals(self, symbol: str) -> Fundamentals:
        symbol = normalize_symbol(symbol)
        info = self._call(symbol, "fundamentals", lambda: self._ticker(symbol).info)
        if not isinstance(info, dict) or not any(
            info.get(k) is not None for k in ("longName", "shortName", "quoteType", "marketCap")
        ):
            raise errors.UnknownSymbol(symbol, "Yahoo Finance has no company data for it")
        return _fundamentals(symbol, info)

    def news(self, symbol: str, limit: int = 5) -> list[NewsItem]:
        """Up to `limit` recent headlines (Yahoo sends about 10)."""
        symbol, limit = normalize_symbol(symbol), check_limit(limit)
        raw = self._call(symbol, "news", lambda: self._ticker(symbol).news)
        items = [_news_item(entry) for entry in raw or [] if isinstance(entry, dict)]
        return [item for item in items if item is not None][:limit]

    def identity(self, symbol: str) -> str:
        """Always "yfinance": the cache TTLs are what keep live data fresh."""
        return self.name

    def check(self, timeout: float = 5.0) -> ProviderCheck:
        """One small request (5 days of CHECK_SYMBOL's bars), no retries, answered within
        `timeout` seconds of wall-clock time.

        yfinance's own timeout applies to each of its requests, and a first call may make
        several (cookie, crumb, time zone) outside it; the probe therefore runs in a daemon
        thread that is given up on after `timeout`, so `doctor` never hangs on a dead network.
        """
        outcome: list[Any] = []

        def probe() -> None:
            try:
                ticker = self._ticker(CHECK_SYMBOL)
                outcome.append(
                    ticker.history(period="5d", interval="1d", auto_adjust=True, timeout=timeout)
                )
            except Exception as exc:
                outcome.append(exc)

        thread = threading.Thread(target=probe, name="yfinance-check", daemon=True)
        thread.start()
        thread.join(max(timeout, 0.0))
        if not outcome:
            return ProviderCheck.failed(
                "unreachable",
                f"Yahoo Finance did not answer within {timeout:g} s",
                NETWORK_FIX,
            )
        try:
            return _check_outcome(outcome[0])
        except Exception as exc:  # pragma: no cover - a check never raises
            return ProviderCheck.failed("error", f"Yahoo Finance: {_describe(exc)}", NETWORK_FIX)


def _check_outcome(result: Any) -> ProviderCheck:
    """What `check`'s one request says about Yahoo Finance."""
    if isinstance(result, ImportError):
        return ProviderCheck.failed(
            "missing",
            f"yfinance cannot be imported ({_describe(result)})",
            "pip install yfinance, or work offline with STOCK_AGENT_DATA_DIR=examples/market",
        )
    if isinstance(result, BaseException):
        if _is_rate_limit(result):
            return ProviderCheck.failed(
                "rate-limited", "Yahoo Finance is rate limiting this address", RATE_LIMIT_FIX
            )
        if _is_transient(result):
            return ProviderCheck.failed(
                "unreachable", f"cannot reach Yahoo Finance ({_describe(result)})", NETWORK_FIX
            )
        return ProviderCheck.failed(
            "error",
            f"Yahoo Finance failed on {CHECK_SYMBOL} ({_describe(result)})",
            "try again later; if it persists, upgrade yfinance (pip install -U yfinance)",
        )
    try:
        bars = clean_bars(result, CHECK_SYMBOL, f"Yahoo Finance's reply for {CHECK_SYMBOL}")
    except errors.StockAgentError as exc:
        # Yahoo answered, but not with bars: a changed API, or yfinance hiding an error.
        what = (
            f"no daily bars for {CHECK_SYMBOL}"
            if isinstance(exc, errors.UnknownSymbol)
            else exc.message
        )
        return ProviderCheck.failed(
            "error",
            f"Yahoo Finance answered, but with {what}",
            "try again later; if it persists, upgrade yfinance (pip install -U yfinance)",
        )
    latest = bars.index[-1].date().isoformat()
    return ProviderCheck.passed(
        f"Yahoo Finance via yfinance (online): {CHECK_SYMBOL} answered, latest bar {latest}"
    )


def _describe(exc: BaseException) -> str:
    """`Type: message`, at most 200 characters."""
    detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return detail if len(detail) <= 200 else detail[:197] + "..."


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _read_attr(obj: Any, name: str) -> Any:
    """One fast_info field; a field yfinance cannot work out is None (the bars fill in),
    but a network failure or rate limit still propagates so it is retried."""
    try:
        return getattr(obj, name)
    except Exception as exc:
        if _is_transient(exc):
            raise
        return None


def _translate(exc: Exception, symbol: str, what: str, attempts: int) -> errors.StockAgentError:
    from yfinance.exceptions import YFTickerMissingError

    if _is_rate_limit(exc):
        return errors.RateLimited(f"{attempts} attempt(s) for {what} of {symbol}")
    if isinstance(exc, YFTickerMissingError):
        return errors.UnknownSymbol(symbol, getattr(exc, "rationale", None) or str(exc))
    if _http_status(exc) == 404:
        return errors.UnknownSymbol(symbol, "Yahoo Finance does not know it")
    detail = _describe(exc)
    if _is_transient(exc):
        return errors.DataSourceError(
            f"could not reach Yahoo Finance for {what} of {symbol} after {attempts} attempt(s) "
            f"({detail})",
            fix=NETWORK_FIX,
        )
    return errors.DataSourceError(
        f"Yahoo Finance failed on {what} of {symbol} ({detail})", fix=NETWORK_FIX
    )


def _fundamentals(symbol: str, info: dict[str, Any]) -> Fundamentals:
    dividend_pct = finite(info.get("dividendYield"))
    return Fundamentals(
        symbol=symbol,
        name=_text(info.get("longName")) or _text(info.get("shortName")),
        sector=_text(info.get("sector")),
        industry=_text(info.get("industry")),
        currency=_text(info.get("currency")),
        exchange=_text(info.get("exchange")),
        quote_type=_text(info.get("quoteType")),
        market_cap=finite(info.get("marketCap")),
        trailing_pe=finite(info.get("trailingPE")),
        forward_pe=finite(info.get("forwardPE")),
        price_to_book=finite(info.get("priceToBook")),
        # yfinance now reports dividendYield in percent (0.44 means 0.44%); we use fractions.
        dividend_yield=None if dividend_pct is None else round(dividend_pct / 100.0, 8),
        eps=finite(info.get("trailingEps")),
        forward_eps=finite(info.get("forwardEps")),
        revenue=finite(info.get("totalRevenue")),
        profit_margin=finite(info.get("profitMargins")),
        beta=finite(info.get("beta")),
        fifty_two_week_high=finite(info.get("fiftyTwoWeekHigh")),
        fifty_two_week_low=finite(info.get("fiftyTwoWeekLow")),
        source="yfinance",
    )


def _iso_time(value: Any) -> str | None:
    """An ISO 8601 UTC timestamp from an ISO string or epoch seconds."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str) and value.strip():
            moment = datetime.fromisoformat(value.strip())
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return moment.isoformat(timespec="seconds")


def _url(value: Any) -> str | None:
    return _text(value.get("url")) if isinstance(value, dict) else _text(value)


def _news_item(entry: dict[str, Any]) -> NewsItem | None:
    """One headline from yfinance's news list.

    yfinance 1.x nests each story under "content" (title, pubDate, provider.displayName,
    canonicalUrl.url); older releases had flat items (title, publisher,
    providerPublishTime, link). Both are read; an item without a title is skipped.
    """
    content = entry.get("content")
    story = content if isinstance(content, dict) else entry
    title = _text(story.get("title"))
    if not title:
        return None
    provider = story.get("provider")
    publisher = _text(provider.get("displayName")) if isinstance(provider, dict) else None
    return NewsItem(
        title=title,
        publisher=publisher or _text(story.get("publisher")),
        published=_iso_time(story.get("pubDate"))
        or _iso_time(story.get("displayTime"))
        or _iso_time(story.get("providerPublishTime")),
        link=_url(story.get("canonicalUrl"))
        or _url(story.get("clickThroughUrl"))
        or _text(story.get("link")),
    )


def _from_settings(settings: Settings) -> YFinanceProvider:
    return YFinanceProvider()


register(YFinanceProvider.name, _from_settings)
