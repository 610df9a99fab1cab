"""Market hours and how long market data stays valid: the New York Stock Exchange's calendar
(`exchange_calendars`' XNYS: holidays and early closes included), and the words for a result
served stale.

Outside trading hours a quote or a day's bars do not change until the next session opens, so
they stay valid until then (a Friday evening fetch lasts the weekend); while the market is open
and for a short while after the close (Yahoo settles the day's bar), the configured TTLs apply.
`exchange_calendars` (and pandas under it) is imported on the first question, never at import.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["EXCHANGE", "SETTLE", "market_ttl", "next_open", "stale_note"]

EXCHANGE = "XNYS"
# After a close, the day's bar may still be corrected for this long: fetch it again meanwhile.
SETTLE = timedelta(minutes=20)

_calendar: Any = None
_lock = threading.Lock()


def _xnys() -> Any:
    global _calendar
    with _lock:
        if _calendar is None:
            import exchange_calendars

            _calendar = exchange_calendars.get_calendar(EXCHANGE)
        return _calendar


def _minute(now: datetime | None) -> Any:
    import pandas as pd

    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return pd.Timestamp(moment).tz_convert("UTC").floor("min")


def next_open(now: datetime | None = None) -> datetime | None:
    """When the next session opens after `now` (UTC); None when the calendar cannot say."""
    try:
        return _xnys().next_open(_minute(now)).to_pydatetime()  # type: ignore[no-any-return]
    except Exception:  # outside the calendar's range, or no calendar: the caller falls back
        log.debug("no next open for %s", now, exc_info=True)
        return None


def market_ttl(configured: int, now: datetime | None = None) -> int:
    """Seconds a quote or a day's bars fetched at `now` stay valid.

    While the market is open, or within SETTLE of the last close: `configured`. Otherwise:
    until the next session opens (at least 1 s). If the calendar cannot answer (a date out of
    its range, the library missing), `configured`.
    """
    configured = max(1, int(configured))
    try:
        calendar = _xnys()
        minute = _minute(now)
        if calendar.is_open_on_minute(minute):
            return configured
        if minute - calendar.previous_close(minute) < SETTLE:
            return configured
        opens = calendar.next_open(minute)
    except Exception:
        log.debug("market calendar unavailable at %s; TTL %s s", now, configured, exc_info=True)
        return configured
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(1, int((opens.to_pydatetime() - moment).total_seconds()))


def stale_note(fetched_at: str | None, source: str | None) -> str:
    """What a stale result says about itself: "as of 2026-11-20 14:32 UTC, Yahoo unavailable"."""
    when = "an earlier fetch"
    if fetched_at:
        try:
            moment = datetime.fromisoformat(fetched_at)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            when = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        except ValueError:
            when = fetched_at
    who = "Yahoo" if source == "yfinance" else (source or "the data source")
    return f"as of {when}, {who} unavailable"
