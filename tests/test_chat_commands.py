"""The chat's slash commands /retry, /model, /resume, /export and /sessions, scripted through a
pipe (one line each, answers on stdout, errors on stderr), and Tab completion and the export
format called directly. Memory is the test Valkey, the model the scripted server."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from stock_agent.app import App
from stock_agent.config import Settings
from stock_agent.ui.chat import ChatState, complete_slash, session_export
from tests.openai_server import ScriptedOpenAI, text, tool_call
from tests.test_chat_piped import chat, conversation

MESSAGES = "agent:memory:test_agent:alice:{}:messages"


def user_texts(server: ScriptedOpenAI) -> list[str]:
    """The last user message of each chat request, in order."""
    return [
        r["messages"][-1]["content"] for r in server.requests if r["messages"][-1]["role"] == "user"
    ]


# --------------------------------------------------------------------------- /retry


def test_retry_asks_again_for_another_answer(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("Calm."), text("Calm, again."))
    result = chat(model_env, "/retry\nhow are markets?\n/retry\n", "--session", "s1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "nothing to retry\nCalm.\nCalm, again.\n"
    assert user_texts(openai_server) == ["how are markets?", "how are markets?"]
    assert conversation(openai_server.requests[1]) == [
        ("user", "how are markets?"),
        ("assistant", "Calm."),
        ("user", "how are markets?"),
    ]


def test_retry_in_a_new_chat_uses_the_sessions_last_message(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("First."), text("Second."), text("Again."))
    assert chat(model_env, "one\ntwo\n", "--session", "s1").returncode == 0
    result = chat(model_env, "/retry\n", "--session", "s1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Again.\n"
    assert user_texts(openai_server) == ["one", "two", "two"]


# --------------------------------------------------------------------------- /model


def test_model_switches_the_model_for_the_rest_of_the_chat(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("From the first."), text("From the second."), text("Still second."))
    stdin = "/model\nhello\n/model other-model\n/model\nhello again\nand again\n"
    result = chat(model_env, stdin, "--new")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "model test-model\n"
        "From the first.\n"
        "model other-model for the rest of this chat\n"
        "model other-model\n"
        "From the second.\n"
        "Still second.\n"
    )
    assert [r["model"] for r in openai_server.requests] == [
        "test-model",
        "other-model",
        "other-model",
    ]
    # The session goes on: the new model sees the first exchange.
    assert conversation(openai_server.requests[1])[:2] == [
        ("user", "hello"),
        ("assistant", "From the first."),
    ]


def test_model_that_cannot_be_built_is_one_line(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    result = chat(model_env, "/model nosuchprovider:x\nhello\n", "--new")
    assert result.returncode == 6
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot use model 'nosuchprovider:x': ")
    assert line.endswith("(/model NAME picks another)")
    assert "Traceback" not in result.stderr
    assert openai_server.requests == []


def test_model_name_with_a_space_is_refused(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("Still the first."))
    result = chat(model_env, "/model two words\nhello\n", "--new")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "error: invalid model name 'two words' (usage: /model NAME)\n"
    assert result.stdout == "Still the first.\n"
    assert openai_server.requests[0]["model"] == "test-model"


# --------------------------------------------------------------------------- /resume


def test_resume_switches_to_a_live_session(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("Noted AAPL."), text("Other."), text("You asked about AAPL."))
    assert chat(model_env, "remember AAPL\n", "--session", "work").returncode == 0
    stdin = "something else\n/resume a*\n/resume nosuch\n/resume work\nwhat did I ask?\n/history\n"
    result = chat(model_env, stdin, "--session", "other")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "error: invalid session id 'a*' (a session id uses letters, digits and _ . @ - only, "
        "1 to 64 characters)\n"
    )
    assert result.stdout.startswith(
        "Other.\n"
        "no live session nosuch; /sessions lists them\n"
        "resumed session work (2 messages)\n"
        "You asked about AAPL.\n"
        "you> remember AAPL\n"
    )
    assert conversation(openai_server.requests[-1]) == [
        ("user", "remember AAPL"),
        ("assistant", "Noted AAPL."),
        ("user", "what did I ask?"),
    ]


def test_resume_without_an_id_says_how(model_env: dict[str, str]) -> None:
    result = chat(model_env, "/resume\n", "--new")
    assert result.returncode == 0
    assert result.stderr == "error: which session? (usage: /resume ID; /sessions lists them)\n"


# --------------------------------------------------------------------------- /sessions


def test_sessions_lists_this_session_after_new_and_clear(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("Hi."))
    result = chat(model_env, "hello\n/new\n/sessions\n", "--session", "s1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    new_id = lines[1].removeprefix("new session ")
    assert lines[2:4] == ["Sessions of alice, newest first", lines[3]]
    assert lines[3].split()[:2] == ["SESSION", "MESSAGES"]
    assert lines[4] == f"{new_id}* (this session, no messages yet)"
    assert lines[5].split()[:2] == ["s1", "2"]  # not starred
    assert len(lines) == 6

    result = chat(model_env, "/clear\n/sessions\n", "--session", "s1")
    assert result.stdout.splitlines() == [
        "session s1 cleared",
        "Sessions of alice, newest first",
        "s1* (this session, no messages yet)",
    ]


# --------------------------------------------------------------------------- /export


def test_export_writes_markdown_and_json_as_stored(
    model_env: dict[str, str], openai_server: ScriptedOpenAI, tmp_path: Path
) -> None:
    openai_server.queue(
        tool_call("analyze_stocks", {"symbols": ["TSLA"]}),
        text("TSLA fell **6.1%**.\x1b[31m Red\x1b[0m"),
    )
    md, js = tmp_path / "s.md", tmp_path / "s.JSON"
    result = chat(model_env, f"how is TSLA?\n/export {md}\n/export {js}\n", "--session", "s1")
    assert result.returncode == 0, result.stderr
    # On the terminal side the control sequences are gone; the files keep the text as stored.
    assert result.stdout == (
        f"TSLA fell **6.1%**. Red\nexported 2 messages to {md}\nexported 2 messages to {js}\n"
    )
    assert md.read_text(encoding="utf-8") == (
        "# stock-agent session s1\n\n"
        "User: alice\n\n"
        "**you**\n\n"
        "how is TSLA?\n\n"
        "**stock-agent**\n\n"
        "TSLA fell **6.1%**.\x1b[31m Red\x1b[0m\n"
    )
    document = json.loads(js.read_text(encoding="utf-8"))
    assert set(document) == {"user_id", "session_id", "exported_at", "messages"}
    assert (document["user_id"], document["session_id"]) == ("alice", "s1")
    exported = dt.datetime.fromisoformat(document["exported_at"])
    assert abs((dt.datetime.now(dt.UTC) - exported).total_seconds()) < 600
    # A turn is saved as question and answer (the tool call and its result are not kept).
    assert document["messages"] == [
        {"role": "user", "content": "how is TSLA?"},
        {"role": "assistant", "content": "TSLA fell **6.1%**.\x1b[31m Red\x1b[0m"},
    ]


def test_export_defaults_to_the_session_id_in_the_current_folder(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("Hi."))
    result = chat(model_env, "/export\nhello\n/export\n", "--session", "s1")
    assert result.returncode == 0, result.stderr
    path = Path(model_env["STOCK_AGENT_HOME"]).parent / "session-s1.md"
    assert result.stdout == (
        f"nothing to export: this session has no messages yet\nHi.\nexported 2 messages to {path}\n"
    )
    assert path.read_text(encoding="utf-8").startswith("# stock-agent session s1\n")


def test_export_to_an_unwritable_path_is_one_line(
    model_env: dict[str, str], openai_server: ScriptedOpenAI, tmp_path: Path
) -> None:
    openai_server.queue(text("Hi."), text("Still here."))
    target = tmp_path / "no" / "such" / "dir.md"
    result = chat(model_env, f"hello\n/export {target}\nstill there?\n", "--session", "s1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"error: cannot write {target}: No such file or directory\n"
    assert result.stdout == "Hi.\nStill here.\n"


# --------------------------------------------------------------------------- called directly


@pytest.fixture
def state(settings: Settings) -> Iterator[ChatState]:
    with App(settings) as app:
        yield ChatState(app, "alice", "s1")


def test_tab_completes_commands_only_at_the_start_of_a_line(state: ChatState) -> None:
    assert complete_slash(state, "/ret") == ("/ret", ["/retry"])
    assert complete_slash(state, "/re") == ("/re", ["/retry", "/resume"])
    assert complete_slash(state, "/E") == ("/E", ["/export", "/exit"])
    assert complete_slash(state, "/") == (
        "/",
        [
            "/help",
            "/profile",
            "/history",
            "/sessions",
            "/new",
            "/clear",
            "/chart",
            "/retry",
            "/model",
            "/resume",
            "/export",
            "/exit",
        ],
    )
    assert complete_slash(state, "tell me /re")[1] == []
    assert complete_slash(state, " /re")[1] == []
    assert complete_slash(state, "/retry now")[1] == []
    assert complete_slash(state, "/xyz")[1] == []


def test_tab_completes_live_session_ids_after_resume(state: ChatState) -> None:
    sessions = state.app.sessions
    for session_id in ("work", "weekend", "other"):
        sessions.save_turn("alice", session_id, [HumanMessage("q"), AIMessage("a")])
    assert complete_slash(state, "/resume w") == ("w", ["weekend", "work"])
    assert sorted(complete_slash(state, "/resume ")[1]) == ["other", "weekend", "work"]
    assert complete_slash(state, "/resume work x")[1] == []
    assert complete_slash(state, "/export w")[1] == []


def test_the_markdown_export_shows_the_turns_only() -> None:
    messages: list[dict[str, Any]] = [
        {"type": "system", "data": {"content": "be brief"}},
        {"type": "human", "data": {"content": "hi"}},
        {"type": "ai", "data": {"content": ""}},  # a tool call
        {"type": "tool", "data": {"content": '{"price": 1}'}},
        {"type": "ai", "data": {"content": [{"type": "text", "text": "Hello."}]}},
    ]
    assert session_export("bob", "s9", messages, json_format=False) == (
        "# stock-agent session s9\n\nUser: bob\n\n**you**\n\nhi\n\n**stock-agent**\n\nHello.\n"
    )
    document = json.loads(session_export("bob", "s9", messages, json_format=True))
    assert document["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "tool", "content": '{"price": 1}'},
        {"role": "assistant", "content": "Hello."},
    ]
