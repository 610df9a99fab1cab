"""Session history against the real test server: a TTL that slides on read and on write, a window
cut only where a human message starts (tool-call trails stay whole), one round trip per read and
per saved turn with no new connection per turn, and the same data as langchain-community's
`RedisChatMessageHistory` under the same key, both ways."""

from __future__ import annotations

import json
import random
import time
import warnings
from contextlib import contextmanager

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)

from stock_agent.errors import InvalidId
from stock_agent.store import connection
from stock_agent.store.history import SessionHistory, encode
from stock_agent.store.keys import KeySpace
from tests.conftest import free_port

KEYS = KeySpace("test_agent")


# -- helpers ----------------------------------------------------------------------------------


def turn(i: int, tools: int = 0) -> list[BaseMessage]:
    """One exchange: the question, then (with `tools`) an assistant message calling that many
    tools and one tool message per call, then the answer."""
    messages: list[BaseMessage] = [HumanMessage(f"question {i}")]
    if tools:
        calls = [
            {"name": "get_quote", "args": {"symbol": f"S{i}x{j}"}, "id": f"call_{i}_{j}"}
            for j in range(tools)
        ]
        messages.append(AIMessage("", tool_calls=calls))
        messages += [
            ToolMessage(f"result {i}.{j}", tool_call_id=f"call_{i}_{j}") for j in range(tools)
        ]
    messages.append(AIMessage(f"answer {i}"))
    return messages


def assert_valid_for_the_model(messages: list[BaseMessage]) -> None:
    """What OpenAI accepts: starts at a human message, every assistant tool call is answered by
    a tool message right after it, and no tool message lacks its call."""
    if not messages:
        return
    assert messages[0].type == "human", f"window starts with a {messages[0].type} message"
    pending: set[str] = set()
    for message in messages:
        if message.type == "tool":
            assert message.tool_call_id in pending, f"orphan tool message {message.tool_call_id}"
            pending.discard(message.tool_call_id)
            continue
        assert not pending, f"tool calls {pending} not answered before a {message.type} message"
        if isinstance(message, AIMessage) and message.tool_calls:
            pending = {call["id"] for call in message.tool_calls}
    assert not pending, f"tool calls {pending} never answered"


def expected_kept(turns: list[list[BaseMessage]], window: int) -> list[BaseMessage]:
    """Reference model of the trim: the most recent whole turns that fit in the window; the
    latest turn alone (whole) if it does not fit by itself."""
    kept: list[BaseMessage] = []
    for t in reversed(turns):
        if len(kept) + len(t) > window:
            break
        kept = t + kept
    return kept or list(turns[-1])


class ServerMeter:
    """Counts, on the server, what happens between `start()` and `stop()`: round trips (reads
    of client sockets), commands by name, and new connections. Reads its numbers through
    `probe`, its own connection, and subtracts its own INFO call."""

    def __init__(self, probe) -> None:
        self.probe = probe
        self.probe.ping()  # connected before anything is measured

    def _snapshot(self) -> tuple[int, int, dict[str, int]]:
        info = self.probe.info("stats", "commandstats")
        calls = {
            name.removeprefix("cmdstat_"): value["calls"]
            for name, value in info.items()
            if name.startswith("cmdstat_")
        }
        return info["total_reads_processed"], info["total_connections_received"], calls

    @contextmanager
    def measure(self):
        reads0, conns0, calls0 = self._snapshot()
        result: dict = {}
        yield result
        reads1, conns1, calls1 = self._snapshot()
        commands = {k: v - calls0.get(k, 0) for k, v in calls1.items() if k != "info"}
        result["round_trips"] = reads1 - reads0 - 1  # minus the second INFO
        result["connections"] = conns1 - conns0
        result["commands"] = {k: v for k, v in commands.items() if v}


@pytest.fixture
def meter(redis_client) -> ServerMeter:
    return ServerMeter(redis_client)


@pytest.fixture
def app_client(valkey):
    """The app's own pooled client (not the test's probe), as production builds it."""
    client = connection.make_client(valkey.url)
    yield client
    client.close()


def history(client, session: str = "s1", *, user: str = "alice", ttl: int = 60, window: int = 20):
    return SessionHistory(client, KEYS, user, session, ttl=ttl, window=window)


