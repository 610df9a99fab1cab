"""The execution cache against the real test server: hits and misses, TTLs per kind, JSON on
the wire, the unknown-symbol marker, one fetch for concurrent misses, and Redis being down."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from stock_agent.config import CacheTTLs
from stock_agent.errors import RateLimited, UnknownSymbol
from stock_agent.store import connection
from stock_agent.store.cache import ExecutionCache
from stock_agent.store.keys import KeySpace
from tests.conftest import ValkeyProcess, free_port

KEYS = KeySpace("test_agent")
TTLS = CacheTTLs(quote=60, bars=900, fundamentals=86_400, news=600, unknown_symbol=300)


class Counter:
    """A fetch function that counts its calls and returns (or raises) what it is told."""

    def __init__(self, result=None, error: BaseException | None = None, delay: float = 0.0):
        self.result = result if result is not None else {"symbol": "AAPL", "price": 187.25}
        self.error = error
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def cache(redis_client) -> ExecutionCache:
    return ExecutionCache(redis_client, KEYS, TTLS)


def test_miss_then_hit_returns_same_value_and_counts_stats(cache):
    fetch = Counter()
    args = {"symbol": "AAPL"}

    first = cache.get_or_fetch("get_quote", args, fetch, "quote")
    second = cache.get_or_fetch("get_quote", args, fetch, "quote")

    assert first == ({"symbol": "AAPL", "price": 187.25}, False)
    assert second == ({"symbol": "AAPL", "price": 187.25}, True)
    assert fetch.calls == 1
    assert cache.stats() == {"get_quote": {"lookups": 2, "hits": 1, "misses": 1, "hit_rate": 0.5}}
    assert cache.entries() == 1


def test_argument_order_does_not_matter_but_values_do(cache):
    fetch = Counter()
    cache.get_or_fetch("get_news", {"symbol": "AAPL", "limit": 5}, fetch, "news")

    assert cache.get_or_fetch("get_news", {"limit": 5, "symbol": "AAPL"}, fetch, "news")[1]
    assert not cache.get_or_fetch("get_news", {"symbol": "AAPL", "limit": 3}, fetch, "news")[1]
    assert fetch.calls == 2


def test_hit_and_miss_return_the_same_json_structure(cache):
    fetch = Counter(result={"levels": (1, 2), 7: "seven"})
    miss, _ = cache.get_or_fetch("t", {}, fetch, "quote")
    hit, cached = cache.get_or_fetch("t", {}, fetch, "quote")
    assert cached
    assert miss == hit == {"levels": [1, 2], "7": "seven"}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("quote", 60), ("bars", 900), ("fundamentals", 86_400), ("news", 600)],
)
def test_ttl_follows_the_kind_of_data(cache, redis_client, kind, expected):
    args = {"symbol": "MSFT"}
    cache.get_or_fetch("tool", args, Counter(), kind)
    ttl = redis_client.ttl(KEYS.cache("tool", args))
    assert expected - 2 <= ttl <= expected


def test_unknown_kind_is_a_programming_error(cache):
    with pytest.raises(ValueError, match="unknown cache kind"):
        cache.get_or_fetch("tool", {}, Counter(), "forever")


def test_values_are_stored_as_json_not_pickle(cache, redis_client):
    args = {"symbol": "NVDA"}
    cache.get_or_fetch("analysis", args, Counter(result={"symbol": "NVDA", "rsi": 61.5}), "bars")

    raw = redis_client.get(KEYS.cache("analysis", args))
    assert isinstance(raw, str)
    assert not raw.startswith("\x80")  # pickle protocol marker
    assert json.loads(raw) == {"ok": {"symbol": "NVDA", "rsi": 61.5}}
    assert KEYS.cache("analysis", args).startswith(
        "agent:memory:test_agent:execution_cache:analysis:"
    )


def test_a_non_json_result_is_returned_but_not_cached(cache):
    fetch = Counter(result={"when": object()})
    value, cached = cache.get_or_fetch("tool", {}, fetch, "quote")
    assert value is fetch.result and not cached
    assert cache.entries() == 0


def test_errors_are_not_stored(cache, redis_client):
    args = {"symbol": "AAPL"}
    failing = Counter(error=RateLimited("429"))
    with pytest.raises(RateLimited):
        cache.get_or_fetch("get_quote", args, failing, "quote")

    assert redis_client.get(KEYS.cache("get_quote", args)) is None
    assert redis_client.get(KEYS.cache_lock("get_quote", args)) is None  # lock released
    working = Counter()
    assert cache.get_or_fetch("get_quote", args, working, "quote") == (working.result, False)
    assert failing.calls == working.calls == 1


def test_unknown_symbol_is_remembered_briefly_and_reraised(cache, redis_client):
    args = {"symbol": "ZZZZ"}
    fetch = Counter(error=UnknownSymbol("ZZZZ", "no price data"))

    with pytest.raises(UnknownSymbol):
        cache.get_or_fetch("analysis", args, fetch, "bars")
    with pytest.raises(UnknownSymbol) as again:
        cache.get_or_fetch("analysis", args, fetch, "bars")

    assert fetch.calls == 1
    assert again.value.symbol == "ZZZZ"
    assert str(again.value) == str(UnknownSymbol("ZZZZ", "no price data"))
    key = KEYS.cache("analysis", args)
    assert json.loads(redis_client.get(key)) == {
        "unknown_symbol": "ZZZZ",
        "detail": "no price data",
    }
    assert 298 <= redis_client.ttl(key) <= 300  # the unknown-symbol TTL, not the bars TTL


def test_a_cached_value_that_looks_like_a_marker_is_still_a_value(cache):
    tricky = {"unknown_symbol": "AAPL", "detail": None}
    cache.get_or_fetch("tool", {}, Counter(result=tricky), "quote")
    assert cache.get_or_fetch("tool", {}, Counter(), "quote") == (tricky, True)


def test_an_unreadable_entry_is_a_miss_and_is_replaced(cache, redis_client):
    key = KEYS.cache("tool", {})
    redis_client.set(key, "\x80\x04not json", ex=60)
    fetch = Counter()
    assert cache.get_or_fetch("tool", {}, fetch, "quote") == (fetch.result, False)
    assert json.loads(redis_client.get(key)) == {"ok": fetch.result}


def test_concurrent_identical_misses_fetch_once(redis_client):
    cache = ExecutionCache(redis_client, KEYS, TTLS, poll_interval=0.01)
    fetch = Counter(delay=0.3)
    start = threading.Barrier(10)

    def call():
        start.wait()
        return cache.get_or_fetch("analysis", {"symbol": "TSLA"}, fetch, "bars")

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: call(), range(10)))

    assert fetch.calls == 1
    assert all(value == fetch.result for value, _ in results)
    assert sum(1 for _, cached in results if not cached) == 1  # only the fetcher says "fetched"
    assert cache.stats()["analysis"]["lookups"] == 10


def test_concurrent_misses_of_an_unknown_symbol_fetch_once(redis_client):
    cache = ExecutionCache(redis_client, KEYS, TTLS, poll_interval=0.01)
    fetch = Counter(error=UnknownSymbol("NOPE"), delay=0.2)
    start = threading.Barrier(5)

    def call():
        start.wait()
        try:
            cache.get_or_fetch("analysis", {"symbol": "NOPE"}, fetch, "bars")
        except UnknownSymbol as exc:
            return exc.symbol
        return None

    with ThreadPoolExecutor(5) as pool:
        assert list(pool.map(lambda _: call(), range(5))) == ["NOPE"] * 5
    assert fetch.calls == 1


def test_waiters_fetch_themselves_when_the_owner_fails(redis_client):
    cache = ExecutionCache(redis_client, KEYS, TTLS, poll_interval=0.01)
    owner_fetch = Counter(error=RateLimited(), delay=0.2)
    waiter_fetch = Counter()
    owner_started = threading.Event()

    def owner():
        owner_started.set()
        with pytest.raises(RateLimited):
            cache.get_or_fetch("q", {"symbol": "AAPL"}, owner_fetch, "quote")

    thread = threading.Thread(target=owner)
    thread.start()
    owner_started.wait()
    time.sleep(0.05)  # the owner holds the lock now
    value, cached = cache.get_or_fetch("q", {"symbol": "AAPL"}, waiter_fetch, "quote")
    thread.join()

    assert (value, cached) == (waiter_fetch.result, False)
    assert owner_fetch.calls == waiter_fetch.calls == 1


def test_an_expired_lock_is_not_waited_on_forever(redis_client):
    cache = ExecutionCache(redis_client, KEYS, TTLS, lock_timeout=0.2, poll_interval=0.01)
    # a crashed owner left a lock behind (it expires after lock_timeout)
    redis_client.set(KEYS.cache_lock("q", {}), "someone-else", px=200)
    fetch = Counter()
    started = time.monotonic()
    assert cache.get_or_fetch("q", {}, fetch, "quote") == (fetch.result, False)
    assert time.monotonic() - started < 2
    assert fetch.calls == 1


def test_a_lock_owned_by_someone_else_is_not_released(redis_client):
    cache = ExecutionCache(redis_client, KEYS, TTLS, lock_timeout=0.1, poll_interval=0.01)
    lock = KEYS.cache_lock("q", {})

    def slow_fetch():
        time.sleep(0.25)  # our lock expires meanwhile and another caller takes it
        redis_client.set(lock, "other-owner", px=5000)
        return {"v": 1}

    cache.get_or_fetch("q", {}, slow_fetch, "quote")
    assert redis_client.get(lock) == "other-owner"


def test_redis_down_the_tool_still_answers():
    client = connection.make_client(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    cache = ExecutionCache(client, KEYS, TTLS)
    fetch = Counter()
    try:
        assert cache.get_or_fetch("get_quote", {"symbol": "AAPL"}, fetch, "quote") == (
            fetch.result,
            False,
        )
        with pytest.raises(UnknownSymbol):
            cache.get_or_fetch("q", {}, Counter(error=UnknownSymbol("X")), "quote")
    finally:
        client.close()
    assert fetch.calls == 1


def test_redis_failing_after_the_lookup_still_answers(tmp_path):
    """The server goes away between the lookup and the store: the value is still returned."""
    server = ValkeyProcess(tmp_path)
    client = connection.make_client(server.url)
    cache = ExecutionCache(client, KEYS, TTLS)

    def fetch_while_the_server_dies():
        server.stop()
        return {"v": 2}

    try:
        assert cache.get_or_fetch("q", {}, fetch_while_the_server_dies, "quote") == (
            {"v": 2},
            False,
        )
        assert cache.get_or_fetch("q", {}, Counter(result={"v": 3}), "quote") == ({"v": 3}, False)
    finally:
        client.close()
        server.stop()


def test_clear_removes_only_the_cache(cache, redis_client):
    memory = KeySpace("test_agent")
    redis_client.rpush(memory.messages("alice", "s1"), '{"type":"human"}')
    redis_client.hset(memory.profile("alice"), "notes", "long term")
    redis_client.set("agent:memory:other_agent:execution_cache:get_quote:abc", "{}")
    for symbol in ("AAPL", "MSFT", "NVDA"):
        cache.get_or_fetch("get_quote", {"symbol": symbol}, Counter(), "quote")
    with pytest.raises(UnknownSymbol):
        cache.get_or_fetch(
            "get_quote", {"symbol": "ZZZZ"}, Counter(error=UnknownSymbol("ZZZZ")), "quote"
        )
    redis_client.set(KEYS.cache_lock("get_quote", {"symbol": "TSLA"}), "stale", px=60_000)

    assert cache.entries() == 4
    assert cache.clear() == 4

    assert cache.entries() == 0
    assert cache.stats() == {}
    # clear reads the cache's own index, not the keyspace: the lock of a fetch still running
    # elsewhere (nothing stored yet) is left to expire by itself, as every lock does
    assert 0 < redis_client.pttl(KEYS.cache_lock("get_quote", {"symbol": "TSLA"})) <= 60_000
    assert redis_client.lrange(memory.messages("alice", "s1"), 0, -1) == ['{"type":"human"}']
    assert redis_client.hget(memory.profile("alice"), "notes") == "long term"
    assert redis_client.exists("agent:memory:other_agent:execution_cache:get_quote:abc")


def test_admin_commands_cost_the_same_on_a_crowded_server(cache, redis_client):
    """entries and clear read the index shards: their commands do not grow with unrelated keys."""
    for symbol in ("AAPL", "MSFT"):
        cache.get_or_fetch("get_quote", {"symbol": symbol}, Counter(), "quote")

    def commands(run) -> int:
        before = int(redis_client.info("stats")["total_commands_processed"])
        run()
        return int(redis_client.info("stats")["total_commands_processed"]) - before - 1

    empty = commands(cache.entries)
    pipe = redis_client.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"unrelated:{i}", "x")
    pipe.execute()
    assert commands(cache.entries) == empty
    assert cache.entries() == 2 and cache.clear() == 2 and cache.entries() == 0


def test_stats_are_per_tool(cache):
    for _ in range(3):
        cache.get_or_fetch("get_quote", {"symbol": "AAPL"}, Counter(), "quote")
    cache.get_or_fetch("analysis", {"symbol": "AAPL"}, Counter(), "bars")
    assert cache.stats() == {
        "analysis": {"lookups": 1, "hits": 0, "misses": 1, "hit_rate": 0.0},
        "get_quote": {"lookups": 3, "hits": 2, "misses": 1, "hit_rate": 0.6667},
    }


def test_after_a_failure_the_cache_is_bypassed_for_a_while(tmp_path):
    port = free_port()
    client = connection.make_client(f"redis://127.0.0.1:{port}/0")  # nothing listens yet
    cache = ExecutionCache(client, KEYS, TTLS, outage_backoff=1.0)
    server = None
    try:
        cache.get_or_fetch("q", {"n": 1}, Counter(), "quote")
        failed_at = time.monotonic()
        server = ValkeyProcess(tmp_path, port=port)  # the server comes back
        if time.monotonic() - failed_at > 0.8:
            pytest.skip("the server took too long to start to test the bypass window")
        cache.get_or_fetch("q", {"n": 2}, Counter(), "quote")
        assert client.get(KEYS.cache("q", {"n": 2})) is None  # still bypassed
        time.sleep(max(0.0, failed_at + 1.05 - time.monotonic()))
        cache.get_or_fetch("q", {"n": 3}, Counter(), "quote")
        assert client.get(KEYS.cache("q", {"n": 3})) is not None  # in use again
    finally:
        client.close()
        if server is not None:
            server.stop()
