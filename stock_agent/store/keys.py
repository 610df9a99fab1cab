"""Every Redis key the app uses, built in one place.

    agent:memory:{agent_id}:{user_id}:{session_id}:messages    list, sliding TTL
    agent:memory:{agent_id}:{user_id}:{session_id}:usage       hash: the session's token usage
                                                               and cost, same sliding TTL
    agent:memory:{agent_id}:{user_id}:sessions                 sorted set: session -> last activity
    agent:memory:{agent_id}:{user_id}:profile                  hash, no TTL
    agent:memory:{agent_id}:{user_id}:usage:{date}             hash: a day's usage by model, no TTL
    agent:memory:{agent_id}:{user_id}:alerts:{symbol}:{date}   an alert fired (watch), TTL days
    agent:memory:{agent_id}:execution_cache:{tool}:{args-hash} JSON string, TTL per kind of data
    agent:memory:{agent_id}:execution_cache_lock:{tool}:{args-hash}   short lock for a miss
    agent:memory:{agent_id}:execution_cache_stats              hash: {tool}:lookups / {tool}:misses
    {any key above}:corrupt:{timestamp}                        a damaged key set aside by
                                                               `doctor --repair`, TTL 7 days

Ids are validated before they reach a key, so no user text can widen a key or a pattern.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from stock_agent.errors import InvalidId

PREFIX = "agent:memory"
# How many sorted sets the cache index is spread over (one is enough on one server; on a
# cluster they land in different slots).
CACHE_INDEX_SHARDS = 8
# Cache keys sit where a user id would (`{root}:execution_cache:...`): a user with this id
# would have keys inside the cache's SCAN pattern, so `cache clear` would delete them.
_RESERVED_USER_PREFIX = "execution_cache"
_ID_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_USAGE_DAY_RE = re.compile(r":usage:[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# The Redis type each kind of key must have (`TYPE` replies); anything else is damaged data.
EXPECTED_TYPE = {
    "messages": "list",
    "sessions": "zset",
    "profile": "hash",
    "usage": "hash",
    "cache": "string",
}
# A damaged key set aside by `doctor --repair` lives this long, so nothing vanishes unseen.
ASIDE_TTL = 7 * 86_400


def validate_id(value: str, kind: str = "id") -> str:
    """Return `value` if it is a valid id (letters, digits, `_ . @ -`, 1 to 64 characters)."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 80 else f"{str(value)[:77]}..."
        raise InvalidId(
            f"invalid {kind} {shown!r}",
            fix=f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} uses letters, digits and _ . @ - only, 1 to 64 characters",
        )
    return value


def is_valid_id(value: object) -> bool:
    """Whether `value` is a valid id (for ids read back from Redis: skipped, not raised)."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def args_hash(args: dict[str, Any]) -> str:
    """A stable hash of tool arguments: key order and whitespace do not matter."""
    canonical = json.dumps(
        args, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def glob_escape(text: str) -> str:
    """Escape Redis glob characters so `text` matches only itself in a SCAN pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


