"""No answered turn lost to a Redis fault, end to end: a real `stock-agent chat` (on a pipe and
in a pseudo-terminal) against a Valkey server the test kills, restarts and fills, with the
scripted model server doing the killing mid-answer. Each test counts what the server holds at
the end: every answered turn exactly once, in order.

    (a) killed mid-answer, back 0.5 s later      (b) killed mid-answer, down for 5 s
    (c) killed, the chat exits first: journal    (d) noeviction, memory full
    (e) a wrong-type messages key                embedded store stopped mid-answer
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stock_agent.store import embedded
from stock_agent.store.journal import TurnJournal
from tests.openai_server import Reply, text
from tests.test_chat_pty import Chat
from tests.test_turn_saver import OwnValkey, fill_under_noeviction

DEADLOCK_GUARD = 60  # seconds: a guard against a hang, never a timing assertion
UNREACHABLE = "answer not saved yet: Redis unreachable; kept, will retry"
MESSAGES = "agent:memory:test_agent:alice:{}:messages"


class PipedChat:
    """`stock-agent chat` on a pipe, driven line by line: the test writes a line and waits for
    what the chat prints (answers on stdout, one line per store failure on stderr)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stock_agent", "chat", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=Path(env["STOCK_AGENT_HOME"]).parent,
        )
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def out_line(self) -> str | None:
        return self.out.get(timeout=DEADLOCK_GUARD)

    def err_line(self) -> str | None:
        return self.err.get(timeout=DEADLOCK_GUARD)

    def ask(self, line: str) -> str | None:
        """Send a message and return the answer line."""
        self.send(line)
        return self.out_line()

    def finish(self) -> tuple[int, list[str], list[str]]:
        """Close stdin; the exit code and whatever was printed after the last read."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(DEADLOCK_GUARD)
        return code, _drain(self.out), _drain(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLOCK_GUARD)


def _drain(lines: queue.Queue[str | None]) -> list[str]:
    out: list[str] = []
    while (line := lines.get(timeout=DEADLOCK_GUARD)) is not None:
        out.append(line)
    return out


@pytest.fixture
def own(tmp_path: Path) -> Iterator[OwnValkey]:
    server = OwnValkey(tmp_path / "valkey")
    yield server
    server.stop()


@pytest.fixture
def env(model_env: dict[str, str], own: OwnValkey) -> dict[str, str]:
    """The chat's environment: the scripted model, and this test's own Valkey."""
    return {**model_env, "REDIS_URL": own.url}


@pytest.fixture
def chats() -> Iterator[Callable[..., PipedChat]]:
    started: list[PipedChat] = []

    def start(env: dict[str, str], *args: str) -> PipedChat:
        chat = PipedChat(env, *args)
        started.append(chat)
        return chat

    yield start
    for chat in started:
        chat.kill()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stock_agent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLOCK_GUARD,
        cwd=Path(env["STOCK_AGENT_HOME"]).parent,
    )


def shown(env: dict[str, str], session: str) -> list[tuple[str, str]]:
    """`stock-agent sessions show ID --json`: (type, content) of every stored message."""
    result = cli(env, "sessions", "show", session, "--json")
    assert result.returncode == 0, result.stderr
    return [(m["type"], m["content"]) for m in json.loads(result.stdout)]


def turns(*pairs: tuple[str, str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for question, answer in pairs:
        out += [("human", question), ("ai", answer)]
    return out


def then(action: Callable[[], object], answer: str) -> Callable[[dict[str, Any]], Reply]:
    """A scripted reply that runs `action` mid-answer (after the turn's read, before its save)."""

    def reply(body: dict[str, Any]) -> Reply:
        action()
        return text(answer)

    return reply


def journal_of(env: dict[str, str]) -> TurnJournal:
    return TurnJournal.in_home(env["STOCK_AGENT_HOME"])


# --------------------------------------------------------------------------- (a) back in 0.5 s


def test_a_killed_mid_answer_and_back_half_a_second_later(env, own, openai_server, chats):
    restarted: list[threading.Thread] = []

    def kill_and_restart() -> None:
        own.kill()
        restarted.append(own.restart_after(0.5))

    openai_server.queue(text("a1"), then(kill_and_restart, "a2"), text("a3"), text("a4"))
    chat = chats(env, "--session", "s1")
    assert chat.ask("q1") == "a1"
    assert chat.ask("q2") == "a2"  # the answer is shown, whatever happens to its save
    restarted[0].join(DEADLOCK_GUARD)
    assert chat.ask("q3") == "a3"
    assert chat.ask("q4") == "a4"
    code, out, err = chat.finish()

    assert code == 0, err
    assert out == []
    # Saved by the save's own retries (the server was back within them), or kept, reported in
    # one line, and saved before q3's read: either way nothing is left unsaved.
    assert err in ([], [UNREACHABLE])
    assert shown(env, "s1") == turns(("q1", "a1"), ("q2", "a2"), ("q3", "a3"), ("q4", "a4"))
    # q3 was answered with q2 in its history: the kept turn went in before q3's read.
    q3 = openai_server.requests[2]["messages"]
    assert [m["content"] for m in q3[1:]] == ["q1", "a1", "q2", "a2", "q3"]
    assert not journal_of(env).path.exists()


# --------------------------------------------------------------------------- (b) down for 5 s


def test_b_down_for_five_seconds_the_chat_goes_on_and_loses_nothing(env, own, openai_server, chats):
    restarted: list[threading.Thread] = []

    def kill_for_five_seconds() -> None:
        own.kill()
        restarted.append(own.restart_after(5.0))

    openai_server.queue(text("a1"), then(kill_for_five_seconds, "a2"), text("a5"))
    chat = chats(env, "--session", "s1")
    assert chat.ask("q1") == "a1"
    assert chat.ask("q2") == "a2"
    assert chat.err_line() == UNREACHABLE
    # While it is down, each message gets one line (the chat goes on); nothing reaches the model.
    for question in ("q3", "q4"):
        chat.send(question)
        line = chat.err_line()
        assert line is not None
        assert line.startswith(f"error: cannot reach Redis at {own.url}")
        assert line.endswith("; 1 answer kept, saved once it is back")
    restarted[0].join(DEADLOCK_GUARD)
    assert chat.ask("q5") == "a5"  # the next turn works as soon as the server does
    code, out, err = chat.finish()

    assert code == 3  # two messages went unanswered: a script can tell
    assert out == []
    assert err == [
        "error: 2 messages not answered: the store failed (see the lines above; send them again "
        "once it works)"
    ]
    assert shown(env, "s1") == turns(("q1", "a1"), ("q2", "a2"), ("q5", "a5"))
    assert len(openai_server.requests) == 3
    assert not journal_of(env).path.exists()


# --------------------------------------------------------------------------- (c) exits first


def test_c_the_chats_exit_before_the_server_returns_the_journal_replays(
    env, own, openai_server, chats
):
    """Two chats answer at once when the server dies; both exit (3) before it returns, with
    their turns in the journal; the next command replays them, each once, in order."""
    killed = threading.Event()

    def kill() -> None:
        own.kill()
        killed.set()

    openai_server.queue(text("a1"), text("b1"))
    first = chats(env, "--session", "s1")
    second = chats(env, "--session", "s2")
    assert first.ask("q1") == "a1"
    assert second.ask("r1") == "b1"

    openai_server.queue(then(lambda: killed.wait(DEADLOCK_GUARD), "b2"), then(kill, "a2"))
    second.send("r2")  # mid-answer until the server is gone
    deadline = time.monotonic() + DEADLOCK_GUARD
    while len(openai_server.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.ask("q2") == "a2"
    assert second.out_line() == "b2"
    first.send("q3")  # down: one line, not answered
    results = [first.finish(), second.finish()]

    for code, out, err in results:
        assert code == 3
        assert out == []
        assert err[0] == UNREACHABLE
        assert err[-1] == (
            f"error: 1 answered turn not saved to Redis (Redis unreachable): kept in the journal "
            f"{journal_of(env).path} (the next stock-agent command that reaches Redis saves them)"
        )
    assert results[0][2][1].startswith("error: cannot reach Redis at")  # q3
    entries = journal_of(env).pending()
    assert sorted((e.session_id, e.messages[0]["data"]["content"]) for e in entries) == [
        ("s1", "q2"),
        ("s2", "r2"),
    ]
    status = cli(env, "store", "status")  # the server is down: it says so, and never hangs
    assert status.returncode == 3

    own.start()
    status = cli(env, "store", "status")
    assert status.returncode == 0
    [row] = [r for r in status.stdout.splitlines() if r.startswith("journal ")]
    assert row.split(None, 1)[1].startswith("2 answered turns waiting")
    listed = cli(env, "sessions", "list")  # any command that touches memory replays
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == "journal: saved 2 answered turns from the journal\n"
    assert shown(env, "s1") == turns(("q1", "a1"), ("q2", "a2"))
    assert shown(env, "s2") == turns(("r1", "b1"), ("r2", "b2"))
    assert not journal_of(env).path.exists()
    again = cli(env, "sessions", "list")
    assert again.stderr == ""
    assert shown(env, "s1") == turns(("q1", "a1"), ("q2", "a2"))  # nothing twice


# --------------------------------------------------------------------------- (d) memory full


def test_d_noeviction_with_memory_full(env, own, openai_server, chats):
    openai_server.queue(text("a0"), text("a1"), text("a2"), text("a3"))
    chat = chats(env, "--session", "s1")
    assert chat.ask("q0") == "a0"
    memory = fill_under_noeviction(own)
    for n in (1, 2, 3):
        assert chat.ask(f"q{n}") == f"a{n}"
        line = chat.err_line()
        assert line is not None
        assert line.startswith("answer not saved yet: Redis is out of memory")
        assert f"maxmemory {memory['maxmemory_human']}" in line and "noeviction" in line
        assert "raise maxmemory" in line and "volatile-lru" in line
        assert line.endswith(f"; kept{f' ({n} answers waiting)' if n > 1 else ''}, will retry")
    code, out, err = chat.finish()
    assert code == 3
    assert len(err) == 1 and err[0].startswith(
        "error: 3 answered turns not saved to Redis (Redis is out of memory"
    )
    # Reading history still worked (the TTL refresh was refused, the read was not) and the
    # model saw the kept turns in their place.
    assert [m["content"] for m in openai_server.requests[-1]["messages"][1:]] == [
        "q0",
        "a0",
        "q1",
        "a1",
        "q2",
        "a2",
        "q3",
    ]
    assert shown(env, "s1") == turns(("q0", "a0"))  # reading still works
    assert len(journal_of(env).pending()) == 3

    with contextlib.closing(own.admin()) as client:
        client.config_set("maxmemory", 0)
    listed = cli(env, "sessions", "list")
    assert listed.stderr == "journal: saved 3 answered turns from the journal\n"
    assert shown(env, "s1") == turns(("q0", "a0"), ("q1", "a1"), ("q2", "a2"), ("q3", "a3"))


# --------------------------------------------------------------------------- (e) wrong type


def test_e_a_wrong_type_messages_key(env, own, openai_server, chats):
    with contextlib.closing(own.admin()) as client:
        client.set(MESSAGES.format("s1"), "not a list")
    chat = chats(env, "--session", "s1")
    chat.send("q1")
    line = chat.err_line()
    assert line is not None and line.startswith(
        f"error: {MESSAGES.format('s1')} holds a string, not a list ("
    )
    assert "doctor --repair" in line

    openai_server.queue(text("a2"))
    chat.send("/new")
    new = chat.out_line()
    assert new is not None and new.startswith("new session ")
    session = new.removeprefix("new session ")
    assert chat.ask("q2") == "a2"  # the chat went on

    def damage() -> None:
        with contextlib.closing(own.admin()) as client:
            client.delete(MESSAGES.format(session))
            client.set(MESSAGES.format(session), "damaged mid-answer")

    openai_server.queue(then(damage, "a3"))
    assert chat.ask("q3") == "a3"
    line = chat.err_line()
    assert line is not None
    assert line.startswith(
        f"answer not saved yet: {MESSAGES.format(session)} holds a string, not a list ("
    )
    assert "doctor --repair" in line and line.endswith("; kept, will retry")
    code, _, err = chat.finish()
    assert code == 3
    assert err[-1].startswith("error: 1 answered turn not saved to Redis (")
    assert MESSAGES.format(session) in err[-1]
    [entry] = journal_of(env).pending()
    assert entry.session_id == session and entry.messages[-1]["data"]["content"] == "a3"
    assert openai_server.requests[-1]["messages"][-1]["content"] == "q3"


# --------------------------------------------------------------------------- embedded store


@pytest.fixture
def embedded_env(model_env: dict[str, str], short_tmp: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in model_env.items() if k != "REDIS_URL"}
    env["STOCK_AGENT_HOME"] = str(short_tmp / "embedded-home")
    yield env
    with contextlib.suppress(Exception):
        embedded.stop(Path(env["STOCK_AGENT_HOME"]), timeout=5)


def test_the_embedded_store_stopped_mid_answer_is_started_again(embedded_env, openai_server, chats):
    home = Path(embedded_env["STOCK_AGENT_HOME"])

    def stop_server() -> None:
        pid = embedded.read_pid(home)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # it saves and exits, like `store stop` from elsewhere
        deadline = time.monotonic() + DEADLOCK_GUARD
        while embedded.is_running(home) and time.monotonic() < deadline:
            time.sleep(0.02)

    openai_server.queue(text("a1"), then(stop_server, "a2"), text("a3"))
    chat = chats(embedded_env, "--session", "s1")
    assert chat.ask("q1") == "a1"
    assert chat.ask("q2") == "a2"
    assert chat.err_line() == UNREACHABLE
    assert chat.ask("q3") == "a3"  # the chat started its server again, wrote q2, then q3
    code, out, err = chat.finish()
    assert (code, out, err) == (0, [], [])
    assert shown(embedded_env, "s1") == turns(("q1", "a1"), ("q2", "a2"), ("q3", "a3"))


# --------------------------------------------------------------------------- in a terminal


@pytest.fixture
def pty_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1", "LINES": "40"}


def test_the_interactive_chat_keeps_its_prompt_while_the_server_is_down(
    pty_env, own, openai_server
):
    openai_server.queue(text("First answer."), text("Back again."), then(own.kill, "Last one."))
    chat = Chat(pty_env, "--session", "s1")
    try:
        chat.prompt()
        chat.say("one")
        chat.expect_exact("First answer.")
        chat.prompt()

        own.kill()
        chat.say("two")
        chat.expect_exact("error: cannot reach Redis at")
        chat.prompt()  # the chat is still there

        own.start()
        chat.say("three")
        chat.expect_exact("Back again.")
        chat.prompt()

        chat.say("four")  # the server dies while this answer is written
        chat.expect_exact("Last one.")
        chat.expect_exact(UNREACHABLE)
        chat.prompt()
        chat.child.sendcontrol("d")
        chat.expect_exact("1 unsaved answer kept in the journal")
        chat.expect_exact("bye")
        assert chat.wait() == 0
    finally:
        chat.kill()
    [entry] = journal_of(pty_env).pending()
    assert [m["data"]["content"] for m in entry.messages] == ["four", "Last one."]
    own.start()
    assert shown(pty_env, "s1") == turns(  # `sessions show` replays the journal first
        ("one", "First answer."), ("three", "Back again."), ("four", "Last one.")
    )
