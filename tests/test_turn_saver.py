"""`TurnSaver`: an answered turn whose save fails is reported, kept in order, written first by the
next write, journaled when the process ends, and replayed once, in order, by the next App.

Real parts only: a Valkey server of each test's own (killed and started again on the same port
and data folder), the real agent against the scripted OpenAI-compatible server, the real
journal on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stock_agent.app import App
from stock_agent.config import Settings
from stock_agent.store.connection import unreachable
from stock_agent.store.embedded import socket_url
from stock_agent.store.journal import JournalEntry
from stock_agent.store.turns import TurnNotSaved
from stock_agent.ui.text import format_store_status
from tests.conftest import MARKET_DATA, ValkeyProcess, free_port
from tests.openai_server import Reply, ScriptedOpenAI, text

AGENT = "test_agent"
DEADLOCK_GUARD = 60  # seconds: a guard against a hang, never a timing assertion


class OwnValkey:
    """A Valkey server of this test's own (`ValkeyProcess`, the real binary) on a fixed port
    and data folder, so a test can kill it and start it again. Each kill is preceded by SAVE:
    the server runs without persistence (as in conftest), and what it held must survive the
    restart for the counts to mean anything. The kill itself is SIGKILL."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: ValkeyProcess | None = None
        self.start()

    def start(self) -> None:
        self.server = ValkeyProcess(self.directory, self.port)

    def admin(self) -> redis.Redis:
        """A plain client for the test's own checks (no retries: it must not mask a fault)."""
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=10)

    @property
    def alive(self) -> bool:
        return self.server is not None and self.server.proc.poll() is None

    def kill(self) -> None:
        if not self.alive:
            return
        assert self.server is not None
        with contextlib.closing(self.admin()) as client:
            client.save()
        self.server.proc.kill()
        self.server.proc.wait(DEADLOCK_GUARD)

    def restart_after(self, delay: float) -> threading.Thread:
        def later() -> None:
            time.sleep(delay)
            self.start()

        thread = threading.Thread(target=later, name="restart-valkey", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        if self.alive:
            assert self.server is not None
            self.server.stop()


@pytest.fixture
def own(tmp_path: Path) -> Iterator[OwnValkey]:
    server = OwnValkey(tmp_path / "valkey")
    yield server
    server.stop()


@pytest.fixture
def model() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


def make_settings(own: OwnValkey, model: ScriptedOpenAI, home: Path) -> Settings:
    return Settings(
        redis_url=own.url,
        user_id="alice",
        agent_id=AGENT,
        home=home,
        data_dir=MARKET_DATA,
        openai_api_key="test-key",
        openai_base_url=model.base_url,
        model="test-model",
    )


class Notices(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


@pytest.fixture
def home(short_tmp: Path) -> Path:
    return short_tmp / "home"


def stored(own: OwnValkey, session: str, user: str = "alice") -> list[tuple[str, str]]:
    """(type, content) of a session's stored messages, oldest first."""
    with contextlib.closing(own.admin()) as client:
        raw = client.lrange(f"agent:memory:{AGENT}:{user}:{session}:messages", 0, -1)
    return [(m["type"], m["data"]["content"]) for m in map(json.loads, reversed(raw))]


def turns(*pairs: tuple[str, str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for question, answer in pairs:
        out += [("human", question), ("ai", answer)]
    return out


def then(action: Callable[[], object], answer: str) -> Callable[[dict[str, Any]], Reply]:
    """A scripted reply that does `action` mid-answer (after the turn's read, before its save)."""

    def reply(body: dict[str, Any]) -> Reply:
        action()
        return text(answer)

    return reply


def conversation(request: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request["messages"][1:]]


# --------------------------------------------------------------------------- keep and retry


def test_a_failed_save_is_reported_kept_and_written_before_the_next_turn(own, model, home):
    app = App(make_settings(own, model, home))
    agent = app.agent()
    model.queue(text("a1"), then(own.kill, "a2"), text("a3"))
    assert agent.ask("q1", user_id="alice", session_id="s1") == "a1"

    with pytest.raises(TurnNotSaved) as info:
        agent.ask("q2", user_id="alice", session_id="s1")
    assert info.value.one_line() == "answer not saved yet: Redis unreachable; kept, will retry"
    assert info.value.answer == "a2"  # the answer is not lost to the caller either
    assert info.value.exit_code == 3
    assert app.turns.kept == 1

    own.start()
    assert agent.ask("q3", user_id="alice", session_id="s1") == "a3"
    # The kept turn was written before this turn's read: the model saw it, in its place.
    assert conversation(model.requests[-1]) == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2"),
        ("user", "q3"),
    ]
    assert stored(own, "s1") == turns(("q1", "a1"), ("q2", "a2"), ("q3", "a3"))
    assert app.turns.kept == 0
    app.close()
    assert not app.journal.path.exists()  # nothing was left to journal


def test_a_healthy_turn_touches_no_journal(own, model, home):
    app = App(make_settings(own, model, home))
    model.queue(text("fine"))
    app.agent().ask("hello", user_id="alice", session_id="s1")
    app.close()
    assert not (home / "journal").exists()
    assert stored(own, "s1") == turns(("hello", "fine"))


def test_a_turn_that_reached_the_server_is_not_written_twice(own, model, home):
    """The reply of a save can be lost after the server ran it (a retry, a journal entry
    written by a process that saw the error): writing it again appends nothing, because the
    journal's copy encodes to the same bytes and its answer id is on top."""
    from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

    app = App(make_settings(own, model, home))
    turn = [HumanMessage("q1 ünïcode ✓"), AIMessage(content="a1 €", id="answer-0001")]
    app.sessions.save_turn("alice", "s1", turn)
    app.journal.append(
        JournalEntry(AGENT, "alice", "s1", tuple(message_to_dict(m) for m in turn), error="x")
    )
    result = app.turns.replay()
    assert result.ok and result.saved == 1
    assert stored(own, "s1") == turns(("q1 ünïcode ✓", "a1 €"))
    assert not app.journal.path.exists()


def test_a_damaged_session_holds_up_only_itself(own, model, home):
    app = App(make_settings(own, model, home))
    agent = app.agent()
    key = f"agent:memory:{AGENT}:alice:s1:messages"

    def damage() -> None:
        with contextlib.closing(own.admin()) as client:
            client.delete(key)
            client.set(key, "not a list")

    model.queue(text("a1"), then(damage, "a2"), text("b1"), text("a3"))
    agent.ask("q1", user_id="alice", session_id="s1")
    with pytest.raises(TurnNotSaved) as info:
        agent.ask("q2", user_id="alice", session_id="s1")
    line = info.value.one_line()
    assert line.startswith(f"answer not saved yet: {key} holds a string, not a list (")
    assert "doctor --repair" in line and line.endswith("; kept, will retry")

    # Another session is saved at once, though the damaged one's turn still waits.
    assert agent.ask("b", user_id="alice", session_id="s2") == "b1"
    assert stored(own, "s2") == turns(("b", "b1"))
    assert app.turns.kept == 1

    # Once repaired (`doctor --repair` sets the key aside), the kept turn goes in first.
    with contextlib.closing(own.admin()) as client:
        client.delete(key)
    agent.ask("q3", user_id="alice", session_id="s1")
    assert stored(own, "s1") == turns(("q2", "a2"), ("q3", "a3"))
    assert app.turns.kept == 0


# --------------------------------------------------------------------------- journal and replay


def fill_under_noeviction(own: OwnValkey) -> dict[str, Any]:
    """`noeviction` with a small maxmemory, filled past it: the server refuses every write
    that may grow memory (`OOM command not allowed`)."""
    with contextlib.closing(own.admin()) as client:
        client.config_set("maxmemory-policy", "noeviction")
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 512 * 1024)
        for i in range(10_000):
            try:
                client.set(f"ballast:{i}", "x" * 4096)
            except redis.OutOfMemoryError:
                break
        else:
            raise AssertionError("the server never reported OOM")
        # Past the limit, not at it: a freed query buffer must not let a write slip in.
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 64 * 1024)
        return client.info("memory")


def test_unsaved_turns_are_journaled_at_close_and_replayed_in_order_by_the_next_app(
    own, model, home
):
    notices = Notices()
    app = App(make_settings(own, model, home), notify=notices)
    agent = app.agent()
    model.queue(text("a0"), text("a1"), text("b1"), text("a2"))
    agent.ask("q0", user_id="alice", session_id="s1")  # saved: the journaled ones go after it
    memory = fill_under_noeviction(own)
    for question, session in (("q1", "s1"), ("b", "s2"), ("q2", "s1")):
        with pytest.raises(TurnNotSaved) as info:
            agent.ask(question, user_id="alice", session_id=session)
        line = info.value.one_line()
        assert f"maxmemory {memory['maxmemory_human']}" in line and "noeviction" in line
        assert "raise maxmemory" in line and "volatile-lru" in line
    # The history still reads, and the model sees the kept turn of its session in place.
    assert conversation(model.requests[-1]) == [
        ("user", "q0"),
        ("assistant", "a0"),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
    ]
    app.close()

    entries = app.journal.pending()
    assert [(e.session_id, e.messages[0]["data"]["content"]) for e in entries] == [
        ("s1", "q1"),
        ("s2", "b"),
        ("s1", "q2"),
    ]
    [line] = notices
    assert line.startswith("3 answered turns not saved to Redis (Redis is out of memory")
    assert str(app.journal.path) in line

    with contextlib.closing(own.admin()) as client:
        client.config_set("maxmemory", 0)  # the fix the message named
    later = Notices()
    again = App(make_settings(own, model, home), notify=later)
    again.sessions  # noqa: B018 - the first use of memory replays the journal
    assert later == ["journal: saved 3 answered turns from the journal"]
    assert stored(own, "s1") == turns(("q0", "a0"), ("q1", "a1"), ("q2", "a2"))
    assert stored(own, "s2") == turns(("b", "b1"))
    assert not again.journal.path.exists()
    # A second replay (another command) finds nothing and changes nothing.
    assert App(make_settings(own, model, home)).replay_journal() is None
    assert stored(own, "s1") == turns(("q0", "a0"), ("q1", "a1"), ("q2", "a2"))


def test_reading_history_works_under_noeviction_with_memory_full(own, model, home):
    app = App(make_settings(own, model, home))
    model.queue(text("a1"), text("a2"))
    app.agent().ask("q1", user_id="alice", session_id="s1")
    fill_under_noeviction(own)
    with contextlib.closing(own.admin()) as client, pytest.raises(redis.OutOfMemoryError):
        client.zadd(f"agent:memory:{AGENT}:alice:sessions", {"s1": 1.0})  # TTL slide refused
    memory = app.sessions.read_turn("alice", "s1")  # ...and the read stands
    assert [m.content for m in memory.messages] == ["q1", "a1"]
    with pytest.raises(TurnNotSaved):  # a whole turn: answered from the history it read
        app.agent().ask("q2", user_id="alice", session_id="s1")
    assert conversation(model.requests[-1]) == [("user", "q1"), ("assistant", "a1"), ("user", "q2")]
    app.close()  # journaled, not lost
    assert len(app.journal.pending()) == 1


@contextlib.contextmanager
def replay_lock_held(app: App) -> Iterator[None]:
    """What another process replaying the journal holds (a flock on the replay lock file)."""
    lock = app.journal.path.with_name(app.journal.path.name + ".replay.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def journal_turn(app: App, session: str, question: str, answer: str) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

    messages = [HumanMessage(question), AIMessage(content=answer, id=f"answer-{question}")]
    app.journal.append(
        JournalEntry(AGENT, "alice", session, tuple(message_to_dict(m) for m in messages))
    )


def test_journaled_turns_keep_their_place_while_another_process_replays(own, model, home):
    notices = Notices()
    app = App(make_settings(own, model, home), notify=notices)
    journal_turn(app, "s1", "old", "old answer")
    model.queue(text("new answer"), text("b1"), text("b2"))
    with replay_lock_held(app):
        app.sessions  # noqa: B018 - the replay at first use finds the lock held: it steps aside
        assert notices == [
            "journal: 1 answered turn waits (another stock-agent process is saving it)"
        ]
        # s1's older turn is in the journal: its new turn waits behind it, in order.
        with pytest.raises(TurnNotSaved) as info:
            app.agent().ask("new", user_id="alice", session_id="s1")
        assert "an older turn of this session is still in the journal" in str(info.value)
        # Another session is not held up.
        app.agent().ask("b", user_id="alice", session_id="s2")
        assert stored(own, "s2") == turns(("b", "b1"))
    app.agent().ask("b again", user_id="alice", session_id="s2")  # the next write drains it all
    assert stored(own, "s1") == turns(("old", "old answer"), ("new", "new answer"))
    assert not app.journal.path.exists()


def test_store_status_shows_the_journal_and_never_waits_for_a_replay(own, model, home):
    from stock_agent.cli import main

    app = App(make_settings(own, model, home))
    journal_turn(app, "s1", "q1", "a1")
    journal_turn(app, "s2", "q2", "a2")
    assert app.status().journal_pending == 2
    assert app.status().to_dict()["journal_pending"] == 2
    row = next(r for r in format_store_status(app.status()).splitlines() if r.startswith("journal"))
    assert row.split(None, 1)[1].startswith("2 answered turns waiting")

    env = {
        "REDIS_URL": own.url,
        "STOCK_AGENT_HOME": str(home),
        "STOCK_AGENT_USER": "alice",
        "STOCK_AGENT_AGENT_ID": AGENT,
    }
    with replay_lock_held(app):  # another process is stuck mid-replay
        assert main(["store", "status", "--json"], env=env) == 0
        assert main(["sessions", "list"], env=env) == 0  # steps aside after a short wait
    assert stored(own, "s1") == []  # nothing replayed while the lock was held
    assert main(["sessions", "list"], env=env) == 0
    assert stored(own, "s1") == turns(("q1", "a1")) and stored(own, "s2") == turns(("q2", "a2"))


def test_a_write_the_acl_denies_is_kept_and_names_the_permission(own, model, home):
    with contextlib.closing(own.admin()) as client:
        client.acl_setuser(
            "reader",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            commands=["+@read", "+@connection", "+eval", "+evalsha", "+script"],
        )
    settings = make_settings(own, model, home)
    settings = settings.with_overrides(redis_url=own.url.replace("redis://", "redis://reader:pw@"))
    app = App(settings)
    model.queue(text("a1"))
    with pytest.raises(TurnNotSaved) as info:
        app.agent().ask("q1", user_id="alice", session_id="s1")
    line = info.value.one_line()
    assert line.startswith("answer not saved yet: Redis user 'reader' may not run LPUSH (ACL)")
    assert "ACL SETUSER reader +lpush" in line and "reader:pw" not in line
    app.close()
    assert [e.session_id for e in app.journal.pending()] == ["s1"]


def test_the_embedded_store_fix_never_says_unset_redis_url(short_tmp):
    url = socket_url(short_tmp / "home")
    error = unreachable(url, ConnectionError("No such file or directory"))
    assert "REDIS_URL" not in error.one_line()
    assert "embedded store" in error.message and "store status" in str(error.fix)
    assert "valkey.log" in str(error.fix)
    # A server of the user's own on a unix socket still gets the REDIS_URL advice.
    other = unreachable(f"unix://{short_tmp}/redis.sock")
    assert "unset REDIS_URL" in str(other.fix)


def test_a_replay_against_a_store_that_is_down_keeps_everything(own, model, home):
    app = App(make_settings(own, model, home))
    app.sessions  # noqa: B018 - connected while the server runs (nothing to replay yet)
    journal_turn(app, "s1", "q1", "a1")
    own.kill()
    result = app.turns.replay()
    assert not result.ok and result.remaining == 1
    assert app.turns.describe_replay(result) == (
        "journal: 1 answered turn still in the journal (Redis unreachable); the next command "
        "retries"
    )
    own.start()
    assert app.turns.replay().saved == 1
    assert stored(own, "s1") == turns(("q1", "a1"))


def test_concurrent_turns_kept_during_an_outage_are_written_once_in_order(own, model, home):
    """Three sessions answer at once while the server dies; all three are kept, and the next
    write after it returns saves them in the order they failed, then its own turn."""
    app = App(make_settings(own, model, home))
    agent = app.agent()
    arrived = threading.Barrier(3, timeout=DEADLOCK_GUARD)
    killed = threading.Event()

    def mid_answer(n: int) -> Callable[[dict[str, Any]], Reply]:
        def reply(body: dict[str, Any]) -> Reply:
            if arrived.wait() == 0:
                own.kill()
                killed.set()
            killed.wait(DEADLOCK_GUARD)
            return text(f"answer {n}")

        return reply

    model.queue(mid_answer(0), mid_answer(1), mid_answer(2))
    errors: dict[int, BaseException] = {}

    def turn(n: int) -> None:
        try:
            agent.ask(f"question {n}", user_id="alice", session_id=f"s{n}")
        except BaseException as exc:
            errors[n] = exc

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLOCK_GUARD)
    assert sorted(errors) == [0, 1, 2] and all(isinstance(e, TurnNotSaved) for e in errors.values())
    assert app.turns.kept == 3
    kept_order = [session for _, session in app.turns.kept_sessions]
    assert sorted(kept_order) == ["s0", "s1", "s2"]
    assert {e.answer for e in errors.values()} == {"answer 0", "answer 1", "answer 2"}  # type: ignore[attr-defined]

    own.start()
    model.queue(text("after"))
    agent.ask("next", user_id="alice", session_id="s9")
    with contextlib.closing(own.admin()) as client:
        scores = client.zrange(f"agent:memory:{AGENT}:alice:sessions", 0, -1, withscores=True)
    written = [session for session, _ in sorted(scores, key=lambda item: item[1])]
    assert written == [*kept_order, "s9"]  # the kept turns first, as they were kept
    for n in range(3):
        [(_, question), (_, answer)] = stored(own, f"s{n}")
        assert question == f"question {n}" and answer.startswith("answer ")
    assert app.turns.kept == 0
