"""`stock-agent store migrate`: copy this agent's memory from the current store to another one
(embedded -> server -> cluster, or back), idempotently.

Copied per user: the profile (hash, no TTL), every live session's messages (list, with its
remaining TTL) and usage totals (hash, with its TTL), the sessions index (sorted set, with its
TTL), the usage by day (hashes, no TTL) and the alert-fired markers (strings, with their TTL). Never the execution cache: it refills. Key names are translated
between the standalone form and the cluster hash-tag form by each side's `KeySpace`.

Each target key is replaced, not merged: DEL and the write (RPUSH / HSET / ZADD / SET) and
its expiry in one MULTI on the target, so running it twice gives the same target. Users are
found with SCAN over the agent's prefix on the source (an admin command), or named with
`user`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stock_agent.errors import StockAgentError
from stock_agent.store.keys import glob_escape, is_valid_id, validate_id

if TYPE_CHECKING:
    import redis

    from stock_agent.store.backend import StoreBackend
    from stock_agent.store.keys import KeySpace

_SCAN_COUNT = 1000


@dataclass
class UserKeys:
    """One user's keys on the source, grouped by kind (source key names)."""

    profile: str | None = None
    sessions: str | None = None
    messages: dict[str, str] = field(default_factory=dict)  # session id -> key
    session_usage: dict[str, str] = field(default_factory=dict)  # session id -> key
    usage_days: dict[str, str] = field(default_factory=dict)  # ISO date -> key
    alerts: dict[tuple[str, str], str] = field(default_factory=dict)  # (symbol, date) -> key


@dataclass(frozen=True)
class UserCopy:
    """What was copied for one user."""

    user_id: str
    profiles: int
    sessions: int
    indexes: int
    alerts: int
    usage: int = 0  # sessions' usage totals and days of usage

    @property
    def keys(self) -> int:
        return self.profiles + self.sessions + self.indexes + self.alerts + self.usage


@dataclass(frozen=True)
class MigrateReport:
    source: str  # display URLs: never a password
    target: str
    users: list[UserCopy]
    seconds: float

    @property
    def keys(self) -> int:
        return sum(u.keys for u in self.users)

    @property
    def sessions(self) -> int:
        return sum(u.sessions for u in self.users)

    @property
    def profiles(self) -> int:
        return sum(u.profiles for u in self.users)


