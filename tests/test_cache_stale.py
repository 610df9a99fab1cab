"""The execution cache's last good copy (`{key}:last`, read only when a fetch fails in a way
`stale_if` accepts) and TTLs worked out when a value is stored, on the real test server."""

from __future__ import annotations

import json

import pytest

from stock_agent.config import CacheTTLs
from stock_agent.errors import DataSourceError, RateLimited, UnknownSymbol
from stock_agent.providers.base import is_transient
from stock_agent.store.cache import KEEP_LAST_SECONDS, ExecutionCache, Lookup
from stock_agent.store.keys import KeySpace

KEYS = KeySpace("test_agent")
ARGS = {"symbol": "AAPL", "source": "yfinance"}


@pytest.fixture
def cache(redis_client) -> ExecutionCache:
    return ExecutionCache(redis_client, KEYS, CacheTTLs(), poll_interval=0.01)


def fails(exc):
    def fetch():
        raise exc

    return fetch


def test_a_success_keeps_a_last_good_copy_for_days(cache, redis_client):
    found = cache.lookup("quote", ARGS, lambda: {"price": 1.5}, "quote", stale_if=is_transient)
    assert found == Lookup({"price": 1.5}, False)
    key = KEYS.cache("quote", ARGS)
    assert 0 < redis_client.ttl(key) <= 60
    assert KEEP_LAST_SECONDS - 60 < redis_client.ttl(f"{key}:last") <= KEEP_LAST_SECONDS
    kept = json.loads(redis_client.get(f"{key}:last"))
    assert kept["ok"] == {"price": 1.5} and isinstance(kept["at"], float)


def test_without_stale_if_nothing_more_is_kept(cache, redis_client):
    cache.get_or_fetch("quote", ARGS, lambda: {"price": 1.5}, "quote")
    assert not redis_client.exists(f"{KEYS.cache('quote', ARGS)}:last")


@pytest.mark.parametrize("failure", [RateLimited(), DataSourceError("down")])
def test_a_failure_that_may_pass_serves_the_last_good_copy(cache, redis_client, failure):
    cache.lookup("quote", ARGS, lambda: {"price": 1.5}, "quote", stale_if=lambda e: True)
    redis_client.delete(KEYS.cache("quote", ARGS))  # its TTL ran out
    found = cache.lookup("quote", ARGS, fails(failure), "quote", stale_if=lambda e: True)
    assert found.value == {"price": 1.5} and found.cached and found.stale
    assert found.error is failure and found.stored_at is not None
    # nothing was stored for the failure, and the lock is free: the next fetch runs
    assert not redis_client.exists(KEYS.cache("quote", ARGS))
    assert cache.lookup("quote", ARGS, lambda: {"price": 2.0}, "quote").value == {"price": 2.0}


def test_a_failure_stale_if_refuses_is_raised(cache, redis_client):
    cache.lookup("quote", ARGS, lambda: {"price": 1.5}, "quote", stale_if=is_transient)
    redis_client.delete(KEYS.cache("quote", ARGS))
    with pytest.raises(DataSourceError):  # a bad file, say: not a failure that passes
        cache.lookup("quote", ARGS, fails(DataSourceError("bad")), "quote", stale_if=is_transient)
    with pytest.raises(UnknownSymbol):
        cache.lookup("quote", ARGS, fails(UnknownSymbol("AAPL")), "quote", stale_if=is_transient)


def test_with_nothing_kept_the_failure_is_raised(cache):
    with pytest.raises(RateLimited):
        cache.lookup("quote", ARGS, fails(RateLimited()), "quote", stale_if=is_transient)


def test_a_kept_copy_of_another_shape_is_not_served(cache, redis_client):
    cache.lookup("quote", ARGS, lambda: {"price": 1.5}, "quote", stale_if=is_transient)
    redis_client.delete(KEYS.cache("quote", ARGS))

    def load(value):
        raise ValueError("older shape")

    with pytest.raises(RateLimited):
        cache.lookup("quote", ARGS, fails(RateLimited()), "quote", load=load, stale_if=is_transient)


def test_the_stale_copy_comes_through_load(cache, redis_client):
    cache.lookup("quote", ARGS, lambda: {"price": 1.5}, "quote", stale_if=is_transient)
    redis_client.delete(KEYS.cache("quote", ARGS))
    found = cache.lookup(
        "quote", ARGS, fails(RateLimited()), "quote", load=lambda v: ("loaded", v),
        stale_if=is_transient,
    )  # fmt: skip
    assert found.value == ("loaded", {"price": 1.5}) and found.stale


def test_the_ttl_is_worked_out_when_the_value_is_stored(cache, redis_client):
    asked: list[int] = []

    def until_monday(configured: int) -> int:
        asked.append(configured)
        return 200_000

    cache.lookup("quote", ARGS, lambda: {"price": 1.5}, "quote", ttl=until_monday)
    assert asked == [60]  # given the kind's TTL
    assert 199_000 < redis_client.ttl(KEYS.cache("quote", ARGS)) <= 200_000
    # a hit works nothing out
    cache.lookup("quote", ARGS, lambda: {"price": 9.9}, "quote", ttl=until_monday)
    assert asked == [60]


def test_a_ttl_that_cannot_be_worked_out_is_the_kinds(cache, redis_client):
    def broken(configured: int) -> int:
        raise RuntimeError("no calendar")

    cache.lookup("quote", ARGS, lambda: {"price": 1.5}, "quote", ttl=broken)
    assert 0 < redis_client.ttl(KEYS.cache("quote", ARGS)) <= 60


def test_when_redis_fails_reading_the_copy_the_failure_is_raised(cache, redis_client, monkeypatch):
    import redis

    cache.lookup("quote", ARGS, lambda: {"price": 1.5}, "quote", stale_if=is_transient)
    redis_client.delete(KEYS.cache("quote", ARGS))

    def down(*args, **kwargs):
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(redis_client, "get", down)
    with pytest.raises(RateLimited):
        cache.lookup("quote", ARGS, fails(RateLimited()), "quote", stale_if=is_transient)


def test_clearing_counts_results_not_their_kept_copies(cache, redis_client):
    for symbol in ("AAPL", "MSFT"):
        args = {**ARGS, "symbol": symbol}
        cache.lookup("quote", args, lambda: {"price": 1.5}, "quote", stale_if=is_transient)
    assert cache.entries() == 2
    assert cache.clear() == 2
    assert not redis_client.keys("*execution_cache:*")  # the copies are gone too
