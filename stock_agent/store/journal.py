"""The unsaved-turn journal: answered turns that Redis refused, kept on local disk until replayed.

- One JSON line per turn, appended with O_APPEND and fsync-ed, in a 0600 file under a 0700
  folder that is created only when missing: a turn reported as journaled survives a crash.
- Never fatal to read: a torn last line (a crash mid-write) or a corrupt line is skipped with a
  warning; replay moves such lines to a `.corrupt` sidecar, so nothing is ever thrown away.
- Replayed in file order, one entry at a time; each saved entry is removed at once (rewrite to a
  temp file, fsync, os.replace). A crash mid-replay can re-save at most the one entry whose
  removal it missed, and the history save is idempotent for that turn (its answer id is on top).
- Two locks, both `flock` on files beside the journal, both waited for a bounded time:
  the *replay* lock is held for a whole replay, so two replays never interleave their saves (that
  would duplicate turns); the *file* lock is held only for milliseconds, by an append (one write)
  and by each rewrite, so an append never waits for a slow replay and a rewrite never drops a
  line appended meanwhile. The O_APPEND/PIPE_BUF argument does not cover this: PIPE_BUF atomicity
  is a pipe guarantee, turn lines are often longer than 4 KiB, and an append racing a rewrite's
  os.replace would land in the replaced file. If the file lock cannot be had in time (a holder
  frozen mid-rewrite), append writes anyway, with a warning: keeping the turn comes first.

No Redis and no LangChain here: the caller's `save` does the Redis work.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stock_agent.errors import InvalidId, StockAgentError
from stock_agent.store.keys import validate_id

log = logging.getLogger(__name__)

VERSION = 1
JOURNAL_DIR = "journal"
JOURNAL_FILE = "unsaved-turns.jsonl"
DEFAULT_LOCK_TIMEOUT = 5.0
MAX_ERROR_CHARS = 300
_POLL_SECONDS = 0.02


class JournalEntryError(ValueError):
    """A journal entry (or a line read back) does not have the expected shape."""


class JournalWriteError(StockAgentError):
    """The journal could not be written: the turn is not kept on disk either."""


class EntryRejected(Exception):  # noqa: N818 - raised by the caller's `save` to say "never"
    """Raise from a replay `save` for an entry that can never be saved (e.g. the server refuses
    its data for good): the entry is set aside in the `.corrupt` sidecar and replay goes on.
    Any other exception stops the replay and keeps that entry and the later ones."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_id(value: object, kind: str) -> str:
    if not isinstance(value, str):
        raise JournalEntryError(f"{kind} must be a string, not {type(value).__name__}")
    try:
        return validate_id(value, kind)
    except InvalidId as exc:
        raise JournalEntryError(str(exc)) from None


def _check_message(message: object, index: int) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        raise JournalEntryError(f"message {index} is not an object")
    kind = message.get("type")
    data = message.get("data")
    if not isinstance(kind, str) or not kind:
        raise JournalEntryError(f"message {index} has no type")
    if not isinstance(data, Mapping):
        raise JournalEntryError(f"message {index} has no data object")
    if not isinstance(data.get("content"), str | list):
        raise JournalEntryError(f"message {index} has no text or list content")
    return dict(message)


