"""The key schema: exact key strings, id validation (no glob or separator characters ever reach
a key or a pattern), the cluster hash-tag form, and SCAN patterns that match only their own keys."""

from __future__ import annotations

import pytest

from stock_agent.errors import InvalidId, InvalidInput
from stock_agent.store.keys import KeySpace, args_hash, glob_escape, validate_id

KEYS = KeySpace("stock_analyzer")


def test_memory_keys_follow_the_schema_exactly():
    assert KEYS.root == "agent:memory:stock_analyzer"
    assert KEYS.messages("alice", "s1") == "agent:memory:stock_analyzer:alice:s1:messages"
    assert KEYS.sessions("alice") == "agent:memory:stock_analyzer:alice:sessions"
    assert KEYS.profile("alice") == "agent:memory:stock_analyzer:alice:profile"
    assert KEYS.messages_prefix("alice") == "agent:memory:stock_analyzer:alice:"
    assert KEYS.messages_prefix("alice") + "s1:messages" == KEYS.messages("alice", "s1")


def test_cache_keys_follow_the_schema_and_hash_the_arguments():
    args = {"symbol": "AAPL", "period": "1y"}
    digest = args_hash(args)
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert KEYS.cache("get_quote", args) == (
        f"agent:memory:stock_analyzer:execution_cache:get_quote:{digest}"
    )
    assert KEYS.cache_lock("get_quote", args) == (
        f"agent:memory:stock_analyzer:execution_cache_lock:get_quote:{digest}"
    )
    assert KEYS.cache_stats() == "agent:memory:stock_analyzer:execution_cache_stats"
    assert KEYS.cache_pattern() == "agent:memory:stock_analyzer:execution_cache:*"


def test_args_hash_ignores_key_order_but_not_values():
    assert args_hash({"a": 1, "b": [1, 2]}) == args_hash({"b": [1, 2], "a": 1})
    assert args_hash({"a": 1}) != args_hash({"a": 2})
    assert args_hash({"a": 1}) != args_hash({"a": "1"})


@pytest.mark.parametrize(
    "value",
    ["a", "alice", "Alice_01", "a.b-c@d.e", "user@example.com", "2026-11-24-0941", "x" * 64],
)
def test_valid_ids_are_accepted(value):
    assert validate_id(value) == value
    assert KEYS.messages(value, value).endswith(f":{value}:{value}:messages")


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "a*",
        "?",
        "a?b",
        "[abc]",
        "a[",
        "a]",
        "a\\b",
        "\\",
        "a:b",
        ":",
        "a b",
        " ",
        " alice",
        "alice ",
        "",
        "x" * 65,
        "alice\n",
        "tab\there",
        "{alice}",
        "a/b",
        "é",
        "ａ",  # fullwidth letter: not ASCII
        "a\x00b",
    ],
)
def test_invalid_ids_are_refused_everywhere(value):
    with pytest.raises(InvalidId) as info:
        validate_id(value, "user id")
    assert "user id" in str(info.value)
    assert "letters, digits and _ . @ -" in info.value.fix
    assert isinstance(info.value, InvalidInput)  # the CLI shows it as a bad input (exit 2)
    for build in (
        lambda: KEYS.messages(value, "s1"),
        lambda: KEYS.messages("alice", value),
        lambda: KEYS.sessions(value),
        lambda: KEYS.profile(value),
        lambda: KEYS.messages_prefix(value),
        lambda: KEYS.cache(value, {}),
        lambda: KEYS.cache_lock(value, {}),
        lambda: KeySpace(value),
        lambda: KeySpace(value, cluster=True),
    ):
        with pytest.raises(InvalidId):
            build()


@pytest.mark.parametrize("value", [None, 42, 4.2, b"alice", ["alice"], {"a": 1}])
def test_non_string_ids_are_refused(value):
    with pytest.raises(InvalidId):
        validate_id(value)
    with pytest.raises(InvalidId):
        KEYS.profile(value)


def test_a_long_invalid_id_is_shortened_in_the_message():
    with pytest.raises(InvalidId) as info:
        validate_id("x" * 500)
    assert len(str(info.value)) < 300


