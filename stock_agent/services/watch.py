"""Watch: a user's symbols checked against their drop thresholds through the cached analysis,
each crossing fired once.

The watched symbols are the preferred ones (with the global `alert_threshold`) and every symbol
with a threshold of its own (`profile set-alert NVDA -3%`, which wins for that symbol). The
analyses come through the execution cache, so any number of watchers on one Redis cost one
fetch per symbol per cache TTL. A crossing fires once per user, symbol and bar date: the claim
is `SET NX` in Redis (`store.alerts`), so a restart or a second watcher does not repeat it and
a new bar that crosses again fires again. A claim comes before the alert is delivered: an
alert is delivered at most once (a crash between the two loses it rather than repeats it).

Time comes from an injected `Clock` and the trading hours from an injected `MarketCalendar`
(by default the exchange calendar of `core.calendar`), so tests drive the sleeping without
waiting. No terminal and no LangChain here: `ui/watch.py` renders what this returns.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from stock_agent.core.models import Analysis, Model, Profile
from stock_agent.errors import InvalidInput, StockAgentError

if TYPE_CHECKING:
    from stock_agent.services.analysis import AnalysisService
    from stock_agent.store.alerts import AlertStore

log = logging.getLogger(__name__)

DEFAULT_EVERY = 300.0  # seconds between checks while the market is open
MIN_EVERY = 10.0
MAX_EVERY = 86_400.0
# After a session opens, wait this long before the first check, so the source has its bar
# (and the cache entry that lasted the night has expired).
OPEN_GRACE = timedelta(minutes=1)
# The longest single sleep: a long wait is cut into naps that look at the clock again, so a
# machine that slept (a laptop lid) wakes the watch on time.
MAX_NAP = 60.0

_INTERVAL_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_interval(text: str) -> float:
    """`5m` -> 300.0; `30s`, `1h`, `90` (seconds). From 10 seconds to a day."""
    match = _INTERVAL_RE.match(str(text))
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()] if match else math.nan
    if not MIN_EVERY <= seconds <= MAX_EVERY:  # also refuses NaN
        raise InvalidInput(
            f"invalid interval {text!r}",
            fix=f"give {MIN_EVERY:g} seconds to a day, such as 30s, 5m or 1h",
        )
    return seconds


# --------------------------------------------------------------------------- time


class Clock(Protocol):
    """What the watch knows of time: now (UTC) and a way to wait."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real time; `sleep` is `time.sleep` (a Ctrl-C interrupts it)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class MarketCalendar(Protocol):
    """Trading hours: may the day's data still change at `now`, and when is the next open."""

    def is_open(self, now: datetime) -> bool: ...

    def next_open(self, now: datetime) -> datetime | None: ...


class ExchangeCalendar:
    """The exchange calendar of `core.calendar` (XNYS, holidays and early closes included).

    `is_open` asks `market_ttl` with a TTL no session can reach: it gives that TTL back while
    the market is open or the day's bar is still settling, and the seconds to the next open
    otherwise. When the calendar cannot answer (its library missing, a date out of range)
    both questions fall back to "open", so the watch checks at its interval."""

    _UNREACHABLE = 10**9  # seconds (31 years): longer than any closure

    def is_open(self, now: datetime) -> bool:
        from stock_agent.core.calendar import market_ttl

        return market_ttl(self._UNREACHABLE, now) == self._UNREACHABLE

    def next_open(self, now: datetime) -> datetime | None:
        from stock_agent.core.calendar import next_open

        return next_open(now)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class WatchAlert(Model):
    """One alert that fired: what `--json` prints and `--exec` reads on stdin. `change_1d` and
    `threshold` are fractions (-0.06 = -6 %); `price` the last close in the symbol's currency;
    `bar_date` the ISO date of the bar that crossed; `fired_at` an ISO 8601 UTC time;
    `reason` the model's two sentences (`--explain`), else None."""

    user_id: str
    symbol: str
    bar_date: str
    change_1d: float
    threshold: float
    price: float
    fired_at: str
    text: str
    source: str | None = None
    stale: bool = False  # the analysis was the last good one (the source was failing)
    reason: str | None = None


@dataclass(frozen=True)
class CheckResult:
    """One check: the symbols looked at, the alerts that fired now, the symbols whose crossing
    had fired before (same bar), and the symbols that could not be analysed."""

    checked_at: datetime
    symbols: tuple[str, ...]
    fired: tuple[WatchAlert, ...] = ()
    repeated: tuple[str, ...] = ()
    errors: tuple[tuple[str, StockAgentError], ...] = ()
    analyses: dict[str, Analysis] = field(default_factory=dict, compare=False, repr=False)
    profile: Profile | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Wake:
    """When the next check is due and why: "interval" or "market closed"."""

    at: datetime
    why: str


