"""A user's sessions, from the per-user index: newest first with counts and last activity,
expired sessions dropping out, one session cleared at a time, and no id that could widen a
key or a pattern (the seed's `clear_session("stock_analyzer", "*", "")` deleted everyone's)."""

from __future__ import annotations

import re
import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from stock_agent.errors import InvalidId
from stock_agent.store.history import SessionHistory
from stock_agent.store.keys import KeySpace
from stock_agent.store.profile import ProfileStore
from stock_agent.store.sessions import SessionStore, new_session_id

KEYS = KeySpace("test_agent")
TTL = 600


# The session store's methods, called the way these tests read best.
def list_sessions(client, keys, user_id, ttl, limit=50):
    return SessionStore(client, keys, ttl=ttl, window=20).list(user_id, limit)


def latest_session(client, keys, user_id, ttl):
    return SessionStore(client, keys, ttl=ttl, window=20).latest(user_id)


def clear_session(client, keys, user_id, session_id):
    return SessionStore(client, keys, ttl=TTL, window=20).clear(user_id, session_id)


def read_raw_messages(client, keys, user_id, session_id):
    return SessionStore(client, keys, ttl=TTL, window=20).raw_messages(user_id, session_id)


def exchange(i: int) -> list:
    return [HumanMessage(f"question {i}"), AIMessage(f"answer {i}")]


def start_session(client, user, session, turns=1, *, at=None, ttl=TTL, keys=KEYS):
    clock = (lambda: at) if at is not None else time.time
    hist = SessionHistory(client, keys, user, session, ttl=ttl, window=20, clock=clock)
    for i in range(turns):
        hist.add_messages(exchange(i))
    return hist


def all_keys(client) -> dict[str, str]:
    """Every key and its type (test-only: the app never lists the keyspace)."""
    return {key: client.type(key) for key in client.scan_iter(count=1000)}


def test_sessions_are_listed_newest_first_with_counts_and_last_activity(redis_client):
    now = time.time()
    start_session(redis_client, "alice", "old", turns=3, at=now - 300)
    start_session(redis_client, "alice", "mid", turns=1, at=now - 200)
    start_session(redis_client, "alice", "new", turns=2, at=now - 100)
    start_session(redis_client, "bob", "bobs", turns=1)

    sessions = list_sessions(redis_client, KEYS, "alice", TTL)

    assert [(s.session_id, s.messages) for s in sessions] == [("new", 4), ("mid", 2), ("old", 6)]
    assert [round(s.last_activity) for s in sessions] == [
        round(now - 100),
        round(now - 200),
        round(now - 300),
    ]
    assert all(TTL - 2 <= s.ttl <= TTL for s in sessions)
    assert latest_session(redis_client, KEYS, "alice", TTL) == "new"
    listed = sessions[0].to_dict()
    assert listed["session_id"] == "new" and listed["messages"] == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", listed["last_activity"])


def test_reading_a_session_makes_it_the_latest(redis_client):
    now = time.time()
    start_session(redis_client, "alice", "old", at=now - 300)
    start_session(redis_client, "alice", "new", at=now - 100)
    assert SessionHistory(redis_client, KEYS, "alice", "old", ttl=TTL, window=20).messages
    assert [s.session_id for s in list_sessions(redis_client, KEYS, "alice", TTL)] == ["old", "new"]


def test_limit_and_a_user_without_sessions(redis_client):
    now = time.time()
    for i in range(5):
        start_session(redis_client, "alice", f"s{i}", at=now - 100 + i)
    assert [s.session_id for s in list_sessions(redis_client, KEYS, "alice", TTL, limit=2)] == [
        "s4",
        "s3",
    ]
    assert list_sessions(redis_client, KEYS, "nobody", TTL) == []
    assert latest_session(redis_client, KEYS, "nobody", TTL) is None


def test_listing_does_not_scan_the_keyspace(redis_client):
    start_session(redis_client, "alice", "s1")
    before = {
        k: v["calls"]
        for k, v in redis_client.info("commandstats").items()
        if "scan" in k or "keys" in k
    }
    list_sessions(redis_client, KEYS, "alice", TTL)
    after = {
        k: v["calls"]
        for k, v in redis_client.info("commandstats").items()
        if "scan" in k or "keys" in k
    }
    assert after == before


def test_expired_sessions_drop_out_of_the_list(redis_client):
    start_session(redis_client, "alice", "short", ttl=1)
    start_session(redis_client, "alice", "long", ttl=60)
    assert {s.session_id for s in list_sessions(redis_client, KEYS, "alice", 60)} == {
        "short",
        "long",
    }
    time.sleep(1.2)

    # listed with the longer TTL, "short" is still in the index's time range, but its
    # messages have expired: it is left out and pruned from the index
    assert [s.session_id for s in list_sessions(redis_client, KEYS, "alice", 60)] == ["long"]
    assert redis_client.zscore(KEYS.sessions("alice"), "short") is None


