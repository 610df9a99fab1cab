"""Profiles against the real test server: each field set and read back, input parsed the way a
person types it, bad input refused with nothing changed, JSON on the wire and no TTL, symbol
lists ordered and unique, and two processes changing one profile at the same moment."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from stock_agent.errors import InvalidId, InvalidInput, InvalidSymbol
from stock_agent.store.keys import KeySpace
from stock_agent.store.profile import (
    MAX_SYMBOLS,
    Profile,
    ProfileStore,
    parse_amount,
    parse_symbols,
    parse_threshold,
)
from tests.conftest import REPO

KEYS = KeySpace("test_agent")
KEY = KEYS.profile("alice")


@pytest.fixture
def store(redis_client) -> ProfileStore:
    return ProfileStore(redis_client, KEYS)


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("-5%", -0.05),
        ("-0.05", -0.05),
        (" -5 % ", -0.05),
        ("-2.5%", -0.025),
        ("-0.025", -0.025),
        (-0.1, -0.1),
        ("-99.9%", -0.999),
        ("-0.0001", -0.0001),
    ],
)
def test_thresholds_parse_as_a_fraction(text, value):
    assert parse_threshold(text) == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        "5%",
        "0.05",
        "0",
        "-0%",
        "0%",
        "-100%",
        "-1",
        "-150%",
        "-5",
        "nan",
        "-inf",
        "inf",
        "abc",
        "",
        "%",
        "--5%",
    ],
)
def test_positive_or_absurd_thresholds_are_refused(text):
    with pytest.raises(InvalidInput) as info:
        parse_threshold(text)
    assert info.value.fix


def test_a_threshold_given_in_percent_without_the_sign_gets_a_hint():
    with pytest.raises(InvalidInput, match=r"did you mean -5%"):
        parse_threshold("-5")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100000", 100_000),
        ("100,000", 100_000),
        ("100_000", 100_000),
        ("$250k", 250_000),
        ("1.5m", 1_500_000),
        ("1.5M", 1_500_000),
        ("€2500.50", 2500.5),
        (12345, 12345),
        (0.5, 0.5),
    ],
)
def test_amounts_parse(text, value):
    assert parse_amount(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-100",
        "abc",
        "",
        "1e309",
        "100kk",
        "$",
        "1.5t",
        True,
        0,
        -5.0,
        float("inf"),
        float("nan"),
    ],
)
def test_bad_amounts_are_refused(text):
    with pytest.raises(InvalidInput):
        parse_amount(text)


def test_symbols_parse_upper_cased_unique_in_order():
    assert parse_symbols("aapl, msft AAPL brk-b ^gspc") == ["AAPL", "MSFT", "BRK-B", "^GSPC"]
    assert parse_symbols(["tsla", "nvda,amd", "TSLA"]) == ["TSLA", "NVDA", "AMD"]
    assert parse_symbols("") == []


@pytest.mark.parametrize(
    "bad", ["AAPL;DROP", "A*", "$AAPL", "ABCDEFGHIJKLMNOP", "--", "ÄPPLE", "a/b"]
)
def test_invalid_symbols_are_refused(bad):
    with pytest.raises(InvalidSymbol):
        parse_symbols(["AAPL", bad])


# -- fields -----------------------------------------------------------------------------------


def test_an_unknown_user_has_an_empty_profile(store):
    profile = store.get("alice")
    assert profile == Profile()
    assert profile.is_empty


def test_each_field_is_set_and_read_back(store, redis_client):
    store.set_field("alice", "preferred_symbols", "aapl msft")
    store.set_field("alice", "alert_threshold", "-5%")
    store.set_field("alice", "portfolio_size", "$250k")
    profile = store.set_field("alice", "notes", "  long-term, dividend focus  ")

    assert profile.preferred_symbols == ["AAPL", "MSFT"]
    assert profile.alert_threshold == -0.05
    assert profile.portfolio_size == 250_000
    assert profile.notes == "long-term, dividend focus"
    assert profile.updated_at == pytest.approx(time.time(), abs=5)
    assert not profile.is_empty
    assert store.get("alice") == profile
    assert store.get("bob").is_empty  # one user's profile never shows up for another


def test_both_threshold_forms_store_the_same_value(store, redis_client):
    store.set_field("alice", "alert_threshold", "-5%")
    first = redis_client.hget(KEY, "alert_threshold")
    store.set_field("alice", "alert_threshold", "-0.05")
    assert redis_client.hget(KEY, "alert_threshold") == first == "-0.05"
    assert store.get("alice").alert_threshold == -0.05


def test_storage_is_plain_json_and_strings_never_pickle(store, redis_client, valkey):
    store.set_field("alice", "preferred_symbols", ["AAPL", "BRK-B"])
    store.set_field("alice", "alert_threshold", "-7.5%")
    store.set_field("alice", "portfolio_size", "1.5m")
    store.set_field("alice", "notes", "prefers ETFs — and café")
    store.add_symbols("alice", "^GSPC")

    assert redis_client.type(KEY) == "hash"
    raw = redis_client.hgetall(KEY)
    assert set(raw) == {
        "preferred_symbols",
        "alert_threshold",
        "portfolio_size",
        "notes",
        "updated_at",
    }
    assert json.loads(raw["preferred_symbols"]) == ["AAPL", "BRK-B", "^GSPC"]
    assert float(raw["alert_threshold"]) == -0.075
    assert float(raw["portfolio_size"]) == 1_500_000
    assert raw["notes"] == "prefers ETFs — and café"
    float(raw["updated_at"])

    # no pickle: the bytes on the server are UTF-8 text, without pickle's protocol marker
    import redis

    binary = redis.Redis.from_url(valkey.url)
    try:
        for value in binary.hgetall(KEY).values():
            assert not value.startswith(b"\x80")
            value.decode("utf-8")
    finally:
        binary.close()


def test_the_profile_never_expires(store, redis_client):
    store.set_field("alice", "notes", "x")
    store.add_symbols("alice", "AAPL")
    store.set_field("alice", "alert_threshold", None)
    assert redis_client.ttl(KEY) == -1


def test_clearing_a_field(store, redis_client):
    store.set_field("alice", "alert_threshold", "-5%")
    store.set_field("alice", "notes", "x")
    for empty in (None, "", "none", "NULL"):
        store.set_field("alice", "alert_threshold", "-5%")
        profile = store.set_field("alice", "alert_threshold", empty)
        assert profile.alert_threshold is None
        assert not redis_client.hexists(KEY, "alert_threshold")
    assert store.get("alice").notes == "x"


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("alert_threshold", "5%", InvalidInput),
        ("alert_threshold", "0.05", InvalidInput),
        ("alert_threshold", "-500%", InvalidInput),
        ("alert_threshold", "-1.5", InvalidInput),
        ("alert_threshold", "soon", InvalidInput),
        ("portfolio_size", "-100", InvalidInput),
        ("portfolio_size", "0", InvalidInput),
        ("portfolio_size", "lots", InvalidInput),
        ("preferred_symbols", "AAPL BAD*SYM", InvalidSymbol),
        ("preferred_symbols", " ".join(f"S{i}" for i in range(MAX_SYMBOLS + 1)), InvalidInput),
        ("notes", "x" * 2001, InvalidInput),
        ("favourite_color", "blue", InvalidInput),
        ("updated_at", "0", InvalidInput),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(store, redis_client, name, value, error):
    store.set_field("alice", "preferred_symbols", "AAPL MSFT")
    store.set_field("alice", "alert_threshold", "-5%")
    store.set_field("alice", "portfolio_size", "100000")
    store.set_field("alice", "notes", "keep")
    before = redis_client.hgetall(KEY)

    with pytest.raises(error):
        store.set_field("alice", name, value)

    assert redis_client.hgetall(KEY) == before  # updated_at included


@pytest.mark.parametrize("change", ["add_symbols", "remove_symbols"])
@pytest.mark.parametrize("symbols", ["NVDA B@D", ["NVDA", "*"], "", []])
def test_bad_symbol_changes_are_refused_and_change_nothing(store, redis_client, change, symbols):
    store.add_symbols("alice", "AAPL MSFT")
    before = redis_client.hgetall(KEY)
    with pytest.raises(InvalidInput):
        getattr(store, change)("alice", symbols)
    assert redis_client.hgetall(KEY) == before


def test_a_bad_user_id_touches_nothing(store, redis_client):
    store.set_field("alice", "notes", "keep")
    before = redis_client.hgetall(KEY)
    for call in (
        lambda: store.set_field("*", "notes", "x"),
        lambda: store.add_symbols("ali ce", "AAPL"),
        lambda: store.reset("*"),
        lambda: store.get("a:b"),
    ):
        with pytest.raises(InvalidId):
            call()
    assert redis_client.hgetall(KEY) == before
    assert redis_client.dbsize() == 1


# -- symbol lists -----------------------------------------------------------------------------


def test_symbols_are_added_in_order_without_duplicates(store):
    assert store.add_symbols("alice", "msft aapl").preferred_symbols == ["MSFT", "AAPL"]
    assert store.add_symbols("alice", ["AAPL", "nvda", "msft", "amd"]).preferred_symbols == [
        "MSFT",
        "AAPL",
        "NVDA",
        "AMD",
    ]
    assert store.remove_symbols("alice", "aapl, AMD, TSLA").preferred_symbols == ["MSFT", "NVDA"]
    assert store.remove_symbols("alice", "MSFT NVDA").preferred_symbols == []
    assert store.add_symbols("alice", "^gspc brk-b").preferred_symbols == ["^GSPC", "BRK-B"]


def test_removing_every_symbol_stores_an_empty_json_list(store, redis_client):
    store.add_symbols("alice", "AAPL")
    store.remove_symbols("alice", "AAPL")
    assert redis_client.hget(KEY, "preferred_symbols") == "[]"
    assert store.get("alice").preferred_symbols == []


def test_removing_from_a_missing_profile(store, redis_client):
    assert store.remove_symbols("alice", "AAPL").preferred_symbols == []


def test_symbol_count_is_capped_and_a_refused_add_changes_nothing(store, redis_client):
    store.add_symbols("alice", [f"S{i}" for i in range(MAX_SYMBOLS - 1)])
    store.add_symbols("alice", "S0 LAST")  # S0 is already there: exactly the cap
    assert len(store.get("alice").preferred_symbols) == MAX_SYMBOLS
    before = redis_client.hgetall(KEY)
    with pytest.raises(InvalidInput, match=f"at most {MAX_SYMBOLS}"):
        store.add_symbols("alice", "ONEMORE")
    assert redis_client.hgetall(KEY) == before


def test_set_field_replaces_the_list_in_the_given_order(store):
    store.add_symbols("alice", "AAPL MSFT")
    assert store.set_field("alice", "preferred_symbols", "tsla aapl tsla").preferred_symbols == [
        "TSLA",
        "AAPL",
    ]


def test_a_corrupt_symbol_list_reads_as_empty_and_can_be_repaired(store, redis_client):
    redis_client.hset(KEY, "preferred_symbols", "not json")
    assert store.get("alice").preferred_symbols == []
    assert store.add_symbols("alice", "AAPL").preferred_symbols == ["AAPL"]


def test_reset_deletes_only_this_profile(store, redis_client):
    store.set_field("alice", "notes", "x")
    store.set_field("bob", "notes", "y")
    assert store.reset("alice") is True
    assert store.get("alice").is_empty
    assert store.get("bob").notes == "y"
    assert store.reset("alice") is False


# -- two processes at the same moment -----------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from stock_agent.store.connection import make_client
    from stock_agent.store.keys import KeySpace
    from stock_agent.store.profile import ProfileStore

    url, user, prefix, field, start_value = sys.argv[1:6]
    store = ProfileStore(make_client(url), KeySpace("test_agent"))
    store.get(user)  # connected and warm before the start
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    while time.time() < start:
        pass
    for i in range({count}):
        store.add_symbols(user, f"{{prefix}}{{i}}")
        store.set_field(user, field, str(int(start_value) + i) if field == "portfolio_size"
                        else f"-{{i % 9 + 1}}%" if field == "alert_threshold" else f"note {{i}}")
    print("done", flush=True)
    """
)