@dataclass(frozen=True)
class KeySpace:
    """Builds the keys of one agent. `cluster=True` wraps the user part in a hash tag
    so a user's keys share a slot (scripts touching several of them stay legal)."""

    agent_id: str
    cluster: bool = False

    def __post_init__(self) -> None:
        validate_id(self.agent_id, "agent id")

    @property
    def root(self) -> str:
        return f"{PREFIX}:{self.agent_id}"

    def _user(self, user_id: str) -> str:
        validate_id(user_id, "user id")
        if user_id.startswith(_RESERVED_USER_PREFIX):
            raise InvalidId(
                f"invalid user id {user_id!r}: reserved for the execution cache",
                fix=f"choose a user id that does not start with {_RESERVED_USER_PREFIX!r}",
            )
        part = f"{{{user_id}}}" if self.cluster else user_id
        return f"{self.root}:{part}"

    def messages(self, user_id: str, session_id: str) -> str:
        validate_id(session_id, "session id")
        return f"{self._user(user_id)}:{session_id}:messages"

    def session_usage(self, user_id: str, session_id: str) -> str:
        """The session's usage totals (turns, tokens in and out, cost): beside its messages,
        with the same sliding TTL."""
        validate_id(session_id, "session id")
        return f"{self._user(user_id)}:{session_id}:usage"

    def usage_day(self, user_id: str, day: str) -> str:
        """`user_id`'s usage on `day` (an ISO date), by model; kept like the profile."""
        if not isinstance(day, str) or not _DATE_RE.fullmatch(day):
            raise InvalidId(f"invalid date {day!r}", fix="an ISO date such as 2026-11-20")
        return f"{self._user(user_id)}:usage:{day}"

    def messages_prefix(self, user_id: str) -> str:
        """The part of a messages key before the session id (for langchain-community interop)."""
        return f"{self._user(user_id)}:"

    def sessions(self, user_id: str) -> str:
        return f"{self._user(user_id)}:sessions"

    def profile(self, user_id: str) -> str:
        return f"{self._user(user_id)}:profile"

    def alert_fired(self, user_id: str, symbol: str, bar_date: str) -> str:
        """Marks that `user_id`'s alert on `symbol` fired for the bar of `bar_date` (watch)."""
        from stock_agent.core.symbols import normalize_symbol

        if not isinstance(bar_date, str) or not _DATE_RE.fullmatch(bar_date):
            raise InvalidId(f"invalid bar date {bar_date!r}", fix="an ISO date such as 2026-11-20")
        return f"{self._user(user_id)}:alerts:{normalize_symbol(symbol)}:{bar_date}"

    def cache(self, tool: str, args: dict[str, Any]) -> str:
        validate_id(tool, "tool name")
        return f"{self.root}:execution_cache:{tool}:{args_hash(args)}"

    def cache_lock(self, tool: str, args: dict[str, Any]) -> str:
        validate_id(tool, "tool name")
        return f"{self.root}:execution_cache_lock:{tool}:{args_hash(args)}"

    def cache_pattern(self) -> str:
        """SCAN pattern of every cached result of this agent (no user text in it)."""
        return f"{glob_escape(self.root)}:execution_cache:*"

    def cache_lock_pattern(self) -> str:
        """SCAN pattern of every cache lock of this agent."""
        return f"{glob_escape(self.root)}:execution_cache_lock:*"

    def agent_pattern(self) -> str:
        """SCAN pattern of every key of this agent (admin commands only, never a request path)."""
        return f"{glob_escape(self.root)}:*"

    def cache_stats(self) -> str:
        return f"{self.root}:execution_cache_stats"

    def cache_index(self, cache_key: str, *, last: bool = False) -> str:
        """The index shard that lists `cache_key` with its expiry (a sorted set; `last`: the
        shards of the last good copies). Admin commands read the shards instead of scanning
        the keyspace; the shards spread over cluster slots, so none is a hot slot."""
        shard = zlib.crc32(cache_key.encode()) % CACHE_INDEX_SHARDS
        return f"{self.root}:execution_cache_index:{'last:' if last else ''}{shard}"

    def lock_of(self, cache_key: str) -> str:
        """The single-flight lock of a cache key (`cache_lock` of the same tool and args)."""
        return cache_key.replace(":execution_cache:", ":execution_cache_lock:", 1)

    def cache_indexes(self, *, last: bool = False) -> list[str]:
        """Every shard of the cache index (of the last good copies with `last`)."""
        part = "last:" if last else ""
        return [f"{self.root}:execution_cache_index:{part}{n}" for n in range(CACHE_INDEX_SHARDS)]

    def user_messages_pattern(self, user_id: str) -> str:
        """SCAN pattern of one user's messages keys (`doctor --repair` only)."""
        return f"{glob_escape(self.messages_prefix(user_id))}*:messages"

    def probe(self, user_id: str) -> str:
        """A short-lived key `doctor` writes, reads and deletes to test this user's access."""
        return f"{self._user(user_id)}:doctor_probe"

    def cache_probe(self) -> str:
        """A short-lived key among the cache locks, for `doctor`'s access test of the cache."""
        return f"{self.root}:execution_cache_lock:doctor_probe"

    @staticmethod
    def aside(key: str, stamp: str) -> str:
        """Where `doctor --repair` sets a damaged `key` aside (same hash tag: same slot)."""
        return f"{key}:corrupt:{stamp}"

    def acl_pattern(self) -> str:
        """The ACL key pattern that covers every key of this agent (`~pattern` in ACL SETUSER)."""
        return f"{self.root}:*"

    def expected_type(self, key: str) -> str | None:
        """The Redis type `key` must hold, or None for a key this app does not type-check."""
        if key == self.cache_stats():
            return "hash"
        if key.startswith(f"{self.root}:execution_cache_lock:"):
            return "string"
        return EXPECTED_TYPE.get(self.kind_of(key))

    def split(self, key: str) -> tuple[str, str | None] | None:
        """(user id, session id or None) of a messages, sessions or profile key of this agent;
        None for any other key (cache keys, keys set aside, keys of another agent)."""
        head = f"{self.root}:"
        if not key.startswith(head) or self.kind_of(key) not in ("messages", "sessions", "profile"):
            return None
        parts = key[len(head) :].split(":")
        user = parts[0]
        if self.cluster:
            if not (user.startswith("{") and user.endswith("}")):
                return None
            user = user[1:-1]
        if not _ID_RE.fullmatch(user) or user.startswith(_RESERVED_USER_PREFIX):
            return None
        if len(parts) == 2 and parts[1] in ("sessions", "profile"):
            return user, None
        if len(parts) == 3 and parts[2] == "messages" and _ID_RE.fullmatch(parts[1]):
            return user, parts[1]
        return None

    def kind_of(self, key: str) -> str:
        """Classify a key of this agent for `store status`: messages, sessions, profile, usage,
        cache, other."""
        if key.startswith(f"{self.root}:execution_cache"):
            return "cache"
        if key.endswith(":messages"):
            return "messages"
        if key.endswith(":sessions"):
            return "sessions"
        if key.endswith(":profile"):
            return "profile"
        if key.endswith(":usage") or _USAGE_DAY_RE.search(key):
            return "usage"
        return "other"
