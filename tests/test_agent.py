"""The agent end to end: the real `langchain-openai` client against the scripted local
OpenAI-compatible server, the real Redis memory, and the offline market data."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from stock_agent.agent.context import always_confirm
from stock_agent.app import App
from stock_agent.errors import ModelUnavailable
from tests.openai_server import ScriptedOpenAI, text, tool_call


@pytest.fixture
def server():
    with ScriptedOpenAI(api_key="test-key") as s:
        yield s


@pytest.fixture
def app(settings, server) -> App:
    return App(
        replace(
            settings, openai_api_key="test-key", openai_base_url=server.base_url, model="test-model"
        )
    )


def contents(messages: list[dict], role: str) -> list[str]:
    return [m.get("content") or "" for m in messages if m["role"] == role]


def stored(app: App, user: str, session: str) -> list[dict]:
    raw = app.backend.client.lrange(app.keys.messages(user, session), 0, -1)
    return [json.loads(item) for item in reversed(raw)]


def test_second_turn_carries_the_first(app, server):
    server.queue(
        tool_call("analyze_stocks", {"symbols": ["AAPL"]}),
        text("AAPL is in an uptrend."),
        text("You asked about AAPL."),
    )
    agent = app.agent()
    first = agent.ask("How is AAPL doing?", user_id="alice", session_id="s1")
    second = agent.ask("What did I ask you?", user_id="alice", session_id="s1")

    assert first == "AAPL is in an uptrend."
    assert second == "You asked about AAPL."
    assert server.rejected == []
    # Request 2 is the first turn's follow-up with the tool result; request 3 is turn two.
    tool_turn = server.requests[1]["messages"]
    assert tool_turn[-1]["role"] == "tool" and '"AAPL"' in tool_turn[-1]["content"]
    turn_two = server.requests[2]["messages"]
    assert turn_two[0]["role"] == "system"
    assert [(m["role"], m.get("content")) for m in turn_two[1:]] == [
        ("user", "How is AAPL doing?"),
        ("assistant", "AAPL is in an uptrend."),
        ("user", "What did I ask you?"),
    ]
    # Saved once each: the user's messages and the answers, no duplicates.
    assert [(m["type"], m["data"]["content"]) for m in stored(app, "alice", "s1")] == [
        ("human", "How is AAPL doing?"),
        ("ai", "AAPL is in an uptrend."),
        ("human", "What did I ask you?"),
        ("ai", "You asked about AAPL."),
    ]


def test_new_session_system_prompt_carries_saved_preferences(app, server):
    server.queue(
        tool_call("update_profile", {"add_symbols": ["NVDA", "msft"], "alert_threshold": "-4%"}),
        text("Saved: NVDA and MSFT, alert at -4%."),
        text("Hello again."),
    )
    agent = app.agent()
    agent.ask(
        "Follow NVDA and MSFT, alert me at -4%",
        user_id="alice",
        session_id="first",
        confirm=always_confirm,
    )
    profile = app.profiles.get("alice")
    assert profile.preferred_symbols == ["NVDA", "MSFT"]
    assert profile.alert_threshold == pytest.approx(-0.04)

    # A new process would build a new agent: do the same.
    App(app.settings).agent().ask("Hi", user_id="alice", session_id="second")
    system = server.requests[-1]["messages"][0]
    assert system["role"] == "system"
    assert "NVDA, MSFT" in system["content"]
    assert "-4.0%" in system["content"]
    # ...and the new session starts empty: system + the new user message only.
    assert [m["role"] for m in server.requests[-1]["messages"]] == ["system", "user"]


def test_reading_the_history_at_turn_start_refreshes_the_ttl(app, server):
    agent = app.agent()
    server.queue(text("one"))
    agent.ask("first", user_id="alice", session_id="s1")
    key = app.keys.messages("alice", "s1")
    app.backend.client.expire(key, 5)
    # The scripted model reports the TTL it sees mid-turn: after the read, before the write.
    server.queue(lambda body: text(f"ttl={app.backend.client.ttl(key)}"))
    answer = agent.ask("second", user_id="alice", session_id="s1")
    assert int(answer.removeprefix("ttl=")) > app.settings.session_ttl - 5


def test_window_bounds_what_the_model_receives(app, server):
    small = App(replace(app.settings, history_window=4))
    agent = small.agent()
    for i in range(6):
        server.queue(text(f"answer {i}"))
        agent.ask(f"question {i}", user_id="alice", session_id="w")
    last = server.requests[-1]["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert contents(last, "user") == ["question 3", "question 4", "question 5"]
    assert len(stored(small, "alice", "w")) == 4


def test_turn_costs_two_round_trips_and_no_new_connection(app, server, monkeypatch):
    import redis.connection

    agent = app.agent()
    server.queue(text("warm-up"))
    agent.ask("warm up", user_id="alice", session_id="rt")  # loads the script, opens the pool

    def commands() -> dict[str, int]:
        info = app.backend.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items()}

    # One send of packed commands is one round trip (a pipeline sends all of its commands at once).
    sends = []
    real_send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self, command, check_health=True):
        sends.append(self)
        return real_send(self, command, check_health)

    before = commands()
    conns_before = int(app.backend.client.info("stats")["total_connections_received"])
    server.queue(text("answer"))
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting_send)
    agent.ask("question", user_id="alice", session_id="rt")
    monkeypatch.undo()
    after = commands()

    assert len(sends) == 2
    assert int(app.backend.client.info("stats")["total_connections_received"]) == conns_before + 0
    # Read: LRANGE, EXPIRE, ZADD, EXPIRE, HGETALL in one pipeline; write: one EVALSHA.
    for command, calls in {"lrange": 1, "hgetall": 1, "evalsha": 1}.items():
        assert after[command] - before.get(command, 0) == calls, command


def test_model_refusing_the_key_is_one_clear_error(app, server):
    bad = App(replace(app.settings, openai_api_key="wrong-key"))
    with pytest.raises(ModelUnavailable) as info:
        bad.agent().ask("hi", user_id="alice", session_id="k")
    assert "refused the API key" in str(info.value)
    assert "wrong-key" not in str(info.value)


def test_one_agent_serves_two_users_interleaved(app, server, redis_client):
    """One agent object, two users' turns interleaved in one process: each request's system
    prompt carries only its own user's profile, and each tool call touches only its own
    user's keys (the user arrives per call, never bound when the graph is built)."""
    app.profiles.set_field("alice", "notes", "alice-note: dividends")
    app.profiles.set_field("bob", "notes", "bob-note: growth")
    agent = app.agent()
    assert app.agent() is agent  # built once

    server.queue(
        tool_call("update_profile", {"add_symbols": ["AAPL"]}),
        text("saved for alice"),
        tool_call("update_profile", {"add_symbols": ["TSLA"]}),
        text("saved for bob"),
        text("alice again"),
        text("bob again"),
    )
    agent.ask("follow AAPL", user_id="alice", session_id="a1", confirm=always_confirm)
    agent.ask("follow TSLA", user_id="bob", session_id="b1", confirm=always_confirm)
    agent.ask("hello", user_id="alice", session_id="a1")
    agent.ask("hello", user_id="bob", session_id="b1")

    assert app.profiles.get("alice").preferred_symbols == ["AAPL"]
    assert app.profiles.get("bob").preferred_symbols == ["TSLA"]
    systems = [r["messages"][0]["content"] for r in server.requests]
    # requests: alice tool call, alice follow-up, bob tool call, bob follow-up, alice, bob
    owners = ["alice", "alice", "bob", "bob", "alice", "bob"]
    for owner, system in zip(owners, systems, strict=True):
        other = "bob" if owner == "alice" else "alice"
        assert f"{owner}-note" in system and f"{other}-note" not in system
    assert "AAPL" in systems[4] and "TSLA" not in systems[4]
    assert "TSLA" in systems[5] and "AAPL" not in systems[5]
    # each user's session holds only its own turns
    assert [m["data"]["content"] for m in stored(app, "alice", "a1")] == [
        "follow AAPL",
        "saved for alice",
        "hello",
        "alice again",
    ]
    assert [m["data"]["content"] for m in stored(app, "bob", "b1")] == [
        "follow TSLA",
        "saved for bob",
        "hello",
        "bob again",
    ]
