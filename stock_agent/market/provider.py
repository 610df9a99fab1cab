"""Where market data comes from: Yahoo Finance (live) or a folder of CSV files (offline).

Both providers return daily bars in one shape (ascending tz-naive dates, float columns
Open High Low Close Volume) and raise `stock_agent.errors` classes, never library ones.
yfinance is imported only when the live provider first needs it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import pandas as pd
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from stock_agent import errors
from stock_agent.market.symbols import normalize_symbol

if TYPE_CHECKING:
    from stock_agent.config import Settings

__all__ = [
    "BAR_COLUMNS",
    "CsvProvider",
    "MarketDataProvider",
    "YFinanceProvider",
    "make_provider",
    "normalize_symbol",
]

BAR_COLUMNS = ["Open", "High", "Low", "Close", "Volume"]
DEFAULT_DAYS = 800
OFFLINE_FIX = "unset STOCK_AGENT_DATA_DIR to use Yahoo Finance"
NETWORK_FIX = (
    "check the internet connection, or work offline with STOCK_AGENT_DATA_DIR=examples/market"
)

T = TypeVar("T")


@runtime_checkable
class MarketDataProvider(Protocol):
    """What the rest of the app needs from a source of market data."""

    name: str  # "yfinance" or "offline"

    def history(self, symbol: str, days: int = DEFAULT_DAYS) -> pd.DataFrame:
        """Daily bars covering about the last `days` calendar days up to the latest bar.

        Ascending tz-naive DatetimeIndex (dates) named "Date"; float64 columns exactly
        Open High Low Close Volume. Raises UnknownSymbol when there is no data.
        """
        ...

    def quote(self, symbol: str) -> dict[str, Any]:
        """{"symbol", "price", "previous_close", "change", "change_pct" (fraction),
        "currency", "as_of" (ISO), "source"}."""
        ...

    def fundamentals(self, symbol: str) -> dict[str, Any]:
        """Company facts and ratios (fractions for yields and margins); missing values None."""
        ...

    def news(self, symbol: str, limit: int = 5) -> list[dict[str, Any]]:
        """Recent headlines: [{"title", "publisher", "published" (ISO), "link"}]."""
        ...


def make_provider(settings: Settings) -> MarketDataProvider:
    """The offline provider when a data folder is configured, else Yahoo Finance."""
    if settings.data_dir:
        return CsvProvider(settings.data_dir)
    return YFinanceProvider()


# --- shared helpers -------------------------------------------------------------------------


def _check_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise errors.InvalidInput(
            f"days must be a positive whole number, got {days!r}", fix="e.g. days=365"
        )
    return days


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 50:
        raise errors.InvalidInput(f"limit must be 1 to 50, got {limit!r}", fix="e.g. limit=5")
    return limit


def _clean_bars(frame: pd.DataFrame, symbol: str, origin: str) -> pd.DataFrame:
    """Bring a frame of daily bars into the one shape every caller relies on.

    A tz-aware index keeps its local dates (a Tokyo bar stays on its Tokyo date); bars
    missing a price are dropped, a missing volume counts as 0; duplicate dates keep the last.
    """
    if frame is None or len(frame) == 0:
        raise errors.UnknownSymbol(symbol, f"no daily bars in {origin}")
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise errors.DataSourceError(f"{origin} has no {', '.join(missing)} column(s)")
    try:
        index = pd.DatetimeIndex(frame.index)
        bars = frame[BAR_COLUMNS].astype("float64")
    except (TypeError, ValueError) as exc:
        raise errors.DataSourceError(f"{origin} has unreadable bars: {exc}") from exc
    if index.tz is not None:
        index = index.tz_localize(None)
    bars.index = index.normalize().as_unit("ns").rename("Date")
    bars = bars.dropna(subset=["Open", "High", "Low", "Close"])
    bars["Volume"] = bars["Volume"].fillna(0.0)
    bars = bars[~bars.index.duplicated(keep="last")].sort_index()
    if bars.empty:
        raise errors.UnknownSymbol(symbol, f"no complete daily bars in {origin}")
    return bars


def _last_days(bars: pd.DataFrame, days: int) -> pd.DataFrame:
    """The bars in the `days` calendar days ending on the latest bar (not on today, so that
    offline data keeps working as it ages)."""
    cutoff = bars.index[-1] - pd.Timedelta(days=days)
    return bars[bars.index > cutoff].copy()


def _number(value: Any) -> float | None:
    """A finite float, or None for missing, NaN, infinite or non-numeric values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _quote_from_bars(
    symbol: str, bars: pd.DataFrame, currency: str | None, source: str
) -> dict[str, Any]:
    closes = bars["Close"]
    price = float(closes.iloc[-1])
    previous = float(closes.iloc[-2]) if len(closes) >= 2 else None
    return _quote(symbol, price, previous, currency, bars.index[-1].date().isoformat(), source)


