"""Bad stored data is contained, never fatal: a corrupt history entry is skipped with one warning,
another Redis type at the profile, sessions index or messages key is one line naming the key and
`stock-agent doctor --repair` (or, for the profile, an unpersonalised answer and a warning), and
a cache entry that does not fit its model is a miss that gets overwritten. Real server, real keys."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from stock_agent.cli import main
from stock_agent.config import CacheTTLs
from stock_agent.core.models import Analysis
from stock_agent.store.cache import ExecutionCache
from stock_agent.store.errors import WrongTypeKey
from stock_agent.store.history import SessionHistory
from stock_agent.store.keys import KeySpace
from stock_agent.store.profile import ProfileStore
from stock_agent.store.sessions import SessionStore
from tests.test_cli import ok, one_error_line, run

KEYS = KeySpace("test_agent")
PROFILE = KEYS.profile("alice")
INDEX = KEYS.sessions("alice")
REPAIR = "stock-agent doctor --repair --user alice"
CORRUPT = {
    "not json": "{not json",
    "unknown type": json.dumps({"type": "bogus", "data": {"content": "planted"}}),
    "bare string": json.dumps("just a string"),
}


def sessions(client: Any) -> SessionStore:
    return SessionStore(client, KEYS, ttl=600, window=20)


def two_turns(client: Any, session: str = "s1") -> SessionHistory:
    hist = SessionHistory(client, KEYS, "alice", session, ttl=600, window=20)
    hist.add_messages([HumanMessage("first question"), AIMessage("first answer")])
    hist.add_messages([HumanMessage("second question"), AIMessage("second answer")])
    return hist


def insert_after_first_turn(client: Any, key: str, item: str) -> None:
    """Put `item` between the two turns (the list is newest first)."""
    pivot = client.lindex(key, 2)  # "first answer"
    client.linsert(key, "BEFORE", pivot, item)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- corrupt entries


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_a_corrupt_entry_is_skipped_by_the_turn_read_with_one_warning(redis_client, caplog, kind):
    hist = two_turns(redis_client)
    insert_after_first_turn(redis_client, hist.key, CORRUPT[kind])

    with caplog.at_level(logging.WARNING):
        memory = sessions(redis_client).read_turn("alice", "s1")

    assert [m.content for m in memory.messages] == [
        "first question", "first answer", "second question", "second answer",
    ]  # fmt: skip
    [warning] = warnings_of(caplog)
    assert hist.key in warning and "doctor --repair" in warning
    assert redis_client.llen(hist.key) == 5  # reading never deletes anything


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_sessions_show_skips_a_corrupt_entry_with_one_warning(
    redis_client, cli_env, capsys, caplog, kind
):
    hist = two_turns(redis_client)
    insert_after_first_turn(redis_client, hist.key, CORRUPT[kind])

    with caplog.at_level(logging.WARNING):
        code = main(["sessions", "show", "s1", "--json"], env=cli_env)

    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert [m["content"] for m in shown] == [
        "first question", "first answer", "second question", "second answer",
    ]  # fmt: skip
    [warning] = warnings_of(caplog)
    assert f"skipped 1 unreadable message(s) in {hist.key}" in warning and REPAIR in warning


def test_the_user_sees_one_warning_line_and_the_rest_of_the_session(redis_client, cli_env):
    hist = two_turns(redis_client)
    for item in CORRUPT.values():
        insert_after_first_turn(redis_client, hist.key, item)

    result = run(cli_env, "sessions", "show", "s1")

    assert ok(result).count("> ") == 4 and "planted" not in result.stdout
    assert result.stderr.splitlines() == [
        f"skipped 3 unreadable message(s) in {hist.key} (`{REPAIR}` removes them)"
    ]


# --------------------------------------------------------------------------- sessions index


def test_a_string_at_the_sessions_index_is_one_line_naming_the_key_and_the_repair(
    redis_client, cli_env
):
    two_turns(redis_client)
    redis_client.delete(INDEX)
    redis_client.set(INDEX, "garbage")

    line = one_error_line(run(cli_env, "sessions", "list"), 3)
    assert line == (
        f"error: {INDEX} holds a string, not a sorted set "
        f"(run `{REPAIR}`: it sets the key aside for 7 days and rebuilds what it can)"
    )
    assert "cannot reach" not in line

    store = sessions(redis_client)
    for call in (lambda: store.latest("alice"), lambda: store.read_turn("alice", "s1")):
        with pytest.raises(WrongTypeKey) as info:
            call()
        assert info.value.key == INDEX and REPAIR in str(info.value)

    # The repair sets the string aside and rebuilds the index from the session keys.
    ok(run({**cli_env, "STOCK_AGENT_SESSION_TTL": "600"}, "doctor", "--repair"))
    assert [s.session_id for s in store.list("alice")] == ["s1"]
    assert store.read_turn("alice", "s1").messages[-1].content == "second answer"


# --------------------------------------------------------------------------- profile


def test_a_string_at_the_profile_key_analyze_still_works_with_one_warning(redis_client, cli_env):
    redis_client.set(PROFILE, "not a hash")

    result = run(cli_env, "analyze", "AAPL", "--json")

    [item] = json.loads(ok(result))
    assert item["symbol"] == "AAPL" and item["as_of"]
    assert result.stderr.splitlines() == [
        f"warning: profile not applied: {PROFILE} holds a string, not a hash "
        f"(run `{REPAIR}`: it sets the key aside for 7 days and rebuilds what it can)"
    ]
    assert redis_client.get(PROFILE) == "not a hash"  # a read never changes stored data


def test_a_string_at_the_profile_key_profile_show_says_what_and_how_to_fix(redis_client, cli_env):
    redis_client.set(PROFILE, "not a hash")

    shown = run(cli_env, "profile", "show")
    assert shown.returncode == 0
    [warning] = shown.stderr.splitlines()
    assert f"{PROFILE} holds a string, not a hash" in warning and REPAIR in warning

    line = one_error_line(run(cli_env, "profile", "set", "notes", "hi"), 3)
    assert f"{PROFILE} holds a string, not a hash" in line and REPAIR in line
    line = one_error_line(run(cli_env, "profile", "add-symbol", "AAPL"), 3)
    assert f"{PROFILE} holds a string, not a hash" in line and REPAIR in line
    assert redis_client.get(PROFILE) == "not a hash"


def test_a_damaged_profile_reads_empty_in_the_turn_and_in_the_store(redis_client, caplog):
    two_turns(redis_client)
    redis_client.rpush(PROFILE, "a", "list")

    with caplog.at_level(logging.WARNING):
        memory = sessions(redis_client).read_turn("alice", "s1")
        again = sessions(redis_client).read_turn("alice", "s1")
        direct = ProfileStore(redis_client, KEYS).get("alice")

    assert memory.profile.preferred_symbols == [] and memory.profile.notes is None
    assert again.messages == memory.messages and direct == memory.profile
    assert len(memory.messages) == 4
    found = warnings_of(caplog)
    assert len(found) == 3 and all(f"{PROFILE} holds a list, not a hash" in w for w in found)

    store = sessions(redis_client)  # one store (one process) warns once per key
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        store.read_turn("alice", "s1")
        store.read_turn("alice", "s1")
    assert len(warnings_of(caplog)) == 1


# --------------------------------------------------------------------------- messages key


def test_another_type_at_a_messages_key_is_contained(redis_client, cli_env, caplog, capsys):
    two_turns(redis_client, "good")
    bad = KEYS.messages("alice", "bad")
    redis_client.hset(bad, "oops", "1")
    redis_client.expire(bad, 600)
    redis_client.zadd(INDEX, {"bad": 2e9})  # the newest session in the index

    store = sessions(redis_client)
    with pytest.raises(WrongTypeKey) as info:
        store.read_turn("alice", "bad")
    assert info.value.key == bad and str(info.value).startswith(f"{bad} holds a hash, not a list")
    with pytest.raises(WrongTypeKey):
        store.raw_messages("alice", "bad")

    # Listing skips it (with one warning), so the latest good session is still resumed.
    with caplog.at_level(logging.WARNING):
        assert [s.session_id for s in store.list("alice")] == ["good"]
        assert store.latest("alice") == "good"
    [warning] = warnings_of(caplog)
    assert bad in warning and REPAIR in warning

    code = main(["sessions", "show", "bad"], env=cli_env)
    assert code == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {bad} holds a hash, not a list") and REPAIR in line


# --------------------------------------------------------------------------- the cache

TTLS = CacheTTLs(quote=60, bars=900, fundamentals=86_400, news=600, unknown_symbol=300)


def test_a_cache_entry_of_the_wrong_shape_is_a_miss_and_is_overwritten(redis_client, cli_env):
    ok(run(cli_env, "analyze", "AAPL", "--json"))
    [key] = [  # the entry itself, not a last-good copy kept beside it
        k for k in redis_client.keys(f"{KEYS.root}:execution_cache:analysis:*") if k.count(":") == 5
    ]
    ttl = redis_client.ttl(key)
    # Valid JSON in a valid envelope, but not an Analysis: once served to everyone "as of None".
    redis_client.set(key, json.dumps({"ok": {"symbol": "AAPL", "price": 1.0}}), ex=ttl)

    [item] = json.loads(ok(run(cli_env, "analyze", "AAPL", "--json")))

    assert item["as_of"] and item["price"] != 1.0
    stored = json.loads(redis_client.get(key))["ok"]
    assert Analysis.from_dict(stored).as_of == item["as_of"]


def test_a_wrong_type_cache_entry_is_a_miss_and_is_overwritten(redis_client):
    cache = ExecutionCache(redis_client, KEYS, TTLS)
    key = KEYS.cache("quote", {"symbol": "AAPL"})
    redis_client.hset(key, "not", "a string")
    calls = []

    def fetch() -> dict[str, float]:
        calls.append(1)
        return {"price": 187.25}

    assert cache.get_or_fetch("quote", {"symbol": "AAPL"}, fetch, "quote") == (
        {"price": 187.25}, False,
    )  # fmt: skip
    assert json.loads(redis_client.get(key)) == {"ok": {"price": 187.25}}
    assert cache.get_or_fetch("quote", {"symbol": "AAPL"}, fetch, "quote")[1] is True
    assert len(calls) == 1


def test_a_damaged_stats_hash_does_not_turn_the_cache_off(redis_client, cli_env):
    redis_client.set(KEYS.cache_stats(), "not a hash")
    cache = ExecutionCache(redis_client, KEYS, TTLS)
    calls = []

    def fetch() -> int:
        calls.append(1)
        return 42

    for _ in range(3):
        assert cache.get_or_fetch("quote", {"s": "X"}, fetch, "quote")[0] == 42
    assert len(calls) == 1  # cached despite the stats failing

    # `cache stats` names the key and the command that repairs it, not "cannot reach Redis".
    line = one_error_line(run(cli_env, "cache", "stats"), 3)
    assert f"{KEYS.cache_stats()} holds a string, not a hash" in line
    assert "stock-agent cache clear" in line and "cannot reach" not in line
    ok(run(cli_env, "cache", "clear"))
    ok(run(cli_env, "cache", "stats"))
