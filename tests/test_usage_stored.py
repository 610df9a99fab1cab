"""What chat turns used, stored with the session and per user per day (issue 15): the real
agent against the scripted model server (which reports token usage as OpenAI does), the
real test Valkey, and the `usage` and `sessions` commands in-process."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from stock_agent.app import App
from stock_agent.cli import main
from stock_agent.core.usage import TurnUsage
from stock_agent.errors import InvalidInput
from stock_agent.store.usage import parse_since
from tests.openai_server import ScriptedOpenAI, text, tool_call

TODAY = dt.date.today().isoformat()


@pytest.fixture
def server():
    with ScriptedOpenAI(api_key="test-key") as s:
        yield s


def model_app(settings: Any, server: ScriptedOpenAI, prices: str | None = None) -> App:
    return App(
        replace(
            settings,
            openai_api_key="test-key",
            openai_base_url=server.base_url,
            model="test-model",
            prices=prices,
        )
    )


def test_a_turn_reports_and_stores_what_its_requests_used(settings, server):
    server.queue(
        tool_call("analyze_stocks", {"symbols": ["AAPL"]}),
        text("AAPL is in an uptrend."),
    )
    app = model_app(settings, server, prices="test-model=1/2")
    told: list[TurnUsage] = []
    app.agent().ask("How is AAPL?", user_id="ana", session_id="s1", on_usage=told.append)

    tokens_in, tokens_out = server.reported_usage()  # two requests: the tool call, the answer
    assert tokens_in > 0 and tokens_out > 0
    cost = (tokens_in * 1 + tokens_out * 2) / 1_000_000
    assert told == [TurnUsage("test-model", tokens_in, tokens_out, pytest.approx(cost), 1)]

    # with the messages: the answer carries the turn's usage
    raw = app.backend.client.lrange(app.keys.messages("ana", "s1"), 0, 0)[0]
    answer = json.loads(raw)["data"]
    assert answer["usage_metadata"]["input_tokens"] == tokens_in
    assert answer["usage_metadata"]["output_tokens"] == tokens_out
    assert answer["response_metadata"] == {"model_name": "test-model", "cost_usd": cost}

    # the session's totals, listed
    (info,) = app.sessions.list("ana")
    assert info.usage is not None
    assert (info.usage.turns, info.usage.tokens_in, info.usage.tokens_out) == (
        1,
        tokens_in,
        tokens_out,
    )
    assert info.usage.cost == pytest.approx(cost) and info.usage.unpriced == 0

    # the day's totals, by model
    (day,) = app.usage.days("ana", dt.date.today(), dt.date.today())
    assert day.day == TODAY
    totals = day.by_model["test-model"]
    assert (totals.turns, totals.tokens_in, totals.tokens_out) == (1, tokens_in, tokens_out)
    assert totals.cost == pytest.approx(cost)


def test_totals_add_up_over_turns_and_sessions_and_an_unknown_price_is_unpriced(settings, server):
    server.queue(text("one"), text("two"), text("three"))
    app = model_app(settings, server)  # test-model has no price
    agent = app.agent()
    agent.ask("first", user_id="bo", session_id="s1")
    agent.ask("second", user_id="bo", session_id="s1")
    first_two = server.reported_usage()
    agent.ask("third", user_id="bo", session_id="s2")
    everything = server.reported_usage()

    sessions = {s.session_id: s.usage for s in app.sessions.list("bo")}
    assert sessions["s1"] is not None and sessions["s2"] is not None
    assert (sessions["s1"].turns, sessions["s1"].tokens_in, sessions["s1"].tokens_out) == (
        2,
        *first_two,
    )
    assert sessions["s1"].unpriced == 2 and sessions["s1"].cost_text == "unpriced"
    (day,) = app.usage.days("bo", dt.date.today(), dt.date.today())
    assert (day.total.turns, day.total.tokens_in, day.total.tokens_out) == (3, *everything)
    assert day.total.cost_text == "unpriced"  # never $0


def test_a_retried_save_is_counted_once(settings):
    app = App(settings)
    answer = AIMessage(
        content="hi",
        id="answer-1",
        usage_metadata={"input_tokens": 10, "output_tokens": 4, "total_tokens": 14},
        response_metadata={"model_name": "m", "cost_usd": 0.5},
    )
    turn = [HumanMessage("hello"), answer]
    app.sessions.save_turn("cy", "s1", turn)
    app.sessions.save_turn("cy", "s1", turn)  # the reply was lost; the client sent it again
    (info,) = app.sessions.list("cy")
    assert info.messages == 2
    assert info.usage is not None and (info.usage.turns, info.usage.tokens_in) == (1, 10)
    (day,) = app.usage.days("cy", dt.date.today(), dt.date.today())
    assert day.by_model["m"].turns == 1 and day.by_model["m"].cost == pytest.approx(0.5)


def test_messages_without_usage_are_stored_and_not_counted(settings):
    app = App(settings)
    app.sessions.save_turn("di", "s1", [HumanMessage("hello"), AIMessage("hi", id="answer-2")])
    (info,) = app.sessions.list("di")
    assert info.messages == 2 and info.usage is None
    assert app.usage.days("di", dt.date.today(), dt.date.today()) == []


def test_session_usage_lives_as_long_as_its_messages_and_the_day_is_kept(settings, server):
    server.queue(text("one"))
    app = model_app(replace(settings, session_ttl=600), server)
    app.agent().ask("first", user_id="ed", session_id="s1")
    client, keys = app.backend.client, app.keys
    usage_key = keys.session_usage("ed", "s1")
    assert 590 <= client.ttl(usage_key) <= 600
    client.expire(keys.messages("ed", "s1"), 100)
    client.expire(usage_key, 100)
    app.sessions.read_turn("ed", "s1")  # a read slides both
    assert client.ttl(usage_key) > 500 and client.ttl(keys.messages("ed", "s1")) > 500
    assert client.ttl(keys.usage_day("ed", TODAY)) == -1  # no expiry, like the profile

    app.sessions.clear("ed", "s1")  # the session goes; what the day used stays
    assert not client.exists(usage_key)
    assert app.usage.days("ed", dt.date.today(), dt.date.today())[0].total.turns == 1


def test_a_damaged_usage_field_is_not_trusted(settings):
    app = App(settings)
    app.sessions.save_turn("fi", "s1", [HumanMessage("a"), AIMessage("b", id="answer-3")])
    app.backend.client.hset(app.keys.session_usage("fi", "s1"), mapping={"turns": "x", "in": 5})
    (info,) = app.sessions.list("fi")
    assert info.usage is not None and (info.usage.turns, info.usage.tokens_in) == (0, 5)


def test_since_spans_and_dates():
    today = dt.date(2026, 12, 2)
    assert parse_since("7d", today) == dt.date(2026, 11, 26)
    assert parse_since("1d", today) == today
    assert parse_since("2w", today) == dt.date(2026, 11, 19)
    assert parse_since("2026-11-01", today) == dt.date(2026, 11, 1)
    for bad in ("", "7", "d", "0d", "-3d", "99999d", "2026-13-01", "2027-01-01", "soon"):
        with pytest.raises(InvalidInput):
            parse_since(bad, today)


# --------------------------------------------------------------------------- the commands


def cli(env: dict[str, str], capsys: Any, *args: str) -> tuple[int, str, str]:
    code = main(list(args), env=env)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_usage_and_sessions_commands_show_the_stored_totals(
    model_env: dict[str, str], openai_server: ScriptedOpenAI, capsys: Any
):
    openai_server.queue(text("one"), text("two"))
    env = {**model_env, "STOCK_AGENT_PRICES": "test-model=1000/2000"}
    app = App.from_env(env)
    try:
        agent = app.agent()
        agent.ask("first", user_id="alice", session_id="s1")
        agent.ask("second", user_id="alice", session_id="s1")
    finally:
        app.close()
    tokens_in, tokens_out = openai_server.reported_usage()
    cost = (tokens_in * 1000 + tokens_out * 2000) / 1_000_000

    code, out, _ = cli(env, capsys, "usage", "--since", "7d", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["total"] == {
        "turns": 2,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost_usd": round(cost, 6),
        "unpriced_turns": 0,
    }
    assert list(report["models"]) == ["test-model"]
    assert [d["date"] for d in report["days"]] == [TODAY]

    code, out, _ = cli(env, capsys, "usage")
    assert code == 0
    assert f"{TODAY}      2" in out and f"{tokens_in:,}" in out and "test-model: 2 turns" in out

    code, out, _ = cli(env, capsys, "sessions", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["usage"]["turns"] == 2 and listed["usage"]["tokens_out"] == tokens_out
    code, out, _ = cli(env, capsys, "sessions", "list")
    assert f"{tokens_in:,}/{tokens_out:,}" in out

    code, out, _ = cli(env, capsys, "sessions", "show", "s1", "--json")
    shown = json.loads(out)
    answers = [m for m in shown if m["type"] == "ai"]
    assert [a["usage"]["model"] for a in answers] == ["test-model", "test-model"]
    assert sum(a["usage"]["tokens_in"] for a in answers) == tokens_in
    assert "usage" not in shown[0]  # the user's message has none


def test_usage_with_nothing_counted_and_a_bad_since(cli_env: dict[str, str], capsys: Any):
    code, out, _ = cli(cli_env, capsys, "usage", "--user", "nobody")
    assert code == 0 and "No chat turns counted" in out
    code, _, err = cli(cli_env, capsys, "usage", "--since", "soon")
    assert code == InvalidInput.exit_code
    assert "cannot read --since 'soon'" in err and "Traceback" not in err
