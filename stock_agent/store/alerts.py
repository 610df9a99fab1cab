"""Which watch alerts have fired: one key per user, symbol and bar date
(`keys.alert_fired`), written with `SET NX EX`.

The first watcher to claim a crossing fires it; every later claim of the same bar (a restart,
a second watcher on the same user, another machine on the same Redis) finds the key and stays
quiet. A new bar has another date, so a new crossing fires again. The key lives a few days:
longer than any market closure keeps one bar the latest, short enough to clean up after itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stock_agent.store.errors import translated

if TYPE_CHECKING:
    import redis

    from stock_agent.store.keys import KeySpace

# Seconds a fired alert is remembered: the longest US market closure (a holiday next to a
# weekend, ~4 days) keeps a bar the latest for less than this.
ALERT_FIRED_TTL = 5 * 86_400


class AlertStore:
    """Claims alerts for a user, symbol and bar date; at most one claim of each succeeds."""

    def __init__(self, client: redis.Redis, keys: KeySpace, *, ttl: int = ALERT_FIRED_TTL) -> None:
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        self.client = client
        self.keys = keys
        self.ttl = ttl

    def claim(self, user_id: str, symbol: str, bar_date: str, record: str) -> bool:
        """True when this call is the first to fire `symbol`'s alert for `bar_date` (`record`,
        the alert as JSON, is kept at the key); False when it has fired already."""
        key = self.keys.alert_fired(user_id, symbol, bar_date)
        with translated(self.client, key=key, keys=self.keys):
            return bool(self.client.set(key, record, nx=True, ex=self.ttl))

    def fired(self, user_id: str, symbol: str, bar_date: str) -> str | None:
        """The alert recorded for `symbol` and `bar_date` (JSON), or None if none fired."""
        key = self.keys.alert_fired(user_id, symbol, bar_date)
        with translated(self.client, key=key, keys=self.keys):
            value = self.client.get(key)
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return None if value is None else str(value)