# --------------------------------------------------------------------------- the service


def watched_symbols(profile: Profile) -> list[str]:
    """The preferred symbols when there is a global threshold, then every symbol with a
    threshold of its own; each once, in that order."""
    symbols = list(profile.preferred_symbols) if profile.alert_threshold is not None else []
    for alert in profile.symbol_alerts:
        if alert.symbol not in symbols:
            symbols.append(alert.symbol)
    return symbols


def nothing_to_watch(profile: Profile) -> InvalidInput:
    if profile.alert_threshold is None and not profile.symbol_alerts:
        return InvalidInput(
            "no alert threshold set",
            fix="`stock-agent profile set alert_threshold -5%` for your preferred symbols, or "
            "`stock-agent profile set-alert NVDA -3%` for one",
        )
    return InvalidInput(
        "no symbols to watch",
        fix="add some: `stock-agent profile add-symbol AAPL MSFT`",
    )


class WatchService:
    """Checks a user's symbols and fires each crossing once (see the module docstring)."""

    def __init__(
        self,
        analysis: AnalysisService,
        alerts: AlertStore,
        *,
        calendar: MarketCalendar | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.analysis = analysis
        self.alerts = alerts
        self.calendar: MarketCalendar = calendar or ExchangeCalendar()
        self.clock: Clock = clock or SystemClock()

    def check(self, user_id: str) -> CheckResult:
        """Analyse the watched symbols now and fire the crossings not fired before. Raises
        InvalidInput when there is nothing to watch; a symbol that fails is in `errors`."""
        profile = self.analysis.profiles.get(user_id)
        symbols = watched_symbols(profile)
        if not symbols:
            raise nothing_to_watch(profile)
        batch = self.analysis.analyze(symbols, profile=profile)
        now = self.clock.now()
        fired: list[WatchAlert] = []
        repeated: list[str] = []
        errors: list[tuple[str, StockAgentError]] = []
        analyses: dict[str, Analysis] = {}
        for symbol, item in zip(symbols, batch.items, strict=True):
            if not isinstance(item, Analysis):
                errors.append((symbol, item))
                continue
            analyses[symbol] = item
            for alert in item.alerts:
                if alert.kind != "drop":
                    continue
                found = WatchAlert(
                    user_id=user_id,
                    symbol=item.symbol,
                    bar_date=item.as_of,
                    change_1d=alert.change_1d,
                    threshold=alert.threshold,
                    price=item.price,
                    fired_at=now.astimezone(UTC).isoformat(timespec="seconds"),
                    text=alert.text,
                    source=item.source,
                    stale=item.stale,
                )
                record = json.dumps(found.to_dict(), separators=(",", ":"))
                if self.alerts.claim(user_id, item.symbol, item.as_of, record):
                    fired.append(found)
                else:
                    repeated.append(item.symbol)
        return CheckResult(
            now, tuple(symbols), tuple(fired), tuple(repeated), tuple(errors), analyses, profile
        )

    def next_check(self, now: datetime, every: float) -> Wake:
        """`every` seconds on while the market is open; the next session's open (plus a minute)
        while it is closed; `every` when the calendar cannot say."""
        if self.calendar.is_open(now):
            return Wake(now + timedelta(seconds=every), "interval")
        opens = self.calendar.next_open(now)
        if opens is None or opens <= now:
            return Wake(now + timedelta(seconds=every), "interval")
        return Wake(opens + OPEN_GRACE, "market closed")

    def sleep_until(self, moment: datetime) -> None:
        """Wait until `moment` by the clock, in naps of at most a minute."""
        while (left := (moment - self.clock.now()).total_seconds()) > 0:
            self.clock.sleep(min(left, MAX_NAP))

    def run(
        self,
        user_id: str,
        *,
        every: float,
        on_check: Callable[[CheckResult], None],
        on_error: Callable[[BaseException], None],
        on_sleep: Callable[[Wake], None] | None = None,
        checks: int | None = None,
    ) -> int:
        """Check, sleep until the next check is due, and again: until `checks` checks have
        run (None: until interrupted). A check that fails (the store or the source down) is
        reported to `on_error` and tried again at the next check; there being nothing to
        watch ends the watch (InvalidInput). Returns the number of alerts fired."""
        done = fired = 0
        while True:
            try:
                result = self.check(user_id)
            except InvalidInput:
                raise
            except Exception as exc:  # a long watch outlives a store or source outage
                log.debug("watch check failed", exc_info=True)
                on_error(exc)
            else:
                fired += len(result.fired)
                on_check(result)
            done += 1
            if checks is not None and done >= checks:
                return fired
            wake = self.next_check(self.clock.now(), every)
            if on_sleep is not None:
                on_sleep(wake)
            self.sleep_until(wake.at)
