"""A user's token usage and cost by day (`stock-agent usage`), read from the per-day hashes
the turn's save script adds to (`KeySpace.usage_day`: fields `turns|MODEL`, `in|MODEL`,
`out|MODEL`, `cost|MODEL`, `unpriced|MODEL`). They are kept like the profile (no TTL): one
small hash per user per day with turns. Reading a range is one pipelined round trip.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from stock_agent.core.usage import DayUsage, UsageTotals, stored_count
from stock_agent.errors import InvalidInput
from stock_agent.store.errors import is_wrong_type, raise_reply, translated

if TYPE_CHECKING:
    import redis

    from stock_agent.store.keys import KeySpace

# The longest range one `usage` read covers (ten years of days).
MAX_DAYS = 3660
_METRICS = ("turns", "in", "out", "cost", "unpriced")


def parse_since(raw: str, today: dt.date) -> dt.date:
    """`7d`, `4w`, `12m` (months of 30 days) or an ISO date -> the first day counted."""
    text = raw.strip().lower()
    units = {"d": 1, "w": 7, "m": 30}
    if text[-1:] in units and text[:-1].isdigit():
        days = int(text[:-1]) * units[text[-1]]
        if not 1 <= days <= MAX_DAYS:
            raise InvalidInput(
                f"--since {raw!r} is out of range", fix=f"give 1d to {MAX_DAYS}d, e.g. 7d"
            )
        return today - dt.timedelta(days=days - 1)
    try:
        first = dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"cannot read --since {raw!r}", fix="give a span such as 7d, 4w or 3m, or a date"
        ) from None
    if first > today:
        raise InvalidInput(f"--since {raw!r} is in the future", fix="give a date up to today")
    if (today - first).days >= MAX_DAYS:
        raise InvalidInput(f"--since {raw!r} is too far back", fix=f"at most {MAX_DAYS} days")
    return first


def day_usage(day: str, fields: dict[str, str]) -> DayUsage:
    """A day's hash as totals by model. Fields that do not parse are skipped (not trusted)."""
    raw: dict[str, dict[str, float]] = {}
    for name, value in fields.items():
        metric, sep, model = name.partition("|")
        if sep and model and metric in _METRICS:
            raw.setdefault(model, {})[metric] = stored_count(value)
    by_model = {
        model: UsageTotals(
            int(m.get("turns", 0)),
            int(m.get("in", 0)),
            int(m.get("out", 0)),
            m.get("cost", 0.0),
            int(m.get("unpriced", 0)),
        )
        for model, m in raw.items()
    }
    return DayUsage(day, by_model)


class UsageStore:
    """Reads one user's usage by day."""

    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys

    def days(self, user_id: str, first: dt.date, last: dt.date) -> list[DayUsage]:
        """The days from `first` to `last` (inclusive) that have usage, oldest first. A day
        whose key holds another type is skipped, with its key named in the error if all are."""
        count = (last - first).days + 1
        if not 1 <= count <= MAX_DAYS:
            raise InvalidInput(f"a usage range covers 1 to {MAX_DAYS} days, not {count}")
        dates = [(first + dt.timedelta(days=n)).isoformat() for n in range(count)]
        keys = [self.keys.usage_day(user_id, d) for d in dates]
        with translated(self.client, key=keys[0], keys=self.keys):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            replies = pipe.execute(raise_on_error=False)
        found: list[DayUsage] = []
        for day, key, reply in zip(dates, keys, replies, strict=True):
            if is_wrong_type(reply):
                continue  # damaged: `doctor --repair` sets it aside; the other days stand
            raise_reply(reply, client=self.client, key=key, keys=self.keys)
            if reply:
                found.append(day_usage(day, reply))
        return found
