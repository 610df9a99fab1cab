"""What every source of market data provides, and the bar normalisation they share.

Every provider returns daily bars in one shape (ascending tz-naive dates named "Date", float64
columns Open High Low Close Volume), typed models for the rest, and raises `stock_agent.errors`
classes, never library ones. pandas is imported only by the functions that handle bars, so
building a provider, asking its `identity` or its `check` costs no pandas import.

It also holds what keeps a fetch bounded and interruptible: `run_bounded` runs a blocking call
(a network request) under a total deadline, in a helper thread, while the caller waits in short
slices that `interrupt_fetches()` (a Ctrl-C handler) ends at once; `SourceUnavailable` marks a
failure that may pass (rate limit, timeout, network, 5xx), for which a stale result may be served.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, TypeVar, runtime_checkable

from stock_agent import errors
from stock_agent.core.limits import HISTORY_DAYS, MAX_NEWS
from stock_agent.core.models import Fundamentals, NewsItem, Quote

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ALL_CAPABILITIES",
    "BAR_COLUMNS",
    "FUNDAMENTALS",
    "HISTORY",
    "NEWS",
    "QUOTE",
    "DeadlineExceeded",
    "FetchInterrupted",
    "MarketDataProvider",
    "ProviderCheck",
    "SourceUnavailable",
    "check_days",
    "check_limit",
    "clean_bars",
    "fetches_interrupted",
    "interrupt_fetches",
    "interruptible_sleep",
    "is_transient",
    "last_days",
    "make_quote",
    "quote_from_bars",
    "resume_fetches",
    "run_bounded",
]

T = TypeVar("T")

BAR_COLUMNS: Final = ["Open", "High", "Low", "Close", "Volume"]

# What a source can answer; the agent offers only the tools its source can answer.
QUOTE: Final = "quote"
HISTORY: Final = "history"
FUNDAMENTALS: Final = "fundamentals"
NEWS: Final = "news"
ALL_CAPABILITIES: Final = frozenset({QUOTE, HISTORY, FUNDAMENTALS, NEWS})


@dataclass(frozen=True)
class ProviderCheck:
    """A provider's answer to "do you work?", for `doctor`.

    `state` is one of "ok", "missing" (no data, or a library not installed), "unreachable"
    (network down, timeout), "rate-limited", "error" (anything else); `fix` says what to do
    when `ok` is false.
    """

    ok: bool
    state: str
    detail: str
    fix: str | None = None

    @classmethod
    def passed(cls, detail: str) -> ProviderCheck:
        return cls(True, "ok", detail)

    @classmethod
    def failed(cls, state: str, detail: str, fix: str | None) -> ProviderCheck:
        return cls(False, state, detail, fix)


@runtime_checkable
class MarketDataProvider(Protocol):
    """What the rest of the app needs from a source of market data.

    A method outside `capabilities` raises DataUnavailable (with the fix) rather than being
    absent, so a caller that asks anyway gets one clear line.
    """

    name: str  # "offline", "yfinance", ...: part of every cache key
    capabilities: frozenset[str]  # a subset of ALL_CAPABILITIES

    def history(self, symbol: str, days: int = HISTORY_DAYS) -> pd.DataFrame:
        """Daily bars covering about the last `days` calendar days up to the latest bar.

        Ascending tz-naive DatetimeIndex (dates) named "Date"; float64 columns exactly
        Open High Low Close Volume. Raises UnknownSymbol when there is no data.
        """
        ...

    def quote(self, symbol: str) -> Quote:
        """The latest price; `change_pct` a fraction, `as_of` an ISO date or time."""
        ...

    def fundamentals(self, symbol: str) -> Fundamentals:
        """Company facts and ratios (fractions for yields and margins); missing values None."""
        ...

    def news(self, symbol: str, limit: int = 5) -> list[NewsItem]:
        """Up to `limit` (1 to MAX_NEWS) recent headlines, newest first as the source sends them."""
        ...

    def check(self, timeout: float = 5.0) -> ProviderCheck:
        """Whether the source works now (at most one small request, within about `timeout`
        seconds). Never raises: every failure is a ProviderCheck with its fix."""
        ...

    def identity(self, symbol: str) -> str:
        """A string that changes whenever the data behind `symbol` may have changed in a way
        the cache cannot see (another folder, an edited file), for cache keys. Cheap: no
        parsing, no network."""
        ...


# --- argument checks ---------------------------------------------------------------------------


def check_days(days: int) -> int:
    """`days` if it is a positive whole number, else InvalidInput."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise errors.InvalidInput(
            f"days must be a positive whole number, got {days!r}", fix="e.g. days=365"
        )
    return days