@dataclass(frozen=True)
class JournalEntry:
    """One answered turn that could not be saved: the messages as `message_to_dict` makes them,
    oldest first, normally ending with the AI answer whose unique id makes a re-save harmless."""

    agent_id: str
    user_id: str
    session_id: str
    messages: tuple[dict[str, Any], ...]
    saved_at_failure: str = field(default_factory=_now_iso)
    error: str = ""

    def __post_init__(self) -> None:
        _check_id(self.agent_id, "agent id")
        _check_id(self.user_id, "user id")
        _check_id(self.session_id, "session id")
        if isinstance(self.messages, str | bytes | Mapping) or not isinstance(
            self.messages, Sequence
        ):
            raise JournalEntryError("messages must be a list of message objects")
        if not self.messages:
            raise JournalEntryError("an entry needs at least one message")
        checked = [_check_message(m, i) for i, m in enumerate(self.messages)]
        try:
            # A deep copy through JSON: the entry is detached from the caller's objects and is
            # known to serialise before it ever reaches the disk.
            copied = json.loads(json.dumps(checked, ensure_ascii=True))
        except (TypeError, ValueError, RecursionError) as exc:
            raise JournalEntryError(f"messages are not JSON data: {exc}") from None
        object.__setattr__(self, "messages", tuple(copied))
        if not isinstance(self.saved_at_failure, str):
            raise JournalEntryError("saved_at_failure must be an ISO time string")
        try:
            datetime.fromisoformat(self.saved_at_failure)
        except ValueError:
            raise JournalEntryError(
                f"saved_at_failure {self.saved_at_failure!r} is not an ISO time"
            ) from None
        if not isinstance(self.error, str):
            raise JournalEntryError("error must be a string")
        if len(self.error) > MAX_ERROR_CHARS:
            object.__setattr__(self, "error", self.error[: MAX_ERROR_CHARS - 3] + "...")

    @property
    def answer_id(self) -> str | None:
        """The id of the last message (the answer), which makes re-saving this turn idempotent."""
        value = self.messages[-1]["data"].get("id")
        return value if isinstance(value, str) and value else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "agent_id": self.agent_id,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "messages": [dict(m) for m in self.messages],
            "saved_at_failure": self.saved_at_failure,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: object) -> JournalEntry:
        """Validate and build an entry; raises `JournalEntryError` for anything else.
        Unknown extra keys are ignored (later versions may add fields)."""
        if not isinstance(data, Mapping):
            raise JournalEntryError("an entry must be a JSON object")
        if data.get("v") != VERSION:
            raise JournalEntryError(f"unsupported journal entry version {data.get('v')!r}")
        missing = [k for k in ("agent_id", "user_id", "session_id", "messages") if k not in data]
        if missing:
            raise JournalEntryError(f"entry lacks {', '.join(missing)}")
        messages = data["messages"]
        if not isinstance(messages, list):
            raise JournalEntryError("messages must be a list")
        return cls(
            agent_id=data["agent_id"],
            user_id=data["user_id"],
            session_id=data["session_id"],
            messages=tuple(messages),
            saved_at_failure=data.get("saved_at_failure", _now_iso()),
            error=data.get("error", ""),
        )

    def to_line(self) -> bytes:
        """The entry as one journal line: ASCII JSON (no raw newline can occur), newline-ended."""
        return json.dumps(self.to_dict(), ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class ReplayResult:
    """What one replay did. `skipped`: another process was replaying; nothing was tried."""

    saved: int = 0
    remaining: int = 0
    set_aside: int = 0  # unreadable or rejected lines moved to the `.corrupt` sidecar
    duplicates: int = 0  # entries repeating a turn already saved by this replay, dropped
    skipped: bool = False
    error: Exception | None = None  # why the replay stopped early (the failed entry is kept)
    failed: JournalEntry | None = None

    @property
    def ok(self) -> bool:
        return not self.skipped and self.error is None


@dataclass(frozen=True)
class _Step:
    """The first replayable entry and its raw line, after setting aside `set_aside` bad lines."""

    entry: JournalEntry | None
    line: bytes
    set_aside: int


@dataclass
class _Scan:
    """The journal file read at one moment: raw lines with their parsed entry (None if bad)."""

    lines: list[bytes]
    entries: list[JournalEntry | None]
    torn_tail: bool  # the last line has no newline: a write cut short
    numbers: list[int] = field(default_factory=list)  # line numbers in the file, from 1


def _parse(line: bytes) -> JournalEntry:
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JournalEntryError(f"not JSON: {exc.__class__.__name__}") from None
    return JournalEntry.from_dict(data)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the data is still written
        pass
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """Create `path` and missing parents 0700; folders that exist keep their mode."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue  # another process made it: its mode is its own
        os.chmod(folder, 0o700)  # our own new folder: the umask may have masked the owner bits
        _fsync_dir(folder.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class TurnJournal:
    """The journal file at `path` (normally `<STOCK_AGENT_HOME>/journal/unsaved-turns.jsonl`)."""

    def __init__(self, path: Path | str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.corrupt_path = self.path.with_name(self.path.name + ".corrupt")
        self._file_lock_path = self.path.with_name(self.path.name + ".lock")
        self._replay_lock_path = self.path.with_name(self.path.name + ".replay.lock")

    @classmethod
    def in_home(
        cls, home: Path | str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> TurnJournal:
        return cls(Path(home) / JOURNAL_DIR / JOURNAL_FILE, lock_timeout=lock_timeout)

    def __repr__(self) -> str:
        return f"TurnJournal({str(self.path)!r})"

    # -- locking ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, lock_path: Path, timeout: float) -> Iterator[bool]:
        """Hold an exclusive flock on `lock_path`, waiting at most `timeout` seconds.
        Yields False (holding nothing) when the wait ran out. Lock files are never deleted:
        deleting one would let two processes lock two different files of the same name."""
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + max(timeout, 0.0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(_POLL_SECONDS)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- append ----------------------------------------------------------------------------

    def append(self, entry: JournalEntry | Mapping[str, Any]) -> None:
        """Add one turn at the end, durably (file fsync; folder fsync when the file is new).
        A mapping is validated with `JournalEntry.from_dict` first (`JournalEntryError`).
        Raises `JournalWriteError` when the disk refuses (full, read-only, permissions)."""
        if not isinstance(entry, JournalEntry):
            entry = JournalEntry.from_dict(entry)
        line = entry.to_line()
        try:
            _make_dirs(self.path.parent)
            with self._locked(self._file_lock_path, self.lock_timeout) as locked:
                if not locked:
                    log.warning(
                        "journal %s: lock busy for %.0f s, appending without it",
                        self.path,
                        self.lock_timeout,
                    )
                self._append_line(line)
        except OSError as exc:
            raise JournalWriteError(
                f"cannot write the unsaved-turn journal {self.path}: {exc.strerror or exc}",
                fix=f"free disk space or make {self.path.parent} writable",
            ) from exc

    def _append_line(self, line: bytes) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        created = False
        try:
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(self.path, flags)
        try:
            size = os.fstat(fd).st_size
            # A line torn by an earlier crash has no newline: start ours on a line of its own,
            # in the same write, so the torn line cannot swallow this entry.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            _write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)

    # -- reading ---------------------------------------------------------------------------

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def _scan(self) -> _Scan:
        raw = self._read_bytes()
        parts = raw.split(b"\n")
        torn = parts[-1] != b""
        if not torn:
            parts.pop()
        lines: list[bytes] = []
        entries: list[JournalEntry | None] = []
        numbers: list[int] = []
        for number, part in enumerate(parts, start=1):
            if not part.strip():
                continue
            lines.append(part)
            numbers.append(number)
            try:
                entries.append(_parse(part))
            except JournalEntryError:
                entries.append(None)
        return _Scan(lines, entries, torn, numbers)

    def _scan_quietly_locked(self) -> _Scan:
        if not self.path.parent.is_dir():
            return _Scan([], [], False)
        # Reading needs no lock for safety, only for a consistent view: if it is busy (or the
        # lock file cannot be made, e.g. a read-only folder), read anyway.
        try:
            with self._locked(self._file_lock_path, min(self.lock_timeout, 1.0)):
                return self._scan()
        except OSError:
            return self._scan()

    def pending(self) -> list[JournalEntry]:
        """The readable entries, oldest first. Unreadable lines are skipped with a warning
        (they stay in the file until a replay moves them to the `.corrupt` sidecar)."""
        scan = self._scan_quietly_locked()
        result: list[JournalEntry] = []
        last = len(scan.entries) - 1
        for index, (number, entry) in enumerate(zip(scan.numbers, scan.entries, strict=True)):
            if entry is None:
                torn = scan.torn_tail and index == last
                log.warning(
                    "journal %s: skipping %s line %d",
                    self.path,
                    "torn last" if torn else "unreadable",
                    number,
                )
                continue
            result.append(entry)
        return result

    def count(self) -> int:
        """How many readable entries wait for replay (for `store status`)."""
        return sum(1 for e in self._scan_quietly_locked().entries if e is not None)

    def _count_or_zero(self) -> int:
        try:
            return self.count()
        except OSError:
            return 0

    def corrupt_count(self) -> int:
        """Lines that cannot be replayed: set aside in the sidecar, or still in the journal."""
        aside = 0
        with contextlib.suppress(FileNotFoundError):
            aside = sum(1 for part in self.corrupt_path.read_bytes().split(b"\n") if part.strip())
        return aside + sum(1 for e in self._scan_quietly_locked().entries if e is None)

    # -- replay ----------------------------------------------------------------------------

    def replay(
        self, save: Callable[[JournalEntry], None], *, timeout: float | None = None
    ) -> ReplayResult:
        """Call `save` for each entry in order and remove each one once saved.

        Stops at the first exception from `save` (other than `EntryRejected`), keeping that entry
        and the later ones. When another process is replaying and does not finish within
        `timeout` seconds (default: the journal's lock timeout), returns `skipped=True` at once.
        Never raises because of the journal's content; an OSError from the disk is reported as
        the result's `error`, with every entry kept.
        """
        if not self.path.exists():
            return ReplayResult()
        wait = self.lock_timeout if timeout is None else timeout
        saved = set_aside = duplicates = 0
        seen: set[tuple[str, str, str, str]] = set()
        try:
            with self._locked(self._replay_lock_path, wait) as locked:
                if not locked:
                    log.info("journal %s: another process is replaying; skipped", self.path)
                    return ReplayResult(remaining=self._count_or_zero(), skipped=True)
                while True:
                    step = self._next_entry()
                    set_aside += step.set_aside
                    if step.entry is None:
                        break
                    entry, line = step.entry, step.line
                    key = None
                    if entry.answer_id is not None:
                        key = (entry.agent_id, entry.user_id, entry.session_id, entry.answer_id)
                    if key is not None and key in seen:
                        self._remove_line(line)
                        duplicates += 1
                        continue
                    try:
                        save(entry)
                    except EntryRejected as exc:
                        log.warning("journal %s: entry set aside: %s", self.path, exc)
                        self._remove_line(line, set_aside=True)
                        set_aside += 1
                        continue
                    except Exception as exc:
                        return ReplayResult(
                            saved=saved,
                            remaining=self._count_or_zero(),
                            set_aside=set_aside,
                            duplicates=duplicates,
                            error=exc,
                            failed=entry,
                        )
                    self._remove_line(line)
                    saved += 1
                    if key is not None:
                        seen.add(key)
        except (OSError, _JournalBusy) as exc:
            log.warning("journal %s: replay stopped: %s", self.path, exc)
            return ReplayResult(
                saved=saved,
                remaining=self._count_or_zero(),
                set_aside=set_aside,
                duplicates=duplicates,
                error=exc,
            )
        return ReplayResult(saved=saved, remaining=0, set_aside=set_aside, duplicates=duplicates)

    def _next_entry(self) -> _Step:
        """Under the file lock: move unreadable lines to the sidecar, return the first entry."""
        with self._locked(self._file_lock_path, self.lock_timeout) as locked:
            if not locked:
                raise _JournalBusy(f"journal file lock busy for {self.lock_timeout:.0f} s")
            scan = self._scan()
            bad = [line for line, e in zip(scan.lines, scan.entries, strict=True) if e is None]
            if bad:
                log.warning(
                    "journal %s: %d unreadable line(s) moved to %s",
                    self.path,
                    len(bad),
                    self.corrupt_path,
                )
                self._append_corrupt(bad)
                kept = zip(scan.lines, scan.entries, strict=True)
                self._rewrite([line for line, e in kept if e is not None])
            for line, entry in zip(scan.lines, scan.entries, strict=True):
                if entry is not None:
                    return _Step(entry, line, len(bad))
            return _Step(None, b"", len(bad))

    def _remove_line(self, line: bytes, *, set_aside: bool = False) -> None:
        """Under the file lock: drop the first occurrence of `line`. Only the replay-lock holder
        removes lines and appends only add at the end, so it is still the first entry."""
        with self._locked(self._file_lock_path, self.lock_timeout) as locked:
            if not locked:
                raise _JournalBusy(f"journal file lock busy for {self.lock_timeout:.0f} s")
            scan = self._scan()
            lines = list(scan.lines)
            try:
                lines.remove(line)
            except ValueError:
                log.warning("journal %s: replayed entry no longer in the file", self.path)
                return
            if set_aside:
                self._append_corrupt([line])
            self._rewrite(lines)

    def _append_corrupt(self, lines: list[bytes]) -> None:
        fd = os.open(
            self.corrupt_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            _write_all(fd, b"".join(line + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rewrite(self, lines: list[bytes]) -> None:
        """Replace the journal with `lines` atomically (temp file, fsync, os.replace, dir fsync);
        with no lines left the file is removed."""
        folder = self.path.parent
        if not lines:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            _fsync_dir(folder)
            return
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            try:
                _write_all(fd, b"".join(line + b"\n" for line in lines))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(folder)


class _JournalBusy(Exception):  # noqa: N818
    """The short file lock could not be had in time during a replay (entries are kept)."""
