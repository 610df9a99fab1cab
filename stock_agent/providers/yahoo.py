"""The live provider: Yahoo Finance through yfinance, with bounded, quiet, interruptible calls.

Every call has one total deadline (`timeout`, default 20 s) that covers its retries, their waits
and every request yfinance makes on the way, its cookie and crumb requests included: the calls
run through `run_bounded`, and yfinance's HTTP session (`DeadlineSession`) cuts each request's
timeout to what is left of the deadline. A Ctrl-C (`interrupt_fetches`) ends the wait at once.
yfinance's log lines never reach the terminal (they go to the `yfinance` logger, shown with
--debug); each failure is one error with its fix. yfinance (and tenacity, for the retries) are
imported when data is first needed, so building the provider costs nothing.

Requests: daily bars are one chart request for the days needed (`start`, not a 5-year range;
yfinance also asks once per symbol for its time zone and keeps it on disk); a quote is one chart
request (5 daily bars and the live price from the same reply).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from stock_agent import errors
from stock_agent.core.limits import HISTORY_DAYS
from stock_agent.core.models import Fundamentals, NewsItem, Quote
from stock_agent.core.numbers import finite
from stock_agent.core.symbols import normalize_symbol
from stock_agent.providers import register
from stock_agent.providers.base import (
    ALL_CAPABILITIES,
    DeadlineExceeded,
    FetchInterrupted,
    ProviderCheck,
    SourceUnavailable,
    check_days,
    check_limit,
    clean_bars,
    interruptible_sleep,
    last_days,
    make_quote,
    quote_from_bars,
    run_bounded,
)

if TYPE_CHECKING:
    import pandas as pd
    from tenacity import RetryCallState

    from stock_agent.config import Settings

__all__ = ["DEFAULT_TIMEOUT", "YFinanceProvider", "deadline_session"]

log = logging.getLogger(__name__)

NETWORK_FIX = (
    "check the internet connection, or work offline with STOCK_AGENT_DATA_DIR=examples/market"
)
RATE_LIMIT_FIX = (
    "wait a minute and try again (Yahoo allows about 60 requests a minute), "
    "or work offline with STOCK_AGENT_DATA_DIR=examples/market"
)
# What `check` asks for: one small request for a symbol that always has bars.
CHECK_SYMBOL = "SPY"
DEFAULT_TIMEOUT = 20.0
# Days asked for beyond `days`: the last bar may be a long weekend before today.
_START_MARGIN_DAYS = 7

T = TypeVar("T")

_transient_types: tuple[type[BaseException], ...] | None = None
# The deadline (time.monotonic) of the provider call running in this thread, for the session.
_call_deadline = threading.local()


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


# --- yfinance, set up once -------------------------------------------------------------------

_session_class: type | None = None
_session: Any = None
_setup_lock = threading.Lock()


def deadline_session_class() -> type:
    """A curl_cffi Session whose every request ends by the deadline of the provider call that
    runs in its thread (yfinance's cookie and crumb requests ask for 30 s each otherwise), and
    that refuses to start a request once that deadline has passed. Subclasses may replace
    `send` (a recording fake for tests and benchmarks)."""
    global _session_class
    if _session_class is None:
        from curl_cffi import requests as curl_requests

        class DeadlineSession(curl_requests.Session):  # type: ignore[type-arg]
            def request(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:
                deadline = getattr(_call_deadline, "at", None)
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise curl_requests.exceptions.Timeout(
                            f"the call's deadline passed before {_host(url)} was asked"
                        )
                    asked = kwargs.get("timeout")
                    if isinstance(asked, int | float) and not isinstance(asked, bool):
                        kwargs["timeout"] = max(0.05, min(float(asked), left))
                    else:
                        kwargs["timeout"] = max(0.05, left)
                return self.send(method, url, *args, **kwargs)

            def send(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:
                return super().request(method, url, *args, **kwargs)

        _session_class = DeadlineSession
    return _session_class


def deadline_session() -> Any:
    """The process's one DeadlineSession (browser-like, as yfinance makes its own)."""
    global _session
    with _setup_lock:
        if _session is None:
            _session = deadline_session_class()(impersonate="chrome")
        return _session


def _quiet_yfinance() -> None:
    """Settings yfinance needs here, made explicit: network failures raise (by default it logs
    them and returns an empty frame, which would read as "unknown symbol" and never be
    retried); no retries of its own (the provider retries within its deadline); and its log
    lines go nowhere unless logging is set up (--debug), instead of Python's last-resort
    handler that prints warnings such as "Cookie/crumb fetch failed" on the terminal."""
    import yfinance

    yfinance.config.debug.hide_exceptions = False
    yfinance.config.debug.logging = False
    yfinance.config.network.retries = 0
    logger = logging.getLogger("yfinance")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    # pandas' deprecation warnings about yfinance's own calls are no news for our users
    warnings.filterwarnings("ignore", module=r"yfinance(\.|$)")


def _default_ticker_factory(session: Any = None) -> Callable[[str], Any]:
    import yfinance

    _quiet_yfinance()
    chosen = session if session is not None else deadline_session()

    def ticker(symbol: str) -> Any:
        return yfinance.Ticker(symbol, session=chosen)

    return ticker


def _host(url: str) -> str:
    match = re.match(r"[a-z]+://([^/:?#]+)", url or "")
    return match.group(1) if match else "Yahoo Finance"


class YFinanceProvider:
    """Yahoo Finance through yfinance, each call bounded by `timeout` seconds in all.

    Rate limits, timeouts and connection errors are retried with exponential backoff and
    jitter, at most `max_attempts` attempts, no new attempt once the waits would pass
    `max_wait` (default: `timeout`), and nothing at all past `timeout`. A rate limit that
    persists becomes RateLimited, a network failure SourceUnavailable (both "may pass": a
    stale result can be served), another failure DataSourceError, no data UnknownSymbol.
    `ticker_factory(symbol)` makes a yfinance.Ticker (tests pass fakes), `session` is the HTTP
    session yfinance uses (default: the process's DeadlineSession); `sleep` and `backoff`
    (the first wait, seconds) exist so tests need not wait.
    """

    name = "yfinance"
    capabilities = ALL_CAPABILITIES

    def __init__(
        self,
        ticker_factory: Callable[[str], Any] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = 4,
        max_wait: float | None = None,
        backoff: float = 1.0,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = interruptible_sleep,
        session: Any = None,
        today: Callable[[], date] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self._factory = ticker_factory
        self._session = session
        self.timeout = float(timeout)
        self.max_attempts = max_attempts
        self.max_wait = self.timeout if max_wait is None else max_wait
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._today = today or (lambda: datetime.now(UTC).date())

    def _ticker(self, symbol: str) -> Any:
        if self._factory is None:
            self._factory = _default_ticker_factory(self._session)
        return self._factory(symbol)

    def _bounded(self, fetch: Callable[[], T], deadline: float, what: str) -> T:
        """One attempt: `fetch` in a helper thread, its requests cut to `deadline`."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(self.timeout)

        def attempt() -> T:
            _call_deadline.at = deadline
            try:
                return fetch()
            finally:
                _call_deadline.at = None

        try:
            return run_bounded(attempt, left, name=what.replace(" ", "-"))
        except DeadlineExceeded as exc:
            raise DeadlineExceeded(self.timeout) from exc

    def _call(self, symbol: str, what: str, fetch: Callable[[], T]) -> T:
        """Run `fetch` with retries within the deadline, and turn whatever it raises into a
        StockAgentError (FetchInterrupted, a Ctrl-C, passes through)."""
        from tenacity import Retrying, retry_if_exception, wait_exponential, wait_random

        deadline = time.monotonic() + self.timeout
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=_StopRetrying(self.max_attempts, min(self.max_wait, self.timeout)),
            # backoff * 2**(n-1), at most max_backoff, plus up to `backoff` seconds of jitter
            wait=wait_exponential(multiplier=self.backoff, max=self.max_backoff)
            + wait_random(0, self.backoff),
            sleep=self._sleep,
            reraise=True,
        )
        started = time.monotonic()
        try:
            result: T = retrying(self._bounded, fetch, deadline, what)
            return result
        except (errors.StockAgentError, FetchInterrupted):
            raise
        except Exception as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            log.debug("Yahoo Finance: %s of %s failed", what, symbol, exc_info=True)
            raise _translate(exc, symbol, what, attempts, time.monotonic() - started) from exc

    def history(self, symbol: str, days: int = HISTORY_DAYS) -> pd.DataFrame:
        """The bars of about the last `days` calendar days: one chart request from a start
        date (not a fixed range such as 5 years, which would download 2.3x the bytes)."""
        symbol, days = normalize_symbol(symbol), check_days(days)
        start = (self._today() - timedelta(days=days + _START_MARGIN_DAYS)).isoformat()
        frame = self._call(
            symbol,
            "daily bars",
            lambda: self._ticker(symbol).history(
                start=start, interval="1d", auto_adjust=True, timeout=self.timeout
            ),
        )
        return last_days(clean_bars(frame, symbol, f"Yahoo Finance's reply for {symbol}"), days)

    def quote(self, symbol: str) -> Quote:
        """The latest price from one chart request: the last 5 daily bars (as traded, not
        adjusted) and the reply's live price and time."""
        symbol = normalize_symbol(symbol)

        def read() -> tuple[Any, dict[str, Any]]:
            ticker = self._ticker(symbol)
            frame = ticker.history(
                period="5d", interval="1d", auto_adjust=False, timeout=self.timeout
            )
            return frame, _metadata(ticker)

        frame, meta = self._call(symbol, "quote", read)
        bars = clean_bars(frame, symbol, f"Yahoo Finance's reply for {symbol}")
        currency = _text(meta.get("currency"))
        price = finite(meta.get("regularMarketPrice"))
        moment = _moment(meta.get("regularMarketTime"))
        if price is None or price <= 0 or moment is None:
            return quote_from_bars(symbol, bars, currency, self.name)
        closes = bars["Close"]
        last_bar_day = bars.index[-1].date()
        # Before today's first bar exists, the last bar is the previous session's close.
        previous: float | None
        if moment.date() > last_bar_day:
            previous = float(closes.iloc[-1])
        else:
            previous = float(closes.iloc[-2]) if len(closes) >= 2 else None
        as_of = moment.astimezone(UTC).isoformat(timespec="seconds")
        return make_quote(symbol, price, previous, currency, as_of, self.name)

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
        `timeout` seconds of wall-clock time, cookie and crumb requests included (so `doctor`
        never hangs on a dead network)."""
        deadline = time.monotonic() + max(timeout, 0.0)

        def probe() -> Any:
            ticker = self._ticker(CHECK_SYMBOL)
            return ticker.history(period="5d", interval="1d", auto_adjust=True, timeout=timeout)

        try:
            result: Any = self._bounded(probe, deadline, "check")
        except FetchInterrupted:
            raise
        except DeadlineExceeded:
            return ProviderCheck.failed(
                "unreachable",
                f"Yahoo Finance did not answer within {timeout:g} s",
                NETWORK_FIX,
            )
        except Exception as exc:
            result = exc
        try:
            return _check_outcome(result)
        except Exception as exc:  # pragma: no cover - a check never raises
            return ProviderCheck.failed("error", f"Yahoo Finance: {_describe(exc)}", NETWORK_FIX)


def _metadata(ticker: Any) -> dict[str, Any]:
    """The chart reply's metadata (no request: the history call just read it)."""
    try:
        meta = ticker.get_history_metadata()
        return {k: meta.get(k) for k in ("currency", "regularMarketPrice", "regularMarketTime")}
    except Exception:  # no metadata: the bars alone give the quote
        log.debug("no chart metadata", exc_info=True)
        return {}


def _moment(value: Any) -> datetime | None:
    """A tz-aware datetime from a pandas Timestamp, a datetime or epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            return None
    to_py = getattr(value, "to_pydatetime", None)
    if callable(to_py):
        value = to_py()
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None


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


_CURL_REASON = re.compile(r"curl: \(\d+\) (?P<reason>.*?)(?:\. See https?://\S+.*)?$", re.S)


def _describe(exc: BaseException) -> str:
    """`Type: message` on one line, at most 200 characters, without curl's "see this URL"
    tail (the whole exception is logged for --debug)."""
    message = " ".join(str(exc).split())
    found = _CURL_REASON.search(message)
    if found:
        message = found.group("reason").rstrip(".")
    detail = f"{type(exc).__name__}: {message}".strip().rstrip(":")
    return detail if len(detail) <= 200 else detail[:197] + "..."


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _translate(
    exc: Exception, symbol: str, what: str, attempts: int, seconds: float
) -> errors.StockAgentError:
    from yfinance.exceptions import YFTickerMissingError

    tries = f"{attempts} attempt{'s' if attempts != 1 else ''} in {seconds:.0f} s"
    if _is_rate_limit(exc):
        return errors.RateLimited(f"{what} of {symbol}, {tries}")
    if isinstance(exc, YFTickerMissingError):
        return errors.UnknownSymbol(symbol, getattr(exc, "rationale", None) or str(exc))
    if _http_status(exc) == 404:
        return errors.UnknownSymbol(symbol, "Yahoo Finance does not know it")
    if isinstance(exc, DeadlineExceeded):
        retried = f" ({attempts} attempts)" if attempts > 1 else ""
        return SourceUnavailable(
            f"Yahoo Finance did not answer for {what} of {symbol} within {exc.seconds:g} s"
            + retried,
            fix=NETWORK_FIX,
        )
    detail = _describe(exc)
    if _is_transient(exc):
        return SourceUnavailable(
            f"could not reach Yahoo Finance for {what} of {symbol} ({detail}; {tries})",
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
    return YFinanceProvider(timeout=settings.timeout)


register(YFinanceProvider.name, _from_settings)
