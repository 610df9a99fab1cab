"""`stock-agent doctor --repair` and doctor's store checks against the real server: damaged keys
are set aside (kept 7 days, never silently destroyed), unreadable messages move aside too, the
sessions index is rebuilt from the user's session keys, other users are left alone, and the
checks cost a fixed, small number of round trips."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from stock_agent.store.history import SessionHistory, is_readable
from stock_agent.store.keys import ASIDE_TTL, KeySpace
from stock_agent.store.repair import check_user, repair
from stock_agent.store.sessions import SessionStore
from tests.test_cli import doctor_lines, ok, one_error_line, run
from tests.test_history import ServerMeter

KEYS = KeySpace("test_agent")
TTL = 1800  # the CLI's default session TTL


def turn(client: Any, session: str, user: str = "alice", text: str = "hi") -> str:
    hist = SessionHistory(client, KEYS, user, session, ttl=TTL, window=20)
    hist.add_messages([HumanMessage(f"{text}?"), AIMessage(f"{text}!")])
    return hist.key


def aside_keys(client: Any) -> dict[str, Any]:
    return {k: client.type(k) for k in client.scan_iter(match="*:corrupt:*")}


def fix(client: Any, users: list[str] | None = None):
    return repair(client, KEYS, users, readable=is_readable, session_ttl=TTL)


def test_each_kind_of_damage_is_set_aside_and_the_index_rebuilt(redis_client):
    key_old = turn(redis_client, "older")
    redis_client.expire(key_old, TTL - 300)  # last used 5 minutes ago
    key_new = turn(redis_client, "newer")
    redis_client.lpush(key_new, "{not json", json.dumps("bare"))
    hashed = KEYS.messages("alice", "hashed")
    redis_client.hset(hashed, "field", "value")
    redis_client.delete(KEYS.sessions("alice"))
    redis_client.set(KEYS.sessions("alice"), "garbage")
    redis_client.sadd(KEYS.profile("alice"), "AAPL")

    report = fix(redis_client, ["alice"])

    assert report.ok and report.changed == 5
    stamp = time.strftime("%Y%m%dT", time.gmtime())
    text = "\n".join(report.lines)
    assert f"set aside {KEYS.profile('alice')} (a set, not a hash) as " in text
    assert f"set aside {KEYS.sessions('alice')} (a string, not a sorted set)" in text
    assert f"set aside {hashed} (a hash, not a list)" in text
    assert (
        f"removed 2 unreadable message(s) from {key_new} (kept in {key_new}:corrupt:{stamp}" in text
    )
    assert report.lines[-1] == f"rebuilt {KEYS.sessions('alice')} from 2 session(s)"

    # Nothing destroyed: every damaged value is still there, aside, with a TTL of 7 days.
    found = aside_keys(redis_client)
    assert sorted(found.values()) == ["hash", "list", "set", "string"]
    for key in found:
        assert ASIDE_TTL - 60 < redis_client.ttl(key) <= ASIDE_TTL
    [moved] = [k for k in found if k.startswith(key_new)]
    assert sorted(redis_client.lrange(moved, 0, -1)) == sorted(["{not json", json.dumps("bare")])

    # Usable again, newest first (the order recovered from the sessions' TTLs).
    store = SessionStore(redis_client, KEYS, ttl=TTL, window=20)
    assert [s.session_id for s in store.list("alice")] == ["newer", "older"]
    assert [m.content for m in store.read_turn("alice", "newer").messages] == ["hi?", "hi!"]
    assert store.read_turn("alice", "older").profile.preferred_symbols == []

    again = fix(redis_client, ["alice"])
    assert again.ok and again.lines == [
        "nothing to repair for alice (profile, sessions index, 2 session(s))"
    ]


def test_a_missing_index_entry_is_added_and_existing_scores_are_kept(redis_client):
    turn(redis_client, "listed")
    index = KEYS.sessions("alice")
    score = redis_client.zscore(index, "listed")
    turn(redis_client, "unlisted")
    redis_client.zrem(index, "unlisted")

    report = fix(redis_client, ["alice"])

    assert report.lines == [f"added 1 session(s) missing from {index}"]
    assert redis_client.zscore(index, "listed") == score
    assert redis_client.zscore(index, "unlisted") is not None
    assert 0 < redis_client.ttl(index) <= TTL


def test_repair_touches_only_the_user_it_is_given(redis_client):
    redis_client.set(KEYS.profile("alice"), "x")
    redis_client.set(KEYS.profile("bob"), "y")
    # A key of another agent and a key outside the prefix are never touched.
    other = KeySpace("other_agent").profile("alice")
    redis_client.set(other, "z")
    redis_client.set("unrelated", "w")

    assert len(fix(redis_client, ["alice"]).lines) == 1
    assert redis_client.get(KEYS.profile("bob")) == "y"
    assert redis_client.get(other) == "z" and redis_client.get("unrelated") == "w"

    every = fix(redis_client, None)  # --all-users
    assert every.lines == [
        f"set aside {KEYS.profile('bob')} (a string, not a hash) as "
        + every.lines[0].split(" as ")[1],
    ]
    assert redis_client.get(other) == "z" and redis_client.get("unrelated") == "w"


def test_the_cli_prints_one_line_per_change_and_exits_0(redis_client, cli_env):
    turn(redis_client, "s1")
    redis_client.set(KEYS.profile("alice"), "x")
    redis_client.set(KEYS.profile("bob"), "y")

    result = run(cli_env, "doctor", "--repair")
    lines = ok(result).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"set aside {KEYS.profile('alice')} ")
    assert result.stderr == ""

    lines = ok(run(cli_env, "doctor", "--repair", "--all-users")).splitlines()
    assert lines == [
        "nothing to repair for alice (profile, sessions index, 1 session(s))",
        lines[1],
    ]
    assert lines[1].startswith(f"set aside {KEYS.profile('bob')} ")
    # Bob has no keys left (only the one set aside): nothing to say about him.
    assert ok(run(cli_env, "doctor", "--repair", "--all-users")).splitlines() == [
        "nothing to repair for alice (profile, sessions index, 1 session(s))",
    ]

    line = one_error_line(run(cli_env, "doctor", "--all-users"), 2)
    assert "--repair" in line


def test_doctor_reports_damage_and_unreadable_entries(redis_client, cli_env):
    key = turn(redis_client, "s1")
    redis_client.lpush(key, "{not json")
    rows = doctor_lines(ok(run(cli_env, "doctor")))
    assert rows["keys"] == (
        "warn",
        f"1 unreadable message(s) in {key} (skipped when read) "
        "(run `stock-agent doctor --repair --user alice`)",
    )

    redis_client.set(KEYS.profile("alice"), "x")
    result = run(cli_env, "doctor")
    assert result.returncode == 1
    state, text = doctor_lines(result.stdout)["keys"]
    assert state == "FAIL" and f"{KEYS.profile('alice')} holds a string, not a hash" in text

    ok(run(cli_env, "doctor", "--repair"))
    rows = doctor_lines(ok(run(cli_env, "doctor")))
    assert rows["keys"] == ("ok", "profile, sessions index and 1 session(s) of alice are readable")
    assert rows["access"][0] == "ok"


@pytest.mark.parametrize("sessions", [0, 1, 30])
def test_doctors_store_checks_cost_two_round_trips_whatever_the_data(
    redis_client, valkey, sessions
):
    from stock_agent.store import connection

    for i in range(sessions):
        turn(redis_client, f"s{i}")
    for i in range(2000):  # unrelated keys do not make the checks dearer
        redis_client.set(f"unrelated:{i}", i)
    client = connection.make_client(valkey.url)
    client.ping()
    meter = ServerMeter(redis_client)
    try:
        with meter.measure() as m:
            found = check_user(client, KEYS, "alice", readable=is_readable)
    finally:
        client.close()
    assert found.access.state == "ok" and found.data.state == "ok", found
    assert m["round_trips"] == (1 if sessions == 0 else 2)
    assert not redis_client.exists(KEYS.probe("alice"))  # the probe key is gone
    assert not redis_client.exists(KEYS.cache_probe())


def test_doctors_store_rows_cost_three_round_trips_on_a_big_keyspace(redis_client, settings):
    from stock_agent.app import App
    from stock_agent.ui.doctor import check_store

    turn(redis_client, "s1")
    pipe = redis_client.pipeline(transaction=False)
    for i in range(20_000):  # unrelated keys: a SCAN would cost 40 round trips here
        pipe.set(f"unrelated:{i}", i)
    pipe.execute()
    with App(settings) as app:
        app.backend.client.ping()  # connected: the handshake is not what is measured
        meter = ServerMeter(redis_client)
        with meter.measure() as m:
            rows = check_store(app, "alice")
    assert [(state, name) for state, name, _ in rows] == [
        ("ok", "store"), ("ok", "eviction"), ("ok", "access"), ("ok", "keys"),
    ]  # fmt: skip
    assert m["round_trips"] == 3 and "scan" not in m["commands"]  # INFO, the probe, the data
