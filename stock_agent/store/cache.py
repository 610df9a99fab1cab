"""The execution cache: tool results as JSON in Redis with a TTL per kind of data, one fetch
for identical concurrent misses, and a cache that steps aside (never fails a tool) when Redis does.

A stored value is trusted only once it parses into its model: unreadable JSON, an unknown
envelope, a shape the model rejects, or another Redis type at the key is a miss, and the fresh
value overwrites it. The stats hash is advisory: a damaged one never disables the cache.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from stock_agent.errors import StockAgentError, StoreUnavailable, UnknownSymbol
from stock_agent.store.errors import classify, is_wrong_type, relay

if TYPE_CHECKING:
    import redis

    from stock_agent.config import CacheTTLs
    from stock_agent.store.keys import KeySpace

log = logging.getLogger(__name__)

KINDS = ("quote", "bars", "fundamentals", "news")
T = TypeVar("T")
_MISS = object()
# How long the last good result of a lookup that may serve stale (`stale_if`) is kept, beyond
# its TTL, at `{key}:last` (written in the same round trip as the value).
KEEP_LAST_SECONDS = 7 * 86_400

# Every stored value is an envelope, so a cached result can never be mistaken for a marker:
#   {"ok": <result>}                      a successful fetch
#   {"unknown_symbol": "XYZ", "detail": …} the data source does not know the symbol
_OK = "ok"
_UNKNOWN = "unknown_symbol"

# Delete the lock only if it still holds our token: after an expiry another caller may own it.
_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    # OSError: a socket failing below redis-py's own error translation.
    return (redis.RedisError, OSError)


@dataclass(frozen=True)
class Lookup:
    """What `ExecutionCache.lookup` found: the value, whether this call did not fetch it, and
    whether it is the last good value served because the fetch failed (`error`, a failure
    `stale_if` accepted) with the time it was stored (`stored_at`, epoch seconds)."""

    value: Any
    cached: bool
    stale: bool = False
    error: BaseException | None = None
    stored_at: float | None = None


@dataclass(frozen=True)
class _Policy:
    ttl: Callable[[int], int] | None = None
    stale_if: Callable[[BaseException], bool] | None = None


class _ServedStale(Exception):
    """Carries the last good value out of a failed fetch (private to this module)."""

    def __init__(self, value: Any, error: BaseException, stored_at: float | None) -> None:
        super().__init__("served stale")
        self.value, self.error, self.stored_at = value, error, stored_at


class ExecutionCache:
    """Caches tool results under `keys.cache(tool, args)`.

    `get_or_fetch` returns `(value, cached)`; `cached` is True when this call did not run
    `fetch` (a plain hit, or a value another caller fetched while this one waited).
    Values go through JSON both ways, so a hit and a miss return the same structure.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: KeySpace,
        ttls: CacheTTLs,
        *,
        lock_timeout: float = 10.0,
        poll_interval: float = 0.02,
        outage_backoff: float = 5.0,
    ) -> None:
        if lock_timeout <= 0 or poll_interval <= 0:
            raise ValueError("lock_timeout and poll_interval must be positive")
        self._client = client
        self._keys = keys
        self._ttls = ttls
        self._lock_ms = max(1, int(lock_timeout * 1000))
        self._lock_timeout = lock_timeout
        self._poll = poll_interval
        self._errors = _redis_errors()
        # After a Redis failure the cache is bypassed for a few seconds, so a down server
        # costs one connection attempt (with its retries), not one per tool call.
        self._outage_backoff = outage_backoff
        self._bypass_until = 0.0

    # -- the hot path -------------------------------------------------------------------------

    def get_or_fetch(
        self,
        tool: str,
        args: dict[str, Any],
        fetch: Callable[[], Any],
        kind: str,
        load: Callable[[Any], T] | None = None,
    ) -> tuple[Any, bool]:
        """The cached value of `tool(args)`, or `fetch()` stored for `ttls.for_kind(kind)` seconds.

        Only successes are stored; `UnknownSymbol` is remembered for `ttls.unknown_symbol`
        seconds and re-raised on later hits without calling `fetch`. Any Redis failure
        skips the cache and calls `fetch`. With `load` (e.g. `Analysis.from_dict`), values
        come back through it, hit or miss; a stored value that `load` rejects (an older or
        corrupt shape) is a miss, and the fresh value overwrites it.
        """
        found = self.lookup(tool, args, fetch, kind, load)
        return found.value, found.cached

    def lookup(
        self,
        tool: str,
        args: dict[str, Any],
        fetch: Callable[[], Any],
        kind: str,
        load: Callable[[Any], T] | None = None,
        *,
        ttl: Callable[[int], int] | None = None,
        stale_if: Callable[[BaseException], bool] | None = None,
    ) -> Lookup:
        """`get_or_fetch`, with two more choices. `ttl(kind_ttl)` gives the TTL when a value is
        stored (e.g. until the market opens instead of the kind's 900 s). With `stale_if`, each success is
        also kept at `{key}:last` for KEEP_LAST_SECONDS, and when `fetch` raises an exception
        that `stale_if` accepts (a rate limit, a timeout), that last good value is returned
        instead (`stale=True`, with the error and when it was stored); with none kept, the
        error is raised. The kept value is read only then."""
        policy = _Policy(ttl, stale_if) if ttl is not None or stale_if is not None else None
        try:
            value, cached = self._get_or_fetch(tool, args, fetch, kind, load, policy)
        except _ServedStale as served:
            return Lookup(served.value, True, True, served.error, served.stored_at)
        return Lookup((load(value) if load is not None and not cached else value), cached)

    def _get_or_fetch(
        self,
        tool: str,
        args: dict[str, Any],
        fetch: Callable[[], Any],
        kind: str,
        load: Callable[[Any], Any] | None,
        policy: _Policy | None = None,
    ) -> tuple[Any, bool]:
        if kind not in KINDS:
            raise ValueError(f"unknown cache kind {kind!r}, expected one of {', '.join(KINDS)}")
        ttl = self._ttls.for_kind(kind)
        key = self._keys.cache(tool, args)
        stats = self._keys.cache_stats()
        if self._bypass_until and time.monotonic() < self._bypass_until:
            return fetch(), False

        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.get(key)
            pipe.hincrby(stats, f"{tool}:lookups", 1)
            # Per-command errors come back as values: a damaged stats hash or entry must not
            # turn the cache off.
            raw, counted = pipe.execute(raise_on_error=False)
        except self._errors as exc:
            self._failed(tool, exc)
            return fetch(), False
        self._stats_failed(counted)
        if is_wrong_type(raw):
            log.warning("cache entry %s is not a string; fetching again", key)
            raw = None  # a miss; the SET of the fresh value replaces it
        elif isinstance(raw, BaseException):  # e.g. an ACL that denies the cache keys
            self._failed(tool, raw)
            return fetch(), False
        self._bypass_until = 0.0

        if raw is not None:
            found = self._decode(raw, key)
            if found is not None:
                hit = self._loaded(found, key, load)
                if hit is not _MISS:
                    return hit, True
            # a value we cannot read is treated as a miss and overwritten below

        lock = self._keys.cache_lock(tool, args)
        token = secrets.token_hex(16)
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.hincrby(stats, f"{tool}:misses", 1)
            pipe.set(lock, token, nx=True, px=self._lock_ms)
            counted, owned = pipe.execute(raise_on_error=False)
        except self._errors as exc:
            self._failed(tool, exc)
            return fetch(), False
        self._stats_failed(counted)
        if isinstance(owned, BaseException):
            self._failed(tool, owned)
            return fetch(), False

        if not owned:
            found = self._wait_for(key, lock)
            if found is not None:
                hit = self._loaded(found, key, load)
                if hit is not _MISS:
                    return hit, True
            # the owner failed or gave up: fetch ourselves, and store a success as usual
            return self._fetch_and_store(key, ttl, fetch, None, None, policy, load), False

        return self._fetch_and_store(key, ttl, fetch, lock, token, policy, load), False

    def _fetch_and_store(
        self,
        key: str,
        ttl: int,
        fetch: Callable[[], Any],
        lock: str | None,
        token: str | None,
        policy: _Policy | None = None,
        load: Callable[[Any], Any] | None = None,
    ) -> Any:
        try:
            value = fetch()
        except UnknownSymbol as exc:
            marker = {_UNKNOWN: exc.symbol, "detail": _detail(exc)}
            self._store(key, json.dumps(marker), self._ttls.unknown_symbol, lock, token)
            raise
        except BaseException as exc:
            self._store(key, None, 0, lock, token)  # release the lock only
            stale_if = policy.stale_if if policy is not None else None
            if stale_if is not None and isinstance(exc, Exception) and stale_if(exc):
                self._raise_last_good(key, exc, load)
            raise

        try:
            encoded = json.dumps({_OK: value}, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            log.warning("result for %s is not JSON (%s); not cached", key, exc)
            self._store(key, None, 0, lock, token)
            return value
        if policy is not None and policy.ttl is not None:
            try:
                ttl = int(policy.ttl(ttl))
            except Exception:  # a TTL that cannot be worked out: the kind's
                log.debug("TTL for %s not worked out; %s s", key, ttl, exc_info=True)
        last = None
        if policy is not None and policy.stale_if is not None:
            last = json.dumps({_OK: value, "at": round(time.time(), 3)}, separators=(",", ":"))
        self._store(key, encoded, ttl, lock, token, last)
        return json.loads(encoded)[_OK]

    def _raise_last_good(
        self, key: str, error: BaseException, load: Callable[[Any], Any] | None
    ) -> None:
        """Raise _ServedStale with the last good value kept for `key`; return if there is none
        (or Redis cannot say), so the caller raises `error`."""
        try:
            raw = self._client.get(_last_key(key))
        except self._errors as exc:
            self._failed(key, exc)
            return
        found = self._decode(raw, key) if isinstance(raw, str | bytes) else None
        if found is None or _OK not in found:
            return
        value = self._loaded(found, key, load)
        if value is _MISS:
            return
        at = found.get("at")
        stored_at = float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None
        log.debug("serving the last good value of %s (fetch failed: %s)", key, error)
        raise _ServedStale(value, error, stored_at) from error

    def _store(
        self,
        key: str,
        encoded: str | None,
        ttl: int,
        lock: str | None,
        token: str | None,
        last: str | None = None,
    ) -> None:
        """Write the value (if any; and the last good copy, if any) and release our lock (if
        any) in one round trip. The value is written first, so a waiter that sees the lock
        gone also sees the value."""
        if encoded is None and lock is None:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            now = time.time()
            if encoded is not None:
                pipe.set(key, encoded, ex=max(1, ttl))
                self._index(pipe, key, now, max(1, ttl), last=False)
            if last is not None:
                keep = max(KEEP_LAST_SECONDS, ttl)
                pipe.set(_last_key(key), last, ex=keep)
                self._index(pipe, _last_key(key), now, keep, last=True)
            if lock is not None and token is not None:
                # EVAL, not a registered Script: in a pipeline that costs an extra SCRIPT EXISTS
                # (sent as a raw command: a cluster pipeline refuses `.eval()`, not EVAL)
                pipe.execute_command("EVAL", _RELEASE_LUA, 1, lock, token)  # type: ignore[no-untyped-call]
            pipe.execute()
        except self._errors as exc:
            self._failed(key, exc)

    def _index(self, pipe: Any, key: str, now: float, ttl: int, *, last: bool) -> None:
        """List `key` with its expiry in its index shard, and drop the shard's expired
        members (same round trip as the value: the index stays as small as the cache)."""
        shard = self._keys.cache_index(key, last=last)
        pipe.zadd(shard, {key: now + ttl})
        pipe.zremrangebyscore(shard, "-inf", now)
        pipe.expire(shard, KEEP_LAST_SECONDS + 86_400)

    def _wait_for(self, key: str, lock: str) -> dict[str, Any] | None:
        """Poll until the value (or an unknown-symbol marker) appears, or the lock is gone."""
        deadline = time.monotonic() + self._lock_timeout + self._poll
        while time.monotonic() < deadline:
            time.sleep(self._poll)
            try:
                pipe = self._client.pipeline(transaction=False)
                # EXISTS before GET: the owner writes the value before it deletes the lock,
                # so "lock gone" followed by "no value" really means nothing was stored.
                pipe.exists(lock)
                pipe.get(key)
                locked, raw = pipe.execute(raise_on_error=False)
            except self._errors as exc:
                self._failed(key, exc)
                return None
            if isinstance(locked, BaseException):
                self._failed(key, locked)
                return None
            if isinstance(raw, BaseException):  # another type at the key: not a value yet
                raw = None
            if raw is not None:
                found = self._decode(raw, key)
                if found is not None:
                    return found
            if not locked:
                return None
        return None

    def _stats_failed(self, reply: Any) -> None:
        if isinstance(reply, BaseException):
            log.debug("cache stats not counted: %s", reply)

    def _failed(self, what: str, exc: BaseException) -> None:
        log.debug(
            "cache skipped for %s for %.0fs (Redis failed: %s)", what, self._outage_backoff, exc
        )
        self._bypass_until = time.monotonic() + self._outage_backoff

    @staticmethod
    def _decode(raw: str | bytes, key: str) -> dict[str, Any] | None:
        try:
            found = json.loads(raw)
        except ValueError:
            log.warning("unreadable cache entry %s ignored", key)
            return None
        if isinstance(found, dict) and (_OK in found or _UNKNOWN in found):
            return found
        log.warning("unexpected cache entry %s ignored", key)
        return None

    def _loaded(self, found: dict[str, Any], key: str, load: Callable[[Any], Any] | None) -> Any:
        """The hit through `load`, or `_MISS` when `load` rejects its shape."""
        value = self._unwrap(found)
        if load is None:
            return value
        try:
            return load(value)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("cache entry %s does not fit its model (%s); fetching again", key, exc)
            return _MISS

    @staticmethod
    def _unwrap(found: dict[str, Any]) -> Any:
        if _OK in found:
            return found[_OK]
        raise UnknownSymbol(str(found[_UNKNOWN]), found.get("detail") or None)

    # -- administration (`stock-agent cache ...`) ----------------------------------------------

    def stats(self) -> dict[str, dict[str, float | int]]:
        """Per tool: lookups, hits, misses and hit_rate (hits / lookups) since the last clear."""
        try:
            raw = self._client.hgetall(self._keys.cache_stats())
        except self._errors as exc:
            raise self._typed(exc, self._keys.cache_stats()) from exc
        counts: dict[str, dict[str, int]] = {}
        for field, value in raw.items():
            field = field.decode() if isinstance(field, bytes) else field
            tool, _, what = field.rpartition(":")
            if what in ("lookups", "misses") and tool:
                counts.setdefault(tool, {"lookups": 0, "misses": 0})[what] = int(value)
        result: dict[str, dict[str, float | int]] = {}
        for tool in sorted(counts):
            lookups = counts[tool]["lookups"]
            misses = min(counts[tool]["misses"], lookups)
            hits = lookups - misses
            result[tool] = {
                "lookups": lookups,
                "hits": hits,
                "misses": misses,
                "hit_rate": round(hits / lookups, 4) if lookups else 0.0,
            }
        return result

    def clear(self) -> int:
        """Delete every cached result of this agent (and its last good copy) and reset the
        stats. Returns the number of cached results deleted. Memory and profiles are not
        touched. Reads the index, never the keyspace: its cost is the cache's own size. The
        locks of listed results go too (a lock of an unlisted one expires within seconds)."""
        try:
            results = self._indexed(last=False, live_only=False)
            deleted = self._unlink(results)
            self._unlink(self._indexed(last=True, live_only=False))
            self._unlink([self._keys.lock_of(key) for key in results])
            pipe = self._client.pipeline(transaction=False)
            for shard in (*self._keys.cache_indexes(), *self._keys.cache_indexes(last=True)):
                pipe.delete(shard)
            pipe.delete(self._keys.cache_stats())
            pipe.execute()
        except self._errors as exc:
            raise self._typed(exc) from exc
        return deleted

    def _unlink(self, keys: list[str]) -> int:
        """UNLINK `keys` in batches; how many existed."""
        return sum(int(self._client.unlink(*keys[i : i + 500])) for i in range(0, len(keys), 500))

    def entries(self) -> int:
        """How many cached results (and unknown-symbol markers) exist now (the last good
        copies kept for stale answers are not counted). One round trip, whatever the size of
        the keyspace."""
        try:
            return indexed_entries(self._client, self._keys)
        except self._errors as exc:
            raise self._typed(exc) from exc

    def _indexed(self, *, last: bool, live_only: bool = True) -> list[str]:
        """The keys the index lists (unexpired ones, with `live_only`); one round trip."""
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        for shard in self._keys.cache_indexes(last=last):
            pipe.zrangebyscore(shard, now if live_only else "-inf", "+inf")
        found: list[str] = []
        for members in pipe.execute():
            found.extend(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        return found

    def _typed(self, exc: BaseException, key: str | None = None) -> StockAgentError:
        """What an admin command tells the user: the Redis error by kind (a damaged key, an
        ACL denial, a full server), else that Redis cannot be reached."""
        typed = classify(exc, client=self._client, key=key, keys=self._keys)
        return typed or _unavailable(relay(exc, self._client))


def indexed_entries(client: Any, keys: KeySpace) -> int:
    """The live cached results the index lists (expired members are dropped as it is read):
    one round trip."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for shard in keys.cache_indexes():
        pipe.zremrangebyscore(shard, "-inf", now)
        pipe.zcard(shard)
    return sum(int(n) for n in pipe.execute()[1::2])


def _last_key(key: str) -> str:
    """Where the last good value of `key` is kept (same hash tag: same cluster slot)."""
    return f"{key}:last"


def _detail(exc: UnknownSymbol) -> str | None:
    """The detail given to `UnknownSymbol(symbol, detail)`, recovered from its message."""
    prefix = f"unknown symbol {exc.symbol}"
    rest = exc.message.removeprefix(prefix).removeprefix(": ")
    return rest if rest and rest != exc.message else None


def _unavailable(detail: object) -> StoreUnavailable:
    return StoreUnavailable(
        f"cannot reach Redis for the cache: {detail}",
        fix="start the server (`docker compose up -d redis`), or unset REDIS_URL to use the embedded store",
    )
