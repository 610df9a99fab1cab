"""`stock-agent chat` in a real pseudo-terminal (pexpect): banner, streamed answers, slash
commands, Ctrl-C to stop an answer, Ctrl-D to leave. The model is the scripted server."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.openai_server import ScriptedOpenAI, error, text, tool_call

TIMEOUT = 10  # seconds, for every expect
PROMPT = "you>"  # prompt_toolkit draws the space after it with a cursor move


class Chat:
    """A `stock-agent chat` process in a pseudo-terminal."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "stock_agent", "chat", *args],
            env=env,
            cwd=str(Path(env["STOCK_AGENT_HOME"]).parent),
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(40, 100),
            timeout=TIMEOUT,
        )

    def expect(self, pattern: Any) -> re.Match[str] | None:
        self.child.expect(pattern, timeout=TIMEOUT)
        return self.child.match

    def expect_exact(self, text: str) -> None:
        self.child.expect_exact(text, timeout=TIMEOUT)

    def prompt(self) -> None:
        self.expect_exact(PROMPT)

    def say(self, line: str) -> None:
        self.child.sendline(line)

    def leave_with_ctrl_d(self) -> int:
        self.child.sendcontrol("d")
        self.expect_exact("bye")
        return self.wait()

    def wait(self) -> int:
        self.child.expect(pexpect.EOF, timeout=TIMEOUT)
        self.child.close()
        assert self.child.signalstatus is None
        return self.child.exitstatus

    def kill(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def spawn(pty_env: dict[str, str]) -> Iterator[Any]:
    started: list[Chat] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Chat:
        chat = Chat(env or pty_env, *args)
        started.append(chat)
        return chat

    yield start
    for chat in started:
        chat.kill()


def test_banner_answer_and_slash_commands(
    spawn: Any, openai_server: ScriptedOpenAI, redis_client: Any
) -> None:
    from stock_agent.store.keys import KeySpace
    from stock_agent.store.profile import ProfileStore

    ProfileStore(redis_client, KeySpace("test_agent")).add_symbols("alice", ["AAPL", "TSLA"])
    openai_server.queue(text("Markets are calm today."))

    chat = spawn("--new")
    banner = chat.expect(r"user alice · session ([A-Za-z0-9_.@-]+) new · model test-model")
    session_id = banner.group(1)
    chat.prompt()

    chat.say("how are the markets?")
    chat.expect_exact("Markets are calm today.")
    chat.prompt()

    chat.say("/profile")
    chat.expect_exact("Profile of alice")
    chat.expect(r"preferred_symbols\s+AAPL, TSLA")
    chat.prompt()

    chat.say("/sessions")
    chat.expect_exact("Sessions of alice, newest first")
    chat.expect(re.escape(session_id) + r"\*\s+2\s")  # this session, starred, 2 messages
    chat.prompt()

    chat.say("/history")
    chat.expect_exact("you> how are the markets?")
    chat.expect_exact("agent> Markets are calm today.")
    chat.prompt()

    chat.say("/help")
    chat.expect_exact("Slash commands:")
    chat.expect_exact("Ctrl-C stops an answer and keeps the chat.")
    chat.prompt()

    assert chat.leave_with_ctrl_d() == 0
    [request] = openai_server.requests
    assert request["stream"] is True
    assert request["messages"][-1] == {"role": "user", "content": "how are the markets?"}
    assert openai_server.rejected == []


def test_status_line_while_a_tool_runs(spawn: Any, openai_server: ScriptedOpenAI) -> None:
    openai_server.chunk_delay = 0.2  # the answer starts late, so the status line is drawn
    openai_server.queue(
        tool_call("analyze_stocks", {"symbols": ["TSLA"]}), text("TSLA fell 6.1% on the day.")
    )
    chat = spawn("--new")
    chat.prompt()
    chat.say("how is TSLA?")
    chat.expect(r"⋯ analysis TSLA: (fetched|cached)")
    chat.expect_exact("TSLA fell 6.1% on the day.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    assert openai_server.rejected == []


def test_ctrl_c_stops_a_slow_answer_and_the_chat_goes_on(
    spawn: Any, openai_server: ScriptedOpenAI, redis_client: Any
) -> None:
    openai_server.chunk_delay = 0.05
    long_answer = "Once " + " ".join(f"word{i}" for i in range(400))  # ~20 s if not stopped
    openai_server.queue(text(long_answer), text("Short answer."))

    chat = spawn("--session", "s1")
    chat.prompt()
    chat.say("tell me a long story")
    chat.expect_exact("word3")
    chat.child.sendintr()
    chat.expect_exact("(stopped; this exchange was not saved)")
    chat.prompt()

    chat.say("something short")
    chat.expect_exact("Short answer.")
    chat.prompt()

    chat.say("/history")
    chat.expect_exact("you> something short")
    chat.expect_exact("agent> Short answer.")
    chat.prompt()
    assert "long story" not in chat.child.before
    assert chat.leave_with_ctrl_d() == 0

    assert openai_server.wait_idle()
    second = openai_server.requests[1]
    assert second["messages"][1:] == [{"role": "user", "content": "something short"}]
    assert redis_client.llen("agent:memory:test_agent:alice:s1:messages") == 2


def test_ctrl_c_at_the_prompt_input_history_and_exit(
    spawn: Any, openai_server: ScriptedOpenAI
) -> None:
    chat = spawn("--new")
    chat.prompt()
    chat.child.send("half a thought")
    chat.child.sendintr()  # clears the line, keeps the chat
    chat.prompt()
    chat.say("/help")
    chat.expect_exact("Slash commands:")
    chat.prompt()
    chat.child.send("\x1b[A")  # arrow up: the input history has the last line
    chat.expect_exact("/help")
    chat.child.send("\r")
    chat.expect_exact("Slash commands:")
    chat.prompt()
    chat.say("/exit")
    chat.expect_exact("bye")
    assert chat.wait() == 0
    assert openai_server.requests == []


def test_an_error_keeps_the_chat(spawn: Any, openai_server: ScriptedOpenAI) -> None:
    openai_server.queue(error(400, "Invalid request: too long"), text("Back again."))
    chat = spawn("--new")
    chat.prompt()
    chat.say("first")
    chat.expect(r"error: the model server at \S+ refused the request \(400\)")
    chat.prompt()
    chat.say("second")
    chat.expect_exact("Back again.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0
    # The failed turn was not saved: the second request does not carry it.
    assert openai_server.requests[1]["messages"][1:] == [{"role": "user", "content": "second"}]


def test_resuming_a_session_says_so(
    spawn: Any, openai_server: ScriptedOpenAI, pty_env: dict[str, str]
) -> None:
    openai_server.queue(text("First."))
    chat = spawn("--session", "kept")
    chat.prompt()
    chat.say("remember this")
    chat.expect_exact("First.")
    chat.prompt()
    assert chat.leave_with_ctrl_d() == 0

    again = spawn()  # no --session: the latest live session
    again.expect_exact("session kept resumed (2 messages)")
    again.prompt()
    again.say("/history")
    again.expect_exact("agent> First.")
    again.prompt()
    assert again.leave_with_ctrl_d() == 0


# --------------------------------------------------------------------------- other commands in a terminal


def command(env: dict[str, str], *args: str) -> Any:
    return pexpect.spawn(
        sys.executable,
        ["-m", "stock_agent", *args],
        env=env,
        cwd=str(Path(env["STOCK_AGENT_HOME"]).parent),
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(40, 100),
        timeout=TIMEOUT,
    )


def finish(child: Any) -> tuple[str, int]:
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    output = child.before
    child.close()
    return output, child.exitstatus


@pytest.mark.parametrize(("answer", "code", "kept"), [("n", 1, True), ("y", 0, False)])
def test_profile_reset_asks_first_in_a_terminal(
    pty_env: dict[str, str], redis_client: Any, answer: str, code: int, kept: bool
) -> None:
    from stock_agent.store.keys import KeySpace
    from stock_agent.store.profile import ProfileStore

    profiles = ProfileStore(redis_client, KeySpace("test_agent"))
    profiles.add_symbols("alice", ["AAPL"])
    child = command(pty_env, "profile", "reset")
    child.expect_exact("Delete the profile of alice? [y/N]:", timeout=TIMEOUT)
    child.sendline(answer)
    _, status = finish(child)
    assert status == code
    assert profiles.get("alice").preferred_symbols == (["AAPL"] if kept else [])


def test_narrated_analyze_renders_markdown_in_a_terminal(
    pty_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(
        tool_call("analyze_stocks", {"symbols": ["AAPL"]}),
        text("## AAPL\n\nThe trend is **up** and RSI is neutral."),
    )
    child = command(pty_env, "analyze", "AAPL")
    child.expect_exact("The trend is ", timeout=TIMEOUT)
    output, status = finish(child)
    assert status == 0
    assert "**" not in output and "##" not in output  # rendered, not printed raw
    assert openai_server.rejected == []


def test_ctrl_c_during_a_narrated_analyze_exits_130(
    pty_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.chunk_delay = 0.05
    openai_server.queue(text("Thinking " + " ".join(f"word{i}" for i in range(400))))
    child = command(pty_env, "analyze", "AAPL")
    child.expect_exact("word2", timeout=TIMEOUT)
    child.sendintr()
    output, status = finish(child)
    assert status == 130
    assert "Traceback" not in output