def test_cluster_form_puts_the_user_in_a_hash_tag():
    keys = KeySpace("stock_analyzer", cluster=True)
    assert keys.messages("alice", "s1") == "agent:memory:stock_analyzer:{alice}:s1:messages"
    assert keys.sessions("alice") == "agent:memory:stock_analyzer:{alice}:sessions"
    assert keys.profile("alice") == "agent:memory:stock_analyzer:{alice}:profile"
    assert keys.messages_prefix("alice") == "agent:memory:stock_analyzer:{alice}:"
    # cache entries are shared by all users: no user part, no hash tag
    assert keys.cache("t", {}) == KEYS.cache("t", {})


def test_cluster_keys_of_one_user_share_a_slot():
    from redis.crc import key_slot

    keys = KeySpace("stock_analyzer", cluster=True)
    alice = [keys.messages("alice", "s1"), keys.messages("alice", "s2"), keys.sessions("alice")]
    alice.append(keys.profile("alice"))
    assert {key_slot(k.encode()) for k in alice} == {key_slot(b"alice")}
    # without the tag the same keys spread over slots
    assert len({key_slot(k.encode()) for k in (KEYS.sessions("alice"), KEYS.profile("alice"))}) == 2


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain", "plain"),
        ("*", "\\*"),
        ("a?b", "a\\?b"),
        ("[x]", "\\[x\\]"),
        ("back\\slash", "back\\\\slash"),
        ("agent:memory:*:x", "agent:memory:\\*:x"),
    ],
)
def test_glob_escape(text, escaped):
    assert glob_escape(text) == escaped


def test_glob_escaped_text_matches_only_itself_on_the_server(redis_client):
    literal = "lit:*?[ab]\\"
    others = ["lit:x?a\\", "lit:*?a\\", "lit:abc", "lit:*?[ab]\\x"]
    for key in [literal, *others]:
        redis_client.set(key, "1")
    assert list(redis_client.scan_iter(match=glob_escape(literal))) == [literal]


def test_cache_pattern_matches_only_cache_entries(redis_client):
    """No memory key of any user, and nothing of another agent, matches the cache pattern; this
    includes users whose ids look like the cache's own key parts."""
    mine, other = KeySpace("stock_analyzer"), KeySpace("stock_analyzer2")
    cache_keys = {mine.cache("get_quote", {"symbol": "AAPL"}), mine.cache("get_bars", {})}
    memory_keys = set()
    for user in ("alice", "bob", "execution", "cache", "execution_cach", "execution-cache"):
        memory_keys |= {mine.messages(user, "s1"), mine.sessions(user), mine.profile(user)}
    foreign = {other.cache("get_quote", {}), mine.cache_stats(), mine.cache_lock("get_quote", {})}
    for key in cache_keys | memory_keys | foreign:
        redis_client.set(key, "1")

    matched = set(redis_client.scan_iter(match=mine.cache_pattern(), count=1000))
    assert matched == cache_keys
    assert all(mine.kind_of(k) == "cache" for k in cache_keys)
    assert all(mine.kind_of(k) != "cache" for k in memory_keys)


@pytest.mark.parametrize(
    "user", ["execution_cache", "execution_cache_lock", "execution_cache_stats"]
)
def test_user_ids_that_would_collide_with_the_cache_are_refused(user):
    """`agent:memory:A:execution_cache:s1:messages` would match the cache pattern, so clearing
    the cache would delete that user's sessions and profile."""
    for build in (
        lambda: KEYS.messages(user, "s1"),
        lambda: KEYS.sessions(user),
        lambda: KEYS.profile(user),
    ):
        with pytest.raises(InvalidId):
            build()
    # the same text is fine as a session id: it sits after the user part
    assert KEYS.messages("alice", user) == f"agent:memory:stock_analyzer:alice:{user}:messages"


def test_kind_of_classifies_every_key_of_the_agent():
    assert KEYS.kind_of(KEYS.messages("alice", "s1")) == "messages"
    assert KEYS.kind_of(KEYS.messages("alice", "profile")) == "messages"
    assert KEYS.kind_of(KEYS.sessions("alice")) == "sessions"
    assert KEYS.kind_of(KEYS.profile("alice")) == "profile"
    assert KEYS.kind_of(KEYS.cache("t", {})) == "cache"
    assert KEYS.kind_of(KEYS.cache_lock("t", {})) == "cache"
    assert KEYS.kind_of(KEYS.cache_stats()) == "cache"
    assert KEYS.kind_of("agent:memory:stock_analyzer:something") == "other"
