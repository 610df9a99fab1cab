"""The unsaved-turn journal: durable appends, tolerant reads, ordered replay without duplicates,
and no lost entries when processes append and replay at the same time."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stock_agent.store.journal import (
    JOURNAL_DIR,
    JOURNAL_FILE,
    EntryRejected,
    JournalEntry,
    JournalEntryError,
    JournalWriteError,
    ReplayResult,
    TurnJournal,
)

PROPERTY = settings(max_examples=60, deadline=None)  # each example writes and fsyncs files
DEADLOCK_GUARD = 120  # seconds; a guard against a hang, never a timing assertion
SPAWN = multiprocessing.get_context("spawn")


def turn(question: str, answer: str, answer_id: str | None = None) -> list[dict[str, Any]]:
    """The messages of one turn as `message_to_dict` makes them."""
    ai_data: dict[str, Any] = {"content": answer, "type": "ai", "tool_calls": []}
    ai_data["id"] = answer_id or f"answer-{uuid.uuid4().hex}"
    return [
        {"type": "human", "data": {"content": question, "type": "human", "id": None}},
        {"type": "ai", "data": ai_data},
    ]


def entry(n: int = 0, session: str = "s1", user: str = "alice", tag: str = "") -> JournalEntry:
    return JournalEntry(
        agent_id="stock_analyzer",
        user_id=user,
        session_id=session,
        messages=tuple(turn(f"question {tag}{n}", f"answer {tag}{n}", f"answer-{tag}{n:06d}")),
        saved_at_failure="2025-01-02T03:04:05+00:00",
        error="Redis unreachable",
    )


def answer_ids(entries: list[JournalEntry]) -> list[str | None]:
    return [e.answer_id for e in entries]


@contextlib.contextmanager
def hold_lock(path: Path) -> Iterator[None]:
    """Hold the flock another process would hold (a separate open file: flock conflicts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def journal(tmp_path: Path) -> TurnJournal:
    return TurnJournal.in_home(tmp_path / "home", lock_timeout=2.0)


class Recorder:
    """A `save` that records entries and fails (or rejects) on chosen answer ids."""

    def __init__(self, fail_on: set[str] | None = None, reject: set[str] | None = None) -> None:
        self.saved: list[JournalEntry] = []
        self.fail_on = fail_on or set()
        self.reject = reject or set()

    def __call__(self, item: JournalEntry) -> None:
        if item.answer_id in self.fail_on:
            raise ConnectionError("Redis unreachable")
        if item.answer_id in self.reject:
            raise EntryRejected("WRONGTYPE at the history key")
        self.saved.append(item)


# -- JournalEntry -----------------------------------------------------------------------------


def test_entry_round_trips_through_its_dict() -> None:
    item = entry(1)
    data = item.to_dict()
    assert data["v"] == 1
    assert set(data) == {
        "v",
        "agent_id",
        "user_id",
        "session_id",
        "messages",
        "saved_at_failure",
        "error",
    }
    assert JournalEntry.from_dict(json.loads(json.dumps(data))) == item
    assert item.answer_id == "answer-000001"


def test_entry_is_detached_from_the_callers_messages() -> None:
    messages = turn("q", "a")
    item = JournalEntry("a", "u", "s", tuple(messages))
    messages[1]["data"]["content"] = "changed"
    assert item.messages[1]["data"]["content"] == "a"


def test_entry_defaults_and_long_errors() -> None:
    item = JournalEntry("a", "u", "s", tuple(turn("q", "a")), error="x" * 1000)
    assert len(item.error) == 300 and item.error.endswith("...")
    assert item.saved_at_failure.endswith("+00:00")


def test_answer_id_is_none_without_an_id() -> None:
    messages = turn("q", "a")
    del messages[1]["data"]["id"]
    assert JournalEntry("a", "u", "s", tuple(messages)).answer_id is None


def valid_dict(**changes: Any) -> dict[str, Any]:
    data = entry(1).to_dict()
    data.update(changes)
    return {k: v for k, v in data.items() if v is not _DROP}


_DROP = object()

INVALID = [
    ("not an object", ["v", 1]),
    ("wrong version", valid_dict(v=2)),
    ("no version", valid_dict(v=_DROP)),
    ("empty user", valid_dict(user_id="")),
    ("space in session", valid_dict(session_id="a b")),
    ("colon in agent", valid_dict(agent_id="a:b")),
    ("id too long", valid_dict(user_id="u" * 65)),
    ("id not a string", valid_dict(user_id=7)),
    ("missing session", valid_dict(session_id=_DROP)),
    ("messages not a list", valid_dict(messages={"type": "ai"})),
    ("messages a string", valid_dict(messages="hello")),
    ("no messages", valid_dict(messages=[])),
    ("message not an object", valid_dict(messages=["hi"])),
    ("message without type", valid_dict(messages=[{"data": {"content": "x"}}])),
    ("message data not an object", valid_dict(messages=[{"type": "ai", "data": "x"}])),
    ("content a number", valid_dict(messages=[{"type": "ai", "data": {"content": 3}}])),
    ("time not ISO", valid_dict(saved_at_failure="yesterday")),
    ("time not a string", valid_dict(saved_at_failure=5)),
    ("error not a string", valid_dict(error=["x"])),
]


@pytest.mark.parametrize("data", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_from_dict_refuses_a_wrong_shape(data: object) -> None:
    with pytest.raises(JournalEntryError):
        JournalEntry.from_dict(data)


def test_from_dict_ignores_unknown_keys() -> None:
    assert JournalEntry.from_dict(valid_dict(later_field=1)) == entry(1)


def test_messages_must_be_json_data() -> None:
    with pytest.raises(JournalEntryError):
        JournalEntry("a", "u", "s", ({"type": "ai", "data": {"content": "x", "k": object()}},))


ids_st = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-",
    min_size=1,
    max_size=64,
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)
message_st = st.builds(
    lambda kind, content, extra, mid: {
        "type": kind,
        "data": {**extra, "content": content, "id": mid},
    },
    st.sampled_from(["human", "ai", "tool", "system"]),
    st.text()
    | st.lists(st.dictionaries(st.text(max_size=5), json_scalars, max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    st.none() | st.text(min_size=1, max_size=20),
)
entry_st = st.builds(
    JournalEntry,
    agent_id=ids_st,
    user_id=ids_st,
    session_id=ids_st,
    messages=st.lists(message_st, min_size=1, max_size=4).map(tuple),
    saved_at_failure=st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    error=st.text(max_size=400),
)


@PROPERTY
@given(entry_st)
def test_any_valid_entry_round_trips(item: JournalEntry) -> None:
    assert JournalEntry.from_dict(json.loads(item.to_line())) == item
    assert item.to_line().count(b"\n") == 1 and item.to_line().endswith(b"\n")


@PROPERTY
@given(st.lists(entry_st, min_size=1, max_size=5))
def test_any_valid_entries_survive_the_file(items: list[JournalEntry]) -> None:
    with tempfile.TemporaryDirectory() as home:
        journal = TurnJournal.in_home(home)
        for item in items:
            journal.append(item)
        assert journal.pending() == items


# -- append and files -------------------------------------------------------------------------


def test_append_makes_a_private_folder_and_file(tmp_path: Path) -> None:
    journal = TurnJournal.in_home(tmp_path / "new-home")
    journal.append(entry(1))
    assert journal.path == tmp_path / "new-home" / JOURNAL_DIR / JOURNAL_FILE
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(journal.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new-home").stat().st_mode) == 0o700


def test_append_leaves_an_existing_folders_mode_alone(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    (home / JOURNAL_DIR).mkdir(parents=True)
    os.chmod(home, 0o755)
    os.chmod(home / JOURNAL_DIR, 0o750)
    TurnJournal.in_home(home).append(entry(1))
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    assert stat.S_IMODE((home / JOURNAL_DIR).stat().st_mode) == 0o750


def test_entries_come_back_in_order(journal: TurnJournal) -> None:
    for n in range(5):
        journal.append(entry(n))
    assert answer_ids(journal.pending()) == [f"answer-{n:06d}" for n in range(5)]
    assert journal.count() == 5


def test_append_takes_a_dict_too(journal: TurnJournal) -> None:
    journal.append(entry(3).to_dict())
    assert journal.pending() == [entry(3)]
    with pytest.raises(JournalEntryError):
        journal.append({"v": 1, "user_id": ""})


def test_each_entry_is_one_json_line(journal: TurnJournal) -> None:
    journal.append(entry(1))
    journal.append(entry(2, session="s2"))
    lines = journal.path.read_bytes().splitlines()
    assert [json.loads(line)["session_id"] for line in lines] == ["s1", "s2"]


def test_an_absent_journal_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    journal = TurnJournal.in_home(tmp_path / "home")
    assert journal.pending() == []
    assert journal.count() == 0
    assert journal.corrupt_count() == 0
    assert journal.replay(Recorder()) == ReplayResult()
    assert not (tmp_path / "home").exists()


def test_append_reports_a_disk_that_refuses(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    journal = TurnJournal(blocker / "journal" / JOURNAL_FILE)
    with pytest.raises(JournalWriteError) as info:
        journal.append(entry(1))
    assert str(journal.path) in str(info.value)
    assert info.value.fix


def test_append_does_not_wait_for_a_replay(journal: TurnJournal) -> None:
    journal.append(entry(1))
    with hold_lock(journal.path.with_name(JOURNAL_FILE + ".replay.lock")):
        journal.append(entry(2))
        assert journal.count() == 2


def test_append_still_writes_when_the_file_lock_is_stuck(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = TurnJournal.in_home(tmp_path, lock_timeout=0.1)
    journal.append(entry(1))
    with (
        hold_lock(journal.path.with_name(JOURNAL_FILE + ".lock")),
        caplog.at_level(logging.WARNING),
    ):
        journal.append(entry(2))
    assert "without it" in caplog.text
    assert answer_ids(journal.pending()) == ["answer-000001", "answer-000002"]


# -- torn and corrupt lines -------------------------------------------------------------------


def test_a_torn_last_line_still_yields_the_earlier_entries(
    journal: TurnJournal, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(3):
        journal.append(entry(n))
    # A crash in the middle of a write: half a line, no newline.
    torn = entry(3).to_line()
    with open(journal.path, "ab") as f:
        f.write(torn[: len(torn) // 2])
    with caplog.at_level(logging.WARNING):
        assert answer_ids(journal.pending()) == [f"answer-{n:06d}" for n in range(3)]
    assert "torn last line 4" in caplog.text
    assert journal.count() == 3
    assert journal.corrupt_count() == 1


def test_an_append_after_a_torn_line_starts_a_line_of_its_own(journal: TurnJournal) -> None:
    journal.append(entry(0))
    with open(journal.path, "ab") as f:
        f.write(b'{"v": 1, "agent_id": "sto')
    journal.append(entry(1))
    assert answer_ids(journal.pending()) == ["answer-000000", "answer-000001"]


@pytest.mark.parametrize(
    "bad",
    [
        b"{not json",
        b'"a bare JSON string"',
        b"\xff\xfe binary",
        b'{"v": 1, "agent_id": "a", "user_id": "", "session_id": "s", "messages": []}',
        b"[" * 100_000,  # deep nesting: a RecursionError inside json
    ],
    ids=["not json", "bare string", "not utf-8", "wrong shape", "deep nesting"],
)
def test_a_corrupt_line_is_skipped_and_kept(
    journal: TurnJournal, bad: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    journal.append(entry(0))
    with open(journal.path, "ab") as f:
        f.write(bad + b"\n")
    journal.append(entry(2))
    with caplog.at_level(logging.WARNING):
        assert answer_ids(journal.pending()) == ["answer-000000", "answer-000002"]
    assert "unreadable line 2" in caplog.text
    assert bad not in caplog.text.encode(errors="replace")  # the content is not logged

    save = Recorder()
    result = journal.replay(save)
    assert result.saved == 2 and result.set_aside == 1 and result.ok
    assert answer_ids(save.saved) == ["answer-000000", "answer-000002"]
    assert journal.corrupt_path.read_bytes() == bad + b"\n"  # nothing is thrown away
    assert stat.S_IMODE(journal.corrupt_path.stat().st_mode) == 0o600
    assert journal.count() == 0 and journal.corrupt_count() == 1


def test_blank_lines_are_ignored(journal: TurnJournal, caplog: pytest.LogCaptureFixture) -> None:
    journal.append(entry(0))
    with open(journal.path, "ab") as f:
        f.write(b"\n  \n{bad\n")
    journal.append(entry(1))
    assert journal.count() == 2
    assert journal.corrupt_count() == 1
    with caplog.at_level(logging.WARNING):
        journal.pending()
    assert "unreadable line 4" in caplog.text  # the line number in the file


def test_replay_sets_aside_a_torn_tail(journal: TurnJournal) -> None:
    journal.append(entry(0))
    with open(journal.path, "ab") as f:
        f.write(b'{"v": 1, "ag')
    result = journal.replay(Recorder())
    assert (result.saved, result.set_aside, result.remaining) == (1, 1, 0)
    assert journal.corrupt_path.read_bytes() == b'{"v": 1, "ag\n'
    assert not journal.path.exists()


# -- replay -----------------------------------------------------------------------------------


def test_replay_saves_in_order_and_empties_the_journal(journal: TurnJournal) -> None:
    for n in range(4):
        journal.append(entry(n, session=f"s{n % 2}"))
    save = Recorder()
    result = journal.replay(save)
    assert result == ReplayResult(saved=4, remaining=0)
    assert result.ok
    assert answer_ids(save.saved) == [f"answer-{n:06d}" for n in range(4)]
    assert journal.pending() == []
    assert not journal.path.exists()


@pytest.mark.parametrize("fail_at", [0, 1, 3, 4])
def test_replay_stops_at_the_first_failure_and_keeps_the_rest(
    journal: TurnJournal, fail_at: int
) -> None:
    for n in range(5):
        journal.append(entry(n))
    save = Recorder(fail_on={f"answer-{fail_at:06d}"})
    result = journal.replay(save)
    assert result.saved == fail_at
    assert result.remaining == 5 - fail_at
    assert isinstance(result.error, ConnectionError) and not result.ok
    assert result.failed is not None and result.failed.answer_id == f"answer-{fail_at:06d}"
    assert answer_ids(save.saved) == [f"answer-{n:06d}" for n in range(fail_at)]
    assert answer_ids(journal.pending()) == [f"answer-{n:06d}" for n in range(fail_at, 5)]


def test_replay_twice_saves_nothing_twice(journal: TurnJournal) -> None:
    for n in range(3):
        journal.append(entry(n))
    save = Recorder(fail_on={"answer-000002"})
    journal.replay(save)
    save.fail_on.clear()
    journal.replay(save)
    journal.replay(save)
    assert answer_ids(save.saved) == ["answer-000000", "answer-000001", "answer-000002"]


def test_a_turn_journaled_twice_is_saved_once(journal: TurnJournal) -> None:
    journal.append(entry(0))
    journal.append(entry(1))
    journal.append(entry(0))  # the same answer id again
    save = Recorder()
    result = journal.replay(save)
    assert answer_ids(save.saved) == ["answer-000000", "answer-000001"]
    assert result.duplicates == 1 and result.remaining == 0


def test_a_rejected_entry_is_set_aside_and_replay_goes_on(journal: TurnJournal) -> None:
    for n in range(3):
        journal.append(entry(n))
    save = Recorder(reject={"answer-000001"})
    result = journal.replay(save)
    assert answer_ids(save.saved) == ["answer-000000", "answer-000002"]
    assert result.set_aside == 1 and result.ok
    (kept,) = journal.corrupt_path.read_bytes().splitlines()
    assert JournalEntry.from_dict(json.loads(kept)) == entry(1)


def test_an_interrupt_during_save_keeps_the_entry(journal: TurnJournal) -> None:
    journal.append(entry(0))

    def interrupted(item: JournalEntry) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        journal.replay(interrupted)
    assert journal.count() == 1


def test_replay_skips_when_another_process_replays(journal: TurnJournal) -> None:
    journal.append(entry(0))
    with hold_lock(journal.path.with_name(JOURNAL_FILE + ".replay.lock")):
        save = Recorder()
        result = journal.replay(save, timeout=0.1)
    assert result.skipped and not result.ok
    assert result.remaining == 1 and save.saved == []
    assert journal.replay(save).saved == 1


def test_replay_stops_when_the_file_lock_is_stuck(tmp_path: Path) -> None:
    journal = TurnJournal.in_home(tmp_path, lock_timeout=0.1)
    journal.append(entry(0))
    with hold_lock(journal.path.with_name(JOURNAL_FILE + ".lock")):
        result = journal.replay(Recorder())
    assert result.error is not None and result.saved == 0
    assert journal.count() == 1


def test_entries_appended_during_a_replay_are_kept(journal: TurnJournal) -> None:
    journal.append(entry(0))
    journal.append(entry(1))
    saved: list[str | None] = []

    def save_and_append(item: JournalEntry) -> None:
        saved.append(item.answer_id)
        if item.answer_id == "answer-000000":
            journal.append(entry(9))  # another process journals a turn meanwhile

    result = journal.replay(save_and_append)
    assert saved == ["answer-000000", "answer-000001", "answer-000009"]
    assert result.saved == 3 and journal.count() == 0


@PROPERTY
@given(st.integers(min_value=1, max_value=8), st.data())
def test_replay_with_failures_keeps_order_and_loses_nothing(n: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as home:
        journal = TurnJournal.in_home(home)
        for i in range(n):
            journal.append(entry(i))
        all_ids = [f"answer-{i:06d}" for i in range(n)]
        saved: list[str | None] = []
        for _ in range(n + 1):
            failing = data.draw(st.sets(st.sampled_from(all_ids)))
            before = answer_ids(journal.pending())
            save = Recorder(fail_on=failing)
            result = journal.replay(save)
            saved += answer_ids(save.saved)
            # saved ones are a prefix; the failed and later ones stay, in order
            assert answer_ids(save.saved) + answer_ids(journal.pending()) == before
            assert result.remaining == len(before) - result.saved
        last = Recorder()  # the server is back for good
        journal.replay(last)
        saved += answer_ids(last.saved)
        assert saved == all_ids  # each saved once, in the order they were journaled
        assert journal.count() == 0


# -- several processes ------------------------------------------------------------------------


def _append_many(home: str, tag: str, count: int, start: Any) -> None:
    start.wait(DEADLOCK_GUARD)
    journal = TurnJournal.in_home(home, lock_timeout=30.0)
    for n in range(count):
        journal.append(entry(n, session=f"s-{tag}", tag=tag))


def _record_line(record: str, text: str) -> None:
    fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)


def _replay_until(home: str, record: str, start: Any, stop: Any) -> None:
    """Replay again and again, recording each saved answer id, until `stop` and no entries."""
    start.wait(DEADLOCK_GUARD)
    journal = TurnJournal.in_home(home, lock_timeout=30.0)

    def save(item: JournalEntry) -> None:
        _record_line(record, f"{os.getpid()} {item.answer_id}")

    while True:
        done = stop.is_set()
        result = journal.replay(save, timeout=30.0)
        assert result.error is None, result.error
        if done and journal.count() == 0:
            return


def _run(processes: list[Any]) -> None:
    for p in processes:
        p.start()
    for p in processes:
        p.join(DEADLOCK_GUARD)
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join()
            pytest.fail("a journal process hung (deadlock guard)")
    assert [p.exitcode for p in processes] == [0] * len(processes)


def test_two_processes_appending_lose_nothing(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    start = SPAWN.Event()
    writers = [SPAWN.Process(target=_append_many, args=(home, t, 200, start)) for t in "ab"]
    for p in writers:
        p.start()
    start.set()
    for p in writers:
        p.join(DEADLOCK_GUARD)
    assert [p.exitcode for p in writers] == [0, 0]

    pending = TurnJournal.in_home(home).pending()
    assert len(pending) == 400
    for tag in "ab":
        mine = [e.answer_id for e in pending if e.session_id == f"s-{tag}"]
        assert mine == [f"answer-{tag}{n:06d}" for n in range(200)]  # each writer's order kept
    assert TurnJournal.in_home(home).corrupt_count() == 0


def test_appends_during_replays_in_other_processes_are_all_saved_once(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    record = str(tmp_path / "saved.txt")
    start, stop = SPAWN.Event(), SPAWN.Event()
    writers = [SPAWN.Process(target=_append_many, args=(home, t, 200, start)) for t in "ab"]
    replayers = [
        SPAWN.Process(target=_replay_until, args=(home, record, start, stop)) for _ in range(2)
    ]
    for p in writers + replayers:
        p.start()
    start.set()
    for p in writers:
        p.join(DEADLOCK_GUARD)
    stop.set()
    for p in replayers:
        p.join(DEADLOCK_GUARD)
    for p in writers + replayers:
        if p.is_alive():
            p.kill()
            pytest.fail("a journal process hung (deadlock guard)")
    assert [p.exitcode for p in writers + replayers] == [0] * 4

    saved = [line.split()[1] for line in Path(record).read_text().splitlines()]
    expected = {f"answer-{t}{n:06d}" for t in "ab" for n in range(200)}
    assert len(saved) == len(set(saved)) == 400  # none lost, none saved twice
    assert set(saved) == expected
    for tag in "ab":  # each session's turns reach the server in the order they were answered
        mine = [s for s in saved if s.startswith(f"answer-{tag}")]
        assert mine == sorted(mine)
    assert TurnJournal.in_home(home).count() == 0


def _replay_and_crash(home: str, record: str, crash_after: int) -> None:
    """Save entries, then die (no cleanup, no finally) right after save number `crash_after`:
    the journal has not yet removed that entry."""
    journal = TurnJournal.in_home(home)
    count = 0

    def save(item: JournalEntry) -> None:
        nonlocal count
        _record_line(record, str(item.answer_id))
        count += 1
        if count == crash_after:
            os._exit(17)

    journal.replay(save)


def test_a_crash_mid_replay_resaves_at_most_the_last_entry(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    record = str(tmp_path / "saved.txt")
    journal = TurnJournal.in_home(home)
    for n in range(5):
        journal.append(entry(n))
    crasher = SPAWN.Process(target=_replay_and_crash, args=(home, record, 3))
    crasher.start()
    crasher.join(DEADLOCK_GUARD)
    assert crasher.exitcode == 17

    # The crashed process's locks went with it: the next replay runs at once.
    result = journal.replay(lambda item: _record_line(record, str(item.answer_id)))
    assert result.ok
    saved = Path(record).read_text().split()
    # the third entry is saved again (the history save is idempotent for it), nothing else
    assert saved == [f"answer-{n:06d}" for n in (0, 1, 2, 2, 3, 4)]


def _append_then_crash(home: str) -> None:
    journal = TurnJournal.in_home(home)
    journal.append(entry(0))
    line = entry(1).to_line()
    fd = os.open(journal.path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, line[:40])  # the process dies in the middle of writing its line
    os._exit(9)


def test_a_crash_while_appending_is_tolerated(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    crasher = SPAWN.Process(target=_append_then_crash, args=(home,))
    crasher.start()
    crasher.join(DEADLOCK_GUARD)
    assert crasher.exitcode == 9

    journal = TurnJournal.in_home(home)
    journal.append(entry(2))
    assert answer_ids(journal.pending()) == ["answer-000000", "answer-000002"]
    save = Recorder()
    result = journal.replay(save)
    assert answer_ids(save.saved) == ["answer-000000", "answer-000002"]
    assert result.set_aside == 1 and journal.count() == 0