def test_sessions_older_than_the_ttl_are_not_listed(redis_client):
    now = time.time()
    start_session(redis_client, "alice", "stale", at=now - 100, ttl=TTL)
    start_session(redis_client, "alice", "fresh", at=now, ttl=TTL)
    # asked with a 50 s session TTL, the one last active 100 s ago has expired
    assert [s.session_id for s in list_sessions(redis_client, KEYS, "alice", 50)] == ["fresh"]


def test_the_index_itself_expires_with_the_last_session(redis_client):
    start_session(redis_client, "alice", "only", ttl=1)
    time.sleep(1.2)
    assert not redis_client.exists(KEYS.sessions("alice"))
    assert not redis_client.exists(KEYS.messages("alice", "only"))
    assert list_sessions(redis_client, KEYS, "alice", 1) == []


def test_clearing_one_session_leaves_the_others_and_other_users(redis_client):
    start_session(redis_client, "alice", "s1", turns=2)
    start_session(redis_client, "alice", "s2", turns=1)
    start_session(redis_client, "bob", "s1", turns=1)
    ProfileStore(redis_client, KEYS).set_field("alice", "notes", "keep me")
    before = all_keys(redis_client)

    assert clear_session(redis_client, KEYS, "alice", "s1") is True

    after = all_keys(redis_client)
    assert set(before) - set(after) == {KEYS.messages("alice", "s1")}
    assert [s.session_id for s in list_sessions(redis_client, KEYS, "alice", TTL)] == ["s2"]
    assert [s.session_id for s in list_sessions(redis_client, KEYS, "bob", TTL)] == ["s1"]
    assert ProfileStore(redis_client, KEYS).get("alice").notes == "keep me"
    assert clear_session(redis_client, KEYS, "alice", "s1") is False  # already gone


@pytest.mark.parametrize(
    ("user", "session"),
    [
        ("alice", "*"),
        ("alice", "s*"),
        ("alice", "s?"),
        ("alice", "[s]1"),
        ("alice", "s1:messages"),
        ("alice", ""),
        ("*", "s1"),
        ("*", ""),
        ("ali*", "s1"),
        ("alice", "s1 "),
    ],
)
def test_a_glob_or_malformed_id_is_refused_and_nothing_is_deleted(redis_client, user, session):
    for u in ("alice", "bob", "carol"):
        start_session(redis_client, u, "s1")
        start_session(redis_client, u, "s", keys=KeySpace("stock_analyzer"))
    before = all_keys(redis_client)

    with pytest.raises(InvalidId):
        clear_session(redis_client, KEYS, user, session)
    with pytest.raises(InvalidId):
        clear_session(redis_client, KeySpace("stock_analyzer"), user, session)

    assert all_keys(redis_client) == before


def test_the_seeds_clear_session_call_deletes_nothing(redis_client):
    """The seed's `clear_session("stock_analyzer", "*", "")` put the user text in a SCAN
    pattern and deleted every user's sessions."""
    keys = KeySpace("stock_analyzer")
    for u in ("alice", "bob"):
        for s in ("s1", "s2"):
            start_session(redis_client, u, s, keys=keys)
    before = all_keys(redis_client)
    with pytest.raises(InvalidId):
        clear_session(redis_client, keys, "*", "")
    assert all_keys(redis_client) == before
    assert len(before) == 6


def test_read_raw_messages_is_oldest_first_and_leaves_the_ttl(redis_client):
    hist = start_session(redis_client, "alice", "s1", turns=2)
    redis_client.expire(hist.key, 30)
    raw = read_raw_messages(redis_client, KEYS, "alice", "s1")
    assert [(m["type"], m["data"]["content"]) for m in raw] == [
        ("human", "question 0"),
        ("ai", "answer 0"),
        ("human", "question 1"),
        ("ai", "answer 1"),
    ]
    assert redis_client.ttl(hist.key) <= 30
    assert read_raw_messages(redis_client, KEYS, "alice", "missing") == []
    with pytest.raises(InvalidId):
        read_raw_messages(redis_client, KEYS, "alice", "*")


def test_new_session_ids_are_valid_and_unique():
    ids = {new_session_id() for _ in range(50)}
    assert len(ids) > 40  # 16 bits of randomness per minute
    for session_id in ids:
        assert re.fullmatch(r"\d{8}-\d{4}-[0-9a-f]{4}", session_id)
        KEYS.messages("alice", session_id)  # a valid id
