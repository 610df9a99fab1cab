"""What every source of market data provides, and the bar normalisation they share.

Every provider returns daily bars in one shape (ascending tz-naive dates named "Date", float64
columns Open High Low Close Volume), typed models for the rest, and raises `stock_agent.errors`
classes, never library ones. pandas is imported only by the functions that handle bars, so
building a provider, asking its `identity` or its `check` costs no pandas import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

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
    "MarketDataProvider",
    "ProviderCheck",
    "check_days",
    "check_limit",
    "clean_bars",
    "last_days",
    "make_quote",
    "quote_from_bars",
]

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
