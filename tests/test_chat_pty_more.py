"""The chat showing its work in a real pseudo-terminal: the "thinking ..." spinner, Tab
completion, /retry, /model, /resume, /export and /sessions, each turn under a dim label with a
blank line after it, and a stopped answer shown once. What a person sees is read back through
a small terminal emulator (tests/terminal_screen.py): the raw output holds every redraw."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.openai_server import ScriptedOpenAI, error, text, tool_call
from tests.terminal_screen import screen_text
from tests.test_chat_piped import chat as piped_chat
from tests.test_chat_pty import Chat


@pytest.fixture
def spawn(pty_env: dict[str, str]) -> Iterator[Any]:
    started: list[Chat] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Chat:
        started.append(Chat(env or pty_env, *args))
        return started[-1]

    yield start
    for chat in started:
        chat.kill()


def recorded(chat: Chat) -> io.StringIO:
    """Keep everything the chat writes (call before the first expect)."""
    log = io.StringIO()
    chat.child.logfile_read = log
    return log


def screen(log: io.StringIO) -> str:
    return screen_text(log.getvalue())


def slow_story(words: int = 400) -> str:
    return "Once " + " ".join(f"word{i}" for i in range(words))  # ~20 s at 0.05 s a chunk


def test_a_spinner_shows_until_the_first_token_and_is_gone_after(
    spawn: Any, openai_server: ScriptedOpenAI
) -> None:
    openai_server.chunk_delay = 0.5  # the first token comes late: the spinner is drawn
    openai_server.queue(text("Markets are calm."))
    chat = spawn("--new")
    log = recorded(chat)
    chat.prompt()
    chat.say("how are the markets?")
    chat.expect_exact("thinking ...")
    chat.expect_exact("Markets are calm.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    shown = screen(log)
    # The turn under its label, a blank line after it (after the usage line), and no spinner
    # left behind.
    assert re.search(
        r"\nyou> how are the markets\?\nstock-agent\nMarkets are calm\.\n(?:[^\n]+ out [^\n]+\n)?\nyou>",
        shown,
    )
    assert "thinking" not in shown


def test_thinking_again_after_a_tool_until_the_answer_starts(
    spawn: Any, openai_server: ScriptedOpenAI
) -> None:
    openai_server.chunk_delay = 0.3
    openai_server.queue(
        tool_call("analyze_stocks", {"symbols": ["TSLA"]}), text("TSLA fell 6.1% on the day.")
    )
    chat = spawn("--new")
    log = recorded(chat)
    chat.prompt()
    chat.say("how is TSLA?")
    chat.expect_exact("thinking ...")  # before the model's tool call
    # After the tool: its last status line, and the spinner again below it.
    chat.expect(r"⋯ analysis TSLA: (fetched|cached)[^⋯]*?thinking \.\.\.")
    chat.expect_exact("TSLA fell 6.1% on the day.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    shown = screen(log)
    assert re.search(
        r"\nyou> how is TSLA\?\nstock-agent\nTSLA fell 6\.1% on the day\.\n(?:[^\n]+ out [^\n]+\n)?\nyou>",
        shown,
    )
    assert "thinking" not in shown and "⋯" not in shown


def test_ctrl_c_shows_the_partial_answer_once_then_retry_asks_again(
    spawn: Any, openai_server: ScriptedOpenAI, redis_client: Any
) -> None:
    openai_server.chunk_delay = 0.05
    openai_server.queue(text(slow_story()), text("A short story."))
    chat = spawn("--session", "s1")
    log = recorded(chat)
    chat.prompt()
    chat.say("tell me a story")
    chat.expect_exact("word30")  # three lines of a 100-column terminal
    chat.child.sendintr()
    chat.expect_exact("(stopped; this exchange was not saved)")
    chat.prompt()
    chat.say("/retry")
    chat.expect_exact("asking again: tell me a story")
    chat.expect_exact("A short story.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0

    shown = screen(log)
    assert shown.count("Once word0 word1") == 1
    assert shown.count("(stopped; this exchange was not saved)") == 1
    # under the label, the partial answer (its last word may be cut short), then at once the
    # notice and the blank line
    assert re.search(
        r"\nstock-agent\nOnce word0 word1 [^\n]*\n(?:(?:word\d* ?)+\n)*"
        r"\(stopped; this exchange was not saved\)\n\nyou> /retry\n",
        shown,
    )
    assert "^C" not in log.getvalue()  # the terminal did not echo the key into the answer

    assert openai_server.wait_idle()
    first, second = openai_server.requests
    asked = {"role": "user", "content": "tell me a story"}
    assert first["messages"][-1] == second["messages"][-1] == asked
    assert second["messages"][1:] == [{"role": "user", "content": "tell me a story"}]
    assert redis_client.llen("agent:memory:test_agent:alice:s1:messages") == 2


def test_ctrl_c_while_a_tall_answer_is_drawn_shows_it_once(
    spawn: Any, openai_server: ScriptedOpenAI, redis_client: Any, pty_env: dict[str, str]
) -> None:
    openai_server.queue(text("\n\n".join(f"row{i}" for i in range(200))))  # 400 lines
    # Unbuffered, Python drops the rest of a write a signal cuts short (TextIOWrapper over a raw
    # FileIO ignores the count), which no program can make up for: the usual buffered stdout.
    env = {k: v for k, v in pty_env.items() if k != "PYTHONUNBUFFERED"}
    chat = spawn("--session", "s1", env=env)
    log = recorded(chat)
    chat.prompt()
    chat.say("a tall answer")
    # While it streams, the live display shows the first 39 lines: row100 is in the final
    # frame, which the chat is writing now (the test reads slowly, so the write takes a while).
    chat.expect_exact("row100")
    chat.child.sendintr()
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    shown = screen(log)
    assert shown.count("\nrow0\n") == 1
    assert shown.count("\nrow199\n") == 1
    assert redis_client.llen("agent:memory:test_agent:alice:s1:messages") == 2  # it was complete


def test_quick_ctrl_cs_stop_the_answer_once_and_keep_the_chat(
    spawn: Any, openai_server: ScriptedOpenAI
) -> None:
    # A Ctrl-C that came while the handler of the last one ran used to deadlock in it (about
    # one run in ten froze here, caught by the expect's timeout).
    openai_server.chunk_delay = 0.05
    openai_server.queue(text(slow_story()), text("Still here."))
    chat = spawn("--new")
    log = recorded(chat)
    chat.prompt()
    chat.say("tell me a story")
    chat.expect_exact("word30")
    for _ in range(3):
        chat.child.sendintr()
    chat.expect_exact("(stopped; this exchange was not saved)")
    chat.prompt()
    chat.say("are you there?")
    chat.expect_exact("Still here.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    shown = screen(log)
    assert shown.count("Once word0 word1") == 1
    assert shown.count("(stopped; this exchange was not saved)") == 1


def test_retry_after_a_failed_answer(spawn: Any, openai_server: ScriptedOpenAI) -> None:
    openai_server.queue(error(400, "Invalid request: not now"), text("Now it works."))
    chat = spawn("--new")
    chat.prompt()
    chat.say("/retry")
    chat.expect_exact("nothing to retry")
    chat.prompt()
    chat.say("how is AAPL?")
    chat.expect(r"error: the model server at \S+ refused the request \(400\)")
    chat.prompt()
    chat.say("/retry")
    chat.expect_exact("Now it works.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    assert [r["messages"][1:] for r in openai_server.requests] == [
        [{"role": "user", "content": "how is AAPL?"}],
        [{"role": "user", "content": "how is AAPL?"}],  # the failed turn was not saved
    ]


def test_tab_completes_slash_commands_and_session_ids(
    spawn: Any, openai_server: ScriptedOpenAI, model_env: dict[str, str]
) -> None:
    openai_server.queue(text("Noted."), text("Hi."))
    assert piped_chat(model_env, "remember AAPL\n", "--session", "kept").returncode == 0
    chat = spawn("--new")
    log = recorded(chat)
    chat.prompt()
    chat.child.send("/ret")
    chat.child.send("\t")
    chat.child.send("\r")
    chat.expect_exact("nothing to retry")  # "/ret" itself would be an unknown command
    chat.prompt()
    chat.child.send("/resume ke")
    chat.child.send("\t")
    chat.child.send("\r")
    chat.expect_exact("resumed session kept (2 messages)")
    chat.prompt()
    chat.child.send("hello\t")  # not a command: Tab completes nothing
    chat.child.send("\r")
    chat.expect_exact("Hi.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    shown = screen(log)
    assert "you> /retry\nnothing to retry\n" in shown
    assert "you> /resume kept\nresumed session kept (2 messages)\n" in shown
    assert "you> hello\nstock-agent\nHi.\n" in shown
    assert openai_server.requests[-1]["messages"][-1] == {"role": "user", "content": "hello"}


def test_model_switch_reaches_the_next_request_and_the_label(
    spawn: Any, openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("First model."), text("Second model."))
    chat = spawn("--new")
    log = recorded(chat)
    chat.expect_exact("· model test-model ·")
    chat.prompt()
    chat.say("one")
    chat.expect_exact("First model.")
    chat.prompt()
    chat.say("/model other-model")
    chat.expect_exact("model other-model for the rest of this chat")
    chat.prompt()  # at once: the new model is built with the next message
    chat.say("/model")
    chat.expect_exact("model other-model")
    chat.prompt()
    chat.say("two")
    chat.expect_exact("Second model.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    assert [r["model"] for r in openai_server.requests] == ["test-model", "other-model"]
    shown = screen(log)
    assert "you> one\nstock-agent\nFirst model.\n" in shown
    assert "you> two\nstock-agent · other-model\nSecond model.\n" in shown


def test_resume_sessions_and_export_in_a_terminal(
    spawn: Any, openai_server: ScriptedOpenAI, model_env: dict[str, str]
) -> None:
    openai_server.queue(text("Noted AAPL."), text("You asked about AAPL."))
    assert piped_chat(model_env, "remember AAPL\n", "--session", "kept").returncode == 0
    chat = spawn("--new")
    banner = chat.expect(r"session ([A-Za-z0-9_.@-]+) new")
    fresh = banner.group(1)
    chat.prompt()
    chat.say("/sessions")
    chat.expect_exact(f"{fresh}* (this session, no messages yet)")
    chat.expect(r"\nkept\s+2\s")
    chat.prompt()
    chat.say("/resume nosuch")
    chat.expect_exact("no live session nosuch; /sessions lists them")
    chat.prompt()
    chat.say("/resume bad*id")
    chat.expect_exact("error: invalid session id 'bad*id'")
    chat.prompt()
    chat.say("/resume kept")
    chat.expect_exact("resumed session kept (2 messages)")
    chat.prompt()
    chat.say("what did I ask?")
    chat.expect_exact("You asked about AAPL.")
    chat.prompt()
    chat.say("/export")
    chat.expect_exact("exported 4 messages to ")
    chat.prompt()
    chat.say("/new")
    chat.expect(r"new session ([A-Za-z0-9_.@-]+)")
    newer = chat.child.match.group(1)
    chat.prompt()
    chat.say("/sessions")
    chat.expect_exact(f"{newer}* (this session, no messages yet)")
    chat.expect(r"\nkept\s+4\s")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0

    assert openai_server.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "remember AAPL"},
        {"role": "assistant", "content": "Noted AAPL."},
        {"role": "user", "content": "what did I ask?"},
    ]
    exported = Path(model_env["STOCK_AGENT_HOME"]).parent / "session-kept.md"
    assert exported.read_text(encoding="utf-8") == (
        "# stock-agent session kept\n\nUser: alice\n\n"
        "**you**\n\nremember AAPL\n\n**stock-agent**\n\nNoted AAPL.\n\n"
        "**you**\n\nwhat did I ask?\n\n**stock-agent**\n\nYou asked about AAPL.\n"
    )


def test_keys_typed_during_an_answer_wait_for_the_prompt(
    spawn: Any, openai_server: ScriptedOpenAI
) -> None:
    openai_server.chunk_delay = 0.05
    openai_server.queue(text("Slow " + " ".join(f"w{i}" for i in range(40))), text("Next."))
    chat = spawn("--new")
    log = recorded(chat)
    chat.prompt()
    chat.say("first")
    chat.expect_exact("w5")
    chat.child.send("typed ahead")  # not echoed into the answer, not lost
    chat.expect_exact("w39")
    chat.prompt()
    chat.child.send("\r")
    chat.expect_exact("Next.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    shown = screen(log)
    assert shown.count("Slow w0 w1") == 1
    assert "you> typed ahead\nstock-agent\nNext.\n" in shown
    assert openai_server.requests[-1]["messages"][-1] == {"role": "user", "content": "typed ahead"}


def test_a_profile_question_in_the_middle_of_an_answer_echoes_the_reply(
    spawn: Any, openai_server: ScriptedOpenAI, redis_client: Any
) -> None:
    openai_server.queue(
        tool_call("update_profile", {"add_symbols": ["NVDA"]}), text("NVDA is on your list.")
    )
    chat = spawn("--new")
    log = recorded(chat)
    chat.prompt()
    chat.say("follow NVDA")
    chat.expect_exact("Save this change? [y/N]")
    chat.say("y")
    chat.expect_exact("NVDA is on your list.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    assert "Save this change? [y/N] y\n" in screen(log)  # the keys were echoed for the answer
    assert redis_client.hget("agent:memory:test_agent:alice:profile", "preferred_symbols")


def test_a_model_that_cannot_be_built_is_one_line_and_another_can_be_picked(
    spawn: Any, openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("Back on the first model."))
    chat = spawn("--new")
    chat.prompt()
    chat.say("/model nosuchprovider:x")
    chat.expect_exact("model nosuchprovider:x for the rest of this chat")
    chat.prompt()
    chat.say("hello")
    chat.expect_exact("stock-agent · nosuchprovider:x")
    chat.expect_exact("error: cannot use model 'nosuchprovider:x': ")
    chat.expect_exact("picks another)")  # (the line wraps at 100 columns)
    chat.prompt()
    chat.say("/model test-model")
    chat.expect_exact("model test-model for the rest of this chat")
    chat.prompt()
    chat.say("/retry")
    chat.expect_exact("Back on the first model.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    assert "Traceback" not in chat.child.before
    assert [r["messages"][-1]["content"] for r in openai_server.requests] == ["hello"]