@contextmanager
def community_history(url: str, user: str, session: str, ttl: int | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.chat_message_histories import RedisChatMessageHistory

        hist = RedisChatMessageHistory(
            session_id=f"{session}:messages",
            url=url,
            key_prefix=KEYS.messages_prefix(user),
            ttl=ttl,
        )
    try:
        yield hist
    finally:
        hist.redis_client.close()


# -- basics -----------------------------------------------------------------------------------


def test_a_turn_round_trips_with_its_tool_calls(redis_client):
    hist = history(redis_client)
    assert hist.messages == []
    hist.add_messages(turn(1, tools=2))
    hist.add_messages(turn(2))
    assert hist.messages == turn(1, tools=2) + turn(2)
    assert hist.messages[1].tool_calls[1]["args"] == {"symbol": "S1x1"}
    assert hist.key == "agent:memory:test_agent:alice:s1:messages"


def test_messages_are_stored_as_langchain_json_newest_first(redis_client):
    hist = history(redis_client)
    messages = turn(1, tools=1)
    hist.add_messages(messages)
    raw = redis_client.lrange(hist.key, 0, -1)
    assert raw == [encode(m) for m in reversed(messages)]
    assert raw[-1] == (
        '{"type": "human", "data": {"content": "question 1", "additional_kwargs": {}, '
        '"response_metadata": {}, "type": "human", "name": null, "id": null}}'
    )


def test_adding_no_messages_does_nothing(redis_client, meter):
    hist = history(redis_client)
    with meter.measure() as m:
        hist.add_messages([])
    assert m["round_trips"] == 0
    assert not redis_client.exists(hist.key)


def test_invalid_ids_and_windows_are_refused():
    for session in ("*", "a*", "s 1", "", "x" * 65, "a:b", "[s]"):
        with pytest.raises(InvalidId):
            SessionHistory(None, KEYS, "alice", session, ttl=60, window=20)
    with pytest.raises(InvalidId):
        SessionHistory(None, KEYS, "*", "s1", ttl=60, window=20)
    with pytest.raises(ValueError):
        SessionHistory(None, KEYS, "alice", "s1", ttl=60, window=1)


def test_creating_a_history_does_no_io(valkey, meter):
    client = connection.make_client(valkey.url)  # a cold client: no connection yet
    try:
        with meter.measure() as m:
            hist = history(client)
        assert m == {"round_trips": 0, "connections": 0, "commands": {}}
        assert hist.ttl_left() == -2  # the first command opens the first connection
    finally:
        client.close()
    # nothing to reach at all: still constructs
    unreachable = connection.make_client(f"redis://127.0.0.1:{free_port()}/0")
    history(unreachable, "other")
    unreachable.close()


def test_clear_removes_this_session_only(redis_client):
    one, two = history(redis_client, "s1"), history(redis_client, "s2")
    bob = history(redis_client, "s1", user="bob")
    for hist in (one, two, bob):
        hist.add_messages(turn(1))
    one.clear()
    assert one.messages == []
    assert not redis_client.exists(one.key)
    assert redis_client.zscore(one.index_key, "s1") is None
    assert redis_client.zscore(one.index_key, "s2") is not None
    assert two.messages == turn(1) and bob.messages == turn(1)
    one.clear()  # clearing twice is fine


# -- sliding TTL ------------------------------------------------------------------------------


def test_reading_resets_the_ttl_to_full(redis_client):
    hist = history(redis_client, ttl=120)
    hist.add_messages(turn(1))
    redis_client.expire(hist.key, 3)
    redis_client.expire(hist.index_key, 3)
    before = redis_client.zscore(hist.index_key, "s1")
    time.sleep(0.01)

    assert hist.messages == turn(1)

    assert 119_000 < redis_client.pttl(hist.key) <= 120_000
    assert 119_000 < redis_client.pttl(hist.index_key) <= 120_000
    assert redis_client.zscore(hist.index_key, "s1") > before  # last activity moved too


def test_writing_resets_the_ttl_to_full(redis_client):
    hist = history(redis_client, ttl=120)
    hist.add_messages(turn(1))
    redis_client.expire(hist.key, 3)
    redis_client.expire(hist.index_key, 3)
    hist.add_messages(turn(2))
    assert 119_000 < redis_client.pttl(hist.key) <= 120_000
    assert 119_000 < redis_client.pttl(hist.index_key) <= 120_000
    assert hist.ttl_left() in (119, 120)


def test_the_ttl_really_slides_while_the_community_class_expires(valkey, redis_client):
    """Both sessions get a 2 s TTL and are read after 1.3 s; 2.6 s after the write only the
    one whose read refreshed the TTL is still there."""
    ours = history(redis_client, "ours", ttl=2)
    with community_history(valkey.url, "alice", "theirs", ttl=2) as theirs:
        ours.add_messages(turn(1))
        theirs.add_messages(turn(1))
        time.sleep(1.3)
        assert ours.messages == turn(1)
        assert theirs.messages == turn(1)
        time.sleep(1.3)
        assert theirs.messages == []  # reading did not slide it (the seed assumed it did)
    assert ours.messages == turn(1)
    assert 0 < redis_client.pttl(ours.key) <= 2000


def test_reading_a_missing_session_creates_nothing(redis_client):
    hist = history(redis_client, "never")
    assert hist.messages == []
    assert redis_client.keys("*") == []  # test-only inspection of a flushed server


# -- the window -------------------------------------------------------------------------------


def test_trim_keeps_whole_turns_and_never_cuts_a_tool_trail(redis_client):
    hist = history(redis_client, window=6)
    hist.add_messages(turn(1))  # 2 messages
    hist.add_messages(turn(2, tools=2))  # 5 messages: 7 > 6, so turn 1 goes, not half of turn 2
    assert hist.messages == turn(2, tools=2)
    assert redis_client.llen(hist.key) == 5
    hist.add_messages(turn(3))  # 5 + 2 > 6: turn 2 goes whole
    assert hist.messages == turn(3)
    hist.add_messages(turn(4))
    hist.add_messages(turn(5))
    assert hist.messages == turn(3) + turn(4) + turn(5)
    hist.add_messages(turn(6, tools=1))  # 4 messages: keep turn 5 + turn 6
    assert hist.messages == turn(5) + turn(6, tools=1)


def test_a_turn_longer_than_the_window_is_kept_whole(redis_client):
    hist = history(redis_client, window=4)
    hist.add_messages(turn(1))
    long_turn = turn(2, tools=5)  # 8 messages
    hist.add_messages(long_turn)
    stored = [json.loads(item) for item in reversed(redis_client.lrange(hist.key, 0, -1))]
    assert messages_from_dict(stored) == long_turn  # whole, and nothing of turn 1
    # The model is never sent more than the window, nor a cut trail: nothing of that turn.
    assert hist.messages == []
    hist.add_messages(turn(3))
    assert redis_client.llen(hist.key) == 2
    assert hist.messages == turn(3)


def test_adding_one_message_at_a_time_trims_like_whole_turns(redis_client):
    """`add_message` per message (what `add_user_message`/`add_ai_message` do): at every turn's
    end the list is what saving whole turns would keep."""
    window = 4
    hist = history(redis_client, window=window)
    turns = [turn(1), turn(2, tools=1), turn(3, tools=3), turn(4), turn(5), turn(6, tools=1)]
    for i, t in enumerate(turns):
        for message in t:
            hist.add_message(message)
        kept = expected_kept(turns[: i + 1], window)
        assert redis_client.llen(hist.key) == len(kept)
        assert hist.messages == (kept if len(kept) <= window else [])
    assert hist.messages == turn(6, tools=1)


def test_window_stays_bounded_and_valid_over_100_turns(redis_client):
    window = 8
    hist = history(redis_client, window=window)
    rng = random.Random(2)
    turns: list[list[BaseMessage]] = []
    for i in range(100):
        read = hist.messages
        assert len(read) <= window
        assert_valid_for_the_model(read)
        tools = rng.choice([0, 0, 1, 2, 3, 7])  # 7 tools: a 10-message turn, longer than the window
        turns.append(turn(i, tools=tools))
        hist.add_messages(turns[-1])

        kept = expected_kept(turns, window)
        assert redis_client.llen(hist.key) == len(kept)
        assert redis_client.llen(hist.key) <= max(window, len(turns[-1]))
        read = hist.messages
        assert read == (kept if len(kept) <= window else [])
        assert_valid_for_the_model(read)
    assert redis_client.zcard(hist.index_key) == 1


def test_reading_a_longer_foreign_history_starts_at_a_turn(valkey, redis_client):
    """A list written without trimming (by the community class) is cut to the window on read,
    at a human message even when the window's edge falls inside a tool trail."""
    with community_history(valkey.url, "alice", "s1") as theirs:
        for i in range(10):
            theirs.add_messages(turn(i, tools=i % 3))
    hist = history(redis_client, window=7)
    read = hist.messages
    assert_valid_for_the_model(read)
    assert read == turn(8, tools=2) + turn(9)  # the last 7 would start inside turn 8's trail


# -- cost: round trips, commands, connections ---------------------------------------------------


def test_a_read_is_one_round_trip(app_client, meter):
    hist = history(app_client)
    hist.add_messages(turn(1, tools=2))  # warm: connection open, script loaded
    with meter.measure() as m:
        messages = hist.messages
    assert messages == turn(1, tools=2)
    assert m["round_trips"] == 1
    # the TTL slides on the messages, the session's usage and the index
    assert m["commands"] == {"lrange": 1, "expire": 3, "zadd": 1}
    assert m["connections"] == 0


def test_saving_a_turn_is_one_atomic_round_trip(app_client, meter):
    hist = history(app_client)
    hist.add_messages(turn(1))  # warm
    with meter.measure() as m:
        hist.add_messages(turn(2, tools=2))
    assert m["round_trips"] == 1
    assert m["connections"] == 0
    # one script call from the client; the rest ran inside it, on the server
    assert m["commands"].pop("evalsha") == 1
    assert "eval" not in m["commands"] and "script|load" not in m["commands"]
    assert m["commands"] == {  # no usage on these messages: nothing counted, the TTLs slide
        "lpush": 5,
        "llen": 1,
        "expire": 3,
        "zadd": 1,
        "zremrangebyscore": 1,
    }


def test_the_first_save_loads_the_script_then_never_again(app_client, meter, redis_client):
    redis_client.script_flush()
    hist = history(app_client)
    assert hist.messages == []  # connection warm
    with meter.measure() as first:
        hist.add_messages(turn(1))
    with meter.measure() as second:
        history(app_client, "s2").add_messages(turn(1))  # a new history object: same script
    assert first["round_trips"] <= 3  # EVALSHA -> NOSCRIPT -> SCRIPT LOAD -> EVALSHA
    assert second["round_trips"] == 1
    assert "script|load" not in second["commands"]


def test_many_turns_cost_two_round_trips_each_and_no_new_connection(valkey, meter):
    client = connection.make_client(valkey.url)
    try:
        with meter.measure() as cold:
            history(client, "warmup").add_messages(turn(0))
        assert cold["connections"] == 1  # the pool's first connection, once per process

        with meter.measure() as m:
            for i in range(20):
                hist = history(client)  # a new history object per turn, as the agent makes
                assert len(hist.messages) <= 20
                hist.add_messages(turn(i, tools=i % 2))
        assert m["connections"] == 0
        assert m["round_trips"] == 40
        assert m["commands"]["evalsha"] == 20  # one script call per saved turn
    finally:
        client.close()


# -- interop with langchain-community ---------------------------------------------------------


def test_we_read_what_the_community_class_wrote(valkey, redis_client):
    conversation = turn(1, tools=2) + turn(2) + [HumanMessage("and MSFT?")]
    with community_history(valkey.url, "alice", "s1") as theirs:
        assert theirs.key == KEYS.messages("alice", "s1")
        theirs.add_messages(conversation)
    ours = history(redis_client)
    read = ours.messages
    assert read == conversation
    assert read[1].tool_calls == conversation[1].tool_calls
    assert isinstance(read[2], ToolMessage) and read[2].tool_call_id == "call_1_0"


def test_the_community_class_reads_what_we_wrote(valkey, redis_client):
    ours = history(redis_client)
    ours.add_messages(turn(1, tools=2))
    ours.add_messages(turn(2, tools=1))
    with community_history(valkey.url, "alice", "s1") as theirs:
        read = theirs.messages
    assert read == turn(1, tools=2) + turn(2, tools=1)
    assert read[1].tool_calls[0]["id"] == "call_1_0"
    assert read[3].tool_call_id == "call_1_1"


def test_both_write_the_same_bytes_in_the_same_order(valkey, redis_client):
    conversation = [SystemMessage("be brief"), *turn(1, tools=2), *turn(2)]
    with community_history(valkey.url, "alice", "theirs") as theirs:
        theirs.add_messages(conversation)
    history(redis_client, "ours").add_messages(conversation)
    ours_raw = redis_client.lrange(KEYS.messages("alice", "ours"), 0, -1)
    theirs_raw = redis_client.lrange(KEYS.messages("alice", "theirs"), 0, -1)
    assert ours_raw == theirs_raw
    assert ours_raw[0] == json.dumps(message_to_dict(conversation[-1]))


def test_both_can_append_to_the_same_session(valkey, redis_client):
    ours = history(redis_client)
    ours.add_messages(turn(1))
    with community_history(valkey.url, "alice", "s1") as theirs:
        theirs.add_messages(turn(2, tools=1))
        ours.add_messages(turn(3))
        assert theirs.messages == turn(1) + turn(2, tools=1) + turn(3)
    assert ours.messages == turn(1) + turn(2, tools=1) + turn(3)


def test_a_retried_save_appends_nothing_twice(redis_client):
    """`retry_on_timeout` may send the same script call again after the server ran it: when
    the turn's last message has an id (the agent's answers always do), the repeat is a no-op."""
    hist = history(redis_client)
    exchange = [HumanMessage("question"), AIMessage("answer", id="answer-1")]
    hist.add_messages(exchange)
    hist.add_messages(exchange)  # the retry
    assert hist.messages == exchange
    # A new answer (a new id) to the same question is a new turn.
    hist.add_messages([HumanMessage("question"), AIMessage("answer", id="answer-2")])
    assert len(hist.messages) == 4


def test_the_same_exchange_without_ids_is_kept_each_time(redis_client):
    """Without an id nothing tells a retry from a user repeating themselves: keep both."""
    hist = history(redis_client)
    exchange = [HumanMessage("hi"), AIMessage("Hello!")]
    hist.add_messages(exchange)
    hist.add_messages(exchange)
    assert hist.messages == exchange + exchange