def parse_user_key(keys: KeySpace, key: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(user id, kind, rest) of a user key of `keys`' agent in `keys`' form: kind is
    "profile", "sessions", "messages" or "session_usage" (rest: session id), "usage" (rest:
    date) or "alerts" (rest: symbol, date); None for anything else (the cache, keys set aside, probes, keys of another form)."""
    head = f"{keys.root}:"
    if not key.startswith(head) or keys.kind_of(key) == "cache":
        return None
    parts = key[len(head) :].split(":")
    user = parts[0]
    if keys.cluster:
        if not (user.startswith("{") and user.endswith("}")):
            return None
        user = user[1:-1]
    elif user.startswith("{"):
        return None
    if not is_valid_id(user) or user.startswith("execution_cache"):
        return None
    rest = parts[1:]
    if rest in (["profile"], ["sessions"]):
        return user, rest[0], ()
    if len(rest) == 2 and rest[1] == "messages" and is_valid_id(rest[0]):
        return user, "messages", (rest[0],)
    if len(rest) == 2 and rest[0] == "usage" and keys.kind_of(key) == "usage":
        return user, "usage", (rest[1],)  # a day (checked first: a session may be named "usage")
    if len(rest) == 2 and rest[1] == "usage" and is_valid_id(rest[0]):
        return user, "session_usage", (rest[0],)
    if len(rest) == 3 and rest[0] == "alerts":
        return user, "alerts", (rest[1], rest[2])
    return None


def scan_users(
    client: redis.Redis, keys: KeySpace, user_id: str | None = None
) -> dict[str, UserKeys]:
    """Every user's keys on the source (SCAN over the agent's prefix, or one user's)."""
    if user_id is None:
        pattern = keys.agent_pattern()
    else:
        validate_id(user_id, "user id")
        pattern = f"{glob_escape(keys.messages_prefix(user_id))}*"
    found: dict[str, UserKeys] = {}
    for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
        parsed = parse_user_key(keys, str(key))
        if parsed is None:
            continue
        user, kind, rest = parsed
        if user_id is not None and user != user_id:
            continue
        entry = found.setdefault(user, UserKeys())
        if kind == "profile":
            entry.profile = str(key)
        elif kind == "sessions":
            entry.sessions = str(key)
        elif kind == "messages":
            entry.messages[rest[0]] = str(key)
        elif kind == "session_usage":
            entry.session_usage[rest[0]] = str(key)
        elif kind == "usage":
            entry.usage_days[rest[0]] = str(key)
        else:
            entry.alerts[(rest[0], rest[1])] = str(key)
    return found


def _read(client: redis.Redis, key: str, kind: str) -> tuple[Any, int]:
    """(value, PTTL) of one source key, read in one round trip."""
    pipe = client.pipeline(transaction=False)
    if kind == "hash":
        pipe.hgetall(key)
    elif kind == "list":
        pipe.lrange(key, 0, -1)
    elif kind == "zset":
        pipe.zrange(key, 0, -1, withscores=True)
    else:
        pipe.get(key)
    pipe.pttl(key)
    value, pttl = pipe.execute()
    return value, int(pttl)


def _write(client: redis.Redis, key: str, kind: str, value: Any, pttl: int) -> None:
    """Replace `key` on the target with `value` and its expiry: one MULTI."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    if kind == "hash":
        pipe.hset(key, mapping=value)
    elif kind == "list":
        pipe.rpush(key, *value)
    elif kind == "zset":
        pipe.zadd(key, dict(value))
    else:
        pipe.set(key, value)
    if pttl > 0:
        pipe.pexpire(key, pttl)
    pipe.execute()


def _copy(source: redis.Redis, target: redis.Redis, src: str, dst: str, kind: str) -> bool:
    """Copy one key (True) unless it is empty or gone on the source (False)."""
    value, pttl = _read(source, src, kind)
    if pttl == -2 or value is None or (kind != "string" and not value):
        return False
    _write(target, dst, kind, value, pttl)
    return True


def copy_user(
    source: redis.Redis,
    source_keys: KeySpace,
    target: redis.Redis,
    target_keys: KeySpace,
    user_id: str,
    found: UserKeys,
) -> UserCopy:
    """Copy one user's profile, sessions (and their usage), sessions index, usage by day and
    alert markers to the target."""
    profiles = sessions = indexes = alerts = usage = 0
    if found.profile is not None and _copy(
        source, target, found.profile, target_keys.profile(user_id), "hash"
    ):
        profiles = 1
    for session_id in sorted(found.messages):
        dst = target_keys.messages(user_id, session_id)
        if _copy(source, target, found.messages[session_id], dst, "list"):
            sessions += 1
    for session_id, src in sorted(found.session_usage.items()):
        if _copy(source, target, src, target_keys.session_usage(user_id, session_id), "hash"):
            usage += 1
    for day, src in sorted(found.usage_days.items()):
        if _copy(source, target, src, target_keys.usage_day(user_id, day), "hash"):
            usage += 1
    if found.sessions is not None and _copy(
        source, target, found.sessions, target_keys.sessions(user_id), "zset"
    ):
        indexes = 1
    for (symbol, bar_date), src in sorted(found.alerts.items()):
        try:
            dst = target_keys.alert_fired(user_id, symbol, bar_date)
        except StockAgentError:  # not an alert key this app writes: left alone
            continue
        if _copy(source, target, src, dst, "string"):
            alerts += 1
    return UserCopy(user_id, profiles, sessions, indexes, alerts, usage)


def migrate_users(
    source: StoreBackend, target: StoreBackend, user_id: str | None = None
) -> Iterable[UserCopy]:
    """Copy each user (all found by SCAN, or `user_id`), yielding what was copied as it goes."""
    if source.url == target.url:
        raise StockAgentError(
            f"the target {target.display_url} is the current store",
            fix="give --to the URL of another store",
        )
    found = scan_users(source.client, source.keys, user_id)
    for user in sorted(found):
        yield copy_user(source.client, source.keys, target.client, target.keys, user, found[user])


def migrate(
    source: StoreBackend, target: StoreBackend, user_id: str | None = None
) -> MigrateReport:
    """Copy every user (or `user_id`) from `source` to `target`; returns what was copied."""
    start = time.monotonic()
    users = list(migrate_users(source, target, user_id))
    return MigrateReport(source.display_url, target.display_url, users, time.monotonic() - start)
