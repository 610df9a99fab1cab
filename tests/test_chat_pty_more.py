"""The chat showing its work in a real pseudo-terminal: the "thinking ..." spinner, and a
stopped answer shown once. What a person sees is read back through a small terminal emulator
(tests/terminal_screen.py): the raw output holds every redraw."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.openai_server import ScriptedOpenAI, text, tool_call
from tests.terminal_screen import screen_text
from tests.test_chat_pty import Chat


@pytest.fixture
def spawn(pty_env: dict[str, str]) -> Iterator[Any]:
    started: list[Chat] = []

    def start(*args: str) -> Chat:
        started.append(Chat(pty_env, *args))
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
    assert "you> how are the markets?\nMarkets are calm.\nyou>" in shown
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
    assert "you> how is TSLA?\nTSLA fell 6.1% on the day.\nyou>" in shown
    assert "thinking" not in shown and "⋯" not in shown


def test_ctrl_c_shows_the_partial_answer_once(
    spawn: Any, openai_server: ScriptedOpenAI, redis_client: Any
) -> None:
    openai_server.chunk_delay = 0.05
    openai_server.queue(text(slow_story()))
    chat = spawn("--session", "s1")
    log = recorded(chat)
    chat.prompt()
    chat.say("tell me a story")
    chat.expect_exact("word30")  # three lines of a 100-column terminal
    chat.child.sendintr()
    chat.expect_exact("(stopped; this exchange was not saved)")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0

    shown = screen(log)
    assert shown.count("Once word0 word1") == 1
    assert shown.count("(stopped; this exchange was not saved)") == 1
    # the partial answer, then at once the notice
    assert re.search(r"\nOnce word0 word1 [^\n]*\n(?:(?:word\d+ ?)+\n)*\(stopped; this", shown)
    assert "^C" not in log.getvalue()  # the terminal did not echo the key into the answer
    assert redis_client.llen("agent:memory:test_agent:alice:s1:messages") == 0


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
    assert "you> typed ahead\nNext.\n" in shown
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