def _quote(
    symbol: str,
    price: float,
    previous: float | None,
    currency: str | None,
    as_of: str,
    source: str,
) -> dict[str, Any]:
    change = change_pct = None
    if previous:
        change = round(price - previous, 6)
        change_pct = round(price / previous - 1.0, 6)
    return {
        "symbol": symbol,
        "price": price,
        "previous_close": previous,
        "change": change,
        "change_pct": change_pct,
        "currency": currency,
        "as_of": as_of,
        "source": source,
    }


# --- offline: CSV files ---------------------------------------------------------------------


class CsvProvider:
    """Daily bars from `{data_dir}/{SYMBOL}.csv` files in Yahoo's download format
    (Date,Open,High,Low,Close,Adj Close,Volume).

    When `Adj Close` differs from `Close`, Open/High/Low/Close are scaled by their ratio,
    which is what yfinance's auto_adjust does, so both providers give the same prices.
    The files carry no currency; `currency` (USD by default) is reported in quotes.
    """

    name = "offline"

    def __init__(self, data_dir: Path, *, currency: str | None = "USD") -> None:
        self.data_dir = Path(data_dir)
        self.currency = currency
        if not self.data_dir.is_dir():
            raise errors.ConfigError(
                f"offline data folder {self.data_dir} does not exist",
                fix="set STOCK_AGENT_DATA_DIR to a folder of SYMBOL.csv files, e.g. examples/market",
            )

    def history(self, symbol: str, days: int = DEFAULT_DAYS) -> pd.DataFrame:
        symbol, days = normalize_symbol(symbol), _check_days(days)
        return _last_days(self._load(symbol), days)

    def quote(self, symbol: str) -> dict[str, Any]:
        symbol = normalize_symbol(symbol)
        return _quote_from_bars(symbol, self._load(symbol), self.currency, self.name)

    def fundamentals(self, symbol: str) -> dict[str, Any]:
        normalize_symbol(symbol)
        raise errors.DataUnavailable("fundamentals are not available offline", fix=OFFLINE_FIX)

    def news(self, symbol: str, limit: int = 5) -> list[dict[str, Any]]:
        normalize_symbol(symbol)
        _check_limit(limit)
        raise errors.DataUnavailable("news is not available offline", fix=OFFLINE_FIX)

    def _load(self, symbol: str) -> pd.DataFrame:
        path = self.data_dir / f"{symbol}.csv"
        if not path.is_file():
            raise errors.UnknownSymbol(symbol, f"no file {path.name} in {self.data_dir}")
        fix = "expected Yahoo's download format: Date,Open,High,Low,Close,Adj Close,Volume"
        try:
            raw = pd.read_csv(path, na_values=["null"])
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            # EmptyDataError is a ValueError too.
            raise errors.DataSourceError(f"cannot read {path}: {exc}", fix=fix) from exc
        missing = [c for c in ["Date", *BAR_COLUMNS] if c not in raw.columns]
        if missing:
            raise errors.DataSourceError(f"{path} lacks column(s) {', '.join(missing)}", fix=fix)
        try:
            dates = pd.to_datetime(raw["Date"], format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise errors.DataSourceError(
                f"{path} has a Date that is not a date: {exc}", fix=fix
            ) from exc
        numeric = [*BAR_COLUMNS, *(["Adj Close"] if "Adj Close" in raw.columns else [])]
        values = {}
        for column in numeric:
            try:
                values[column] = pd.to_numeric(raw[column]).astype("float64")
            except (ValueError, TypeError) as exc:
                raise errors.DataSourceError(
                    f"{path} has a {column} value that is not a number: {exc}", fix=fix
                ) from exc
        frame = pd.DataFrame(values).set_axis(pd.DatetimeIndex(dates), axis=0)
        if "Adj Close" in frame.columns:
            ratio = frame["Adj Close"] / frame["Close"]
            ratio = ratio.where(ratio.notna() & (ratio.abs() != float("inf")), 1.0)
            for column in ["Open", "High", "Low", "Close"]:
                frame[column] = frame[column] * ratio
        return _clean_bars(frame[BAR_COLUMNS], symbol, str(path))


# --- live: Yahoo Finance --------------------------------------------------------------------

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


class _TimeBudget(stop_base):
    """Tenacity stop condition: no further attempt once the time spent (real, or slept,
    whichever is larger) plus the coming wait would exceed `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, state: Any) -> bool:
        spent = max(state.seconds_since_start or 0.0, state.idle_for)
        return spent + state.upcoming_sleep > self.seconds


def _default_ticker_factory() -> Callable[[str], Any]:
    import yfinance

    # By default yfinance logs network failures and returns an empty frame, which would
    # read as "unknown symbol" and never be retried; this makes them raise instead.
    yfinance.config.debug.hide_exceptions = False
    return yfinance.Ticker


class YFinanceProvider:
    """Yahoo Finance through yfinance, with bounded retries.

    Rate limits, timeouts and connection errors are retried with exponential backoff and
    jitter, at most `max_attempts` attempts and no new attempt after `max_wait` seconds.
    A rate limit that persists becomes RateLimited, another failure DataSourceError, no
    data UnknownSymbol. `ticker_factory(symbol)` makes a yfinance.Ticker (tests pass
    fakes); `sleep` and `backoff` (the first wait, seconds) exist so tests need not wait.
    """

    name = "yfinance"

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
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_any(stop_after_attempt(self.max_attempts), _TimeBudget(self.max_wait)),
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

    def history(self, symbol: str, days: int = DEFAULT_DAYS) -> pd.DataFrame:
        symbol, days = normalize_symbol(symbol), _check_days(days)
        period = _period_for(days)
        frame = self._call(
            symbol,
            "daily bars",
            lambda: self._ticker(symbol).history(period=period, interval="1d", auto_adjust=True),
        )
        return _last_days(_clean_bars(frame, symbol, f"Yahoo Finance's reply for {symbol}"), days)

    def quote(self, symbol: str) -> dict[str, Any]:
        """The latest price from `fast_info`; the last two daily bars when it has none."""
        symbol = normalize_symbol(symbol)

        def read() -> tuple[float | None, float | None, str | None]:
            info = self._ticker(symbol).fast_info
            return (
                _number(_read_attr(info, "last_price")),
                _number(_read_attr(info, "previous_close")),
                _text(_read_attr(info, "currency")),
            )

        price, previous, currency = self._call(symbol, "quote", read)
        if price is not None and price > 0 and previous:
            as_of = datetime.now(UTC).isoformat(timespec="seconds")
            return _quote(symbol, price, previous, currency, as_of, self.name)
        return _quote_from_bars(symbol, self.history(symbol, days=10), currency, self.name)

    def fundamentals(self, symbol: str) -> dict[str, Any]:
        symbol = normalize_symbol(symbol)
        info = self._call(symbol, "fundamentals", lambda: self._ticker(symbol).info)
        if not isinstance(info, dict) or not any(
            info.get(k) is not None for k in ("longName", "shortName", "quoteType", "marketCap")
        ):
            raise errors.UnknownSymbol(symbol, "Yahoo Finance has no company data for it")
        return _fundamentals(symbol, info)

    def news(self, symbol: str, limit: int = 5) -> list[dict[str, Any]]:
        """Up to `limit` recent headlines (Yahoo sends about 10)."""
        symbol, limit = normalize_symbol(symbol), _check_limit(limit)
        raw = self._call(symbol, "news", lambda: self._ticker(symbol).news)
        items = [_news_item(entry) for entry in raw or [] if isinstance(entry, dict)]
        return [item for item in items if item is not None][:limit]


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
    detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    if len(detail) > 200:
        detail = detail[:197] + "..."
    if _is_transient(exc):
        return errors.DataSourceError(
            f"could not reach Yahoo Finance for {what} of {symbol} after {attempts} attempt(s) "
            f"({detail})",
            fix=NETWORK_FIX,
        )
    return errors.DataSourceError(
        f"Yahoo Finance failed on {what} of {symbol} ({detail})", fix=NETWORK_FIX
    )


def _fundamentals(symbol: str, info: dict[str, Any]) -> dict[str, Any]:
    dividend_pct = _number(info.get("dividendYield"))
    return {
        "symbol": symbol,
        "name": _text(info.get("longName")) or _text(info.get("shortName")),
        "sector": _text(info.get("sector")),
        "industry": _text(info.get("industry")),
        "currency": _text(info.get("currency")),
        "exchange": _text(info.get("exchange")),
        "quote_type": _text(info.get("quoteType")),
        "market_cap": _number(info.get("marketCap")),
        "trailing_pe": _number(info.get("trailingPE")),
        "forward_pe": _number(info.get("forwardPE")),
        "price_to_book": _number(info.get("priceToBook")),
        # yfinance now reports dividendYield in percent (0.44 means 0.44%); we use fractions.
        "dividend_yield": None if dividend_pct is None else round(dividend_pct / 100.0, 8),
        "eps": _number(info.get("trailingEps")),
        "forward_eps": _number(info.get("forwardEps")),
        "revenue": _number(info.get("totalRevenue")),
        "profit_margin": _number(info.get("profitMargins")),
        "beta": _number(info.get("beta")),
        "fifty_two_week_high": _number(info.get("fiftyTwoWeekHigh")),
        "fifty_two_week_low": _number(info.get("fiftyTwoWeekLow")),
        "source": "yfinance",
    }


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


def _news_item(entry: dict[str, Any]) -> dict[str, Any] | None:
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
    return {
        "title": title,
        "publisher": publisher or _text(story.get("publisher")),
        "published": _iso_time(story.get("pubDate"))
        or _iso_time(story.get("displayTime"))
        or _iso_time(story.get("providerPublishTime")),
        "link": _url(story.get("canonicalUrl"))
        or _url(story.get("clickThroughUrl"))
        or _text(story.get("link")),
    }