def check_limit(limit: int) -> int:
    """`limit` if it is a whole number from 1 to MAX_NEWS, else InvalidInput."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_NEWS:
        raise errors.InvalidInput(
            f"limit must be 1 to {MAX_NEWS}, got {limit!r}", fix="e.g. limit=5"
        )
    return limit


# --- bars ----------------------------------------------------------------------------------------


def clean_bars(frame: pd.DataFrame | None, symbol: str, origin: str) -> pd.DataFrame:
    """Bring a frame of daily bars into the one shape every caller relies on.

    A tz-aware index keeps its local dates (a Tokyo bar stays on its Tokyo date); bars
    missing a price are dropped, a missing volume counts as 0; duplicate dates keep the last.
    `origin` names where the frame came from, for the error messages.
    """
    import pandas as pd

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


def last_days(bars: pd.DataFrame, days: int) -> pd.DataFrame:
    """The bars in the `days` calendar days ending on the latest bar (not on today, so that
    offline data keeps working as it ages). A copy: callers may change it."""
    import pandas as pd

    cutoff = bars.index[-1] - pd.Timedelta(days=days)
    return bars[bars.index > cutoff].copy()


# --- quotes --------------------------------------------------------------------------------------


def make_quote(
    symbol: str,
    price: float,
    previous: float | None,
    currency: str | None,
    as_of: str,
    source: str,
) -> Quote:
    """A Quote with its change worked out (none without a previous close)."""
    change: float | None = None
    change_pct: float | None = None
    if previous:
        change = round(price - previous, 6)
        change_pct = round(price / previous - 1.0, 6)
    return Quote(
        symbol=symbol,
        price=price,
        previous_close=previous,
        change=change,
        change_pct=change_pct,
        currency=currency,
        as_of=as_of,
        source=source,
    )


def quote_from_bars(symbol: str, bars: pd.DataFrame, currency: str | None, source: str) -> Quote:
    """The last close as the price and the one before as the previous close, as of the last
    bar's date."""
    closes = bars["Close"]
    price = float(closes.iloc[-1])
    previous = float(closes.iloc[-2]) if len(closes) >= 2 else None
    return make_quote(symbol, price, previous, currency, bars.index[-1].date().isoformat(), source)


# --- failures that pass, and interruptions ------------------------------------------------------


class SourceUnavailable(errors.DataSourceError):
    """The data source could not answer now (a timeout, a dropped connection, a 5xx reply): it
    may work again in a moment, so the last good result may be served instead, marked stale."""


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a failure that may pass (a rate limit or SourceUnavailable), as opposed
    to an answer (an unknown symbol) or a lasting fault (a bad file)."""
    return isinstance(exc, errors.RateLimited | SourceUnavailable)


class DeadlineExceeded(TimeoutError):
    """A call that did not finish within its total deadline (`seconds`)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds = seconds


class FetchInterrupted(KeyboardInterrupt):
    """A fetch stopped by `interrupt_fetches()` (the user pressed Ctrl-C). A KeyboardInterrupt,
    so nothing that catches `Exception` swallows it and the CLI exits 130."""


_interrupted = threading.Event()
# How often a waiting caller looks at the interrupt flag: the bound on how late a Ctrl-C acts.
_SLICE = 0.05


def interrupt_fetches() -> None:
    """Stop every fetch in flight, in every thread: their callers raise FetchInterrupted within
    a fraction of a second, and new fetches do too until `resume_fetches()`. Safe to call from a
    signal handler."""
    _interrupted.set()


def resume_fetches() -> None:
    """Let fetches run again after `interrupt_fetches()`."""
    _interrupted.clear()


def fetches_interrupted() -> bool:
    return _interrupted.is_set()


def interruptible_sleep(seconds: float) -> None:
    """`time.sleep` that `interrupt_fetches()` cuts short (raising FetchInterrupted)."""
    if _interrupted.wait(max(seconds, 0.0)):
        raise FetchInterrupted("fetch interrupted")


def run_bounded(call: Callable[[], T], seconds: float, *, name: str = "fetch") -> T:
    """`call()`'s result or exception, or DeadlineExceeded when it has not finished after `seconds`;
    FetchInterrupted as soon as `interrupt_fetches()` is called.

    The call runs in a daemon thread: a library blocked in a network read cannot be stopped,
    but nobody waits for it any longer (give it its own timeouts, so it ends soon after). The
    caller waits in short slices, so a Ctrl-C in the main thread acts at once.
    """
    if _interrupted.is_set():
        raise FetchInterrupted("fetch interrupted")
    done = threading.Event()
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller, whatever it is
            outcome.append((False, exc))
        finally:
            done.set()

    thread = threading.Thread(target=target, name=f"stock-agent-{name}", daemon=True)
    deadline = time.monotonic() + max(seconds, 0.0)
    thread.start()
    while not done.wait(min(_SLICE, max(deadline - time.monotonic(), 0.0))):
        if _interrupted.is_set():
            raise FetchInterrupted("fetch interrupted")
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(seconds)
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[return-value]
    assert isinstance(value, BaseException)
    raise value