def run_together(url: str, jobs: list[tuple[str, str, str]], count: int) -> None:
    """Start one process per job, wait until all are connected, then let them go at once."""
    script = WORKER.format(repo=str(REPO), count=count)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, "alice", prefix, field, "1000"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for prefix, field, _ in jobs
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        start = f"{time.time() + 0.2}\n"
        for proc in procs:
            proc.stdin.write(start)
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert out.strip() == "done"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_two_processes_adding_symbols_and_setting_fields_lose_nothing(valkey, redis_client):
    count = MAX_SYMBOLS // 2
    run_together(
        valkey.url,
        [("A", "alert_threshold", ""), ("B", "portfolio_size", "")],
        count,
    )
    profile = ProfileStore(redis_client, KEYS).get("alice")

    symbols = profile.preferred_symbols
    assert len(symbols) == len(set(symbols)) == 2 * count
    # each process's own additions are in the order it made them
    assert [s for s in symbols if s.startswith("A")] == [f"A{i}" for i in range(count)]
    assert [s for s in symbols if s.startswith("B")] == [f"B{i}" for i in range(count)]
    # and neither process's field write was overwritten by the other's
    assert profile.alert_threshold == -((count - 1) % 9 + 1) / 100
    assert profile.portfolio_size == 1000 + count - 1


def test_two_processes_setting_different_fields_lose_nothing(valkey, redis_client):
    ProfileStore(redis_client, KEYS).add_symbols("alice", "KEEP")
    run_together(valkey.url, [("C", "notes", ""), ("D", "portfolio_size", "")], 20)
    profile = ProfileStore(redis_client, KEYS).get("alice")
    assert profile.notes == "note 19"
    assert profile.portfolio_size == 1019
    assert profile.preferred_symbols[0] == "KEEP"
    assert len(profile.preferred_symbols) == 41
