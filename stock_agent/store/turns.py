"""No answered turn is dropped: `TurnSaver` saves each turn once, after its answer, and keeps
every turn whose save fails until a later write succeeds or the journal has it.

- A failed save is reported at once (`TurnNotSaved`: "answer not saved yet: Redis unreachable;
  kept, will retry") and the turn is kept in memory, in order.
- Kept turns are written first, oldest first, by the next write (before the next turn's read,
  so the model sees them, and before the new turn). Order holds per session: a session with
  an older turn still waiting keeps its newer ones too. Re-writing a turn that did reach the
  server appends nothing (its answer id is on top of the list: the save script checks it).
- At process end (`finish`) what is still unsaved goes to the local journal
  (`STOCK_AGENT_HOME/journal/`), which the next command replays (`replay`) before anything
  else; a replay that cannot finish (another process holds its lock, Redis is down) is
  retried before this process's own kept turns, so journaled turns keep their place.
- A healthy turn costs nothing extra: no round trip, no file access, when nothing waits.

No LangChain here: the messages are opaque objects; the App passes the two functions that
turn them into the journal's dicts and back (`message_to_dict`, `messages_from_dict`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stock_agent.errors import StockAgentError, StoreUnavailable
from stock_agent.store.journal import (
    EntryRejected,
    JournalEntry,
    JournalEntryError,
    JournalWriteError,
    ReplayResult,
    TurnJournal,
)

if TYPE_CHECKING:
    from stock_agent.store.sessions import SessionStore

log = logging.getLogger(__name__)

# How long a replay waits for another process's replay before leaving it to that process (or to
# the next command): short, so no command is held up by someone else's slow replay.
REPLAY_LOCK_TIMEOUT = 0.5

Encode = Callable[[Any], dict[str, Any]]
Decode = Callable[[Sequence[dict[str, Any]]], list[Any]]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass(frozen=True)
class SaveFailure:
    """Why a save failed: the error a person can act on, and whether it concerns the whole
    store (down, full, read-only, denied: nothing else will be written now) or one key."""

    error: StockAgentError
    unreachable: bool = False  # the server did not answer at all
    whole_store: bool = True

    @property
    def summary(self) -> str:
        """What happened, without the fix: "Redis unreachable", "... holds a string, ..."."""
        return "Redis unreachable" if self.unreachable else self.error.message

    @property
    def reason(self) -> str:
        """What happened and its fix, for "answer not saved yet: <reason>"."""
        if self.unreachable or not self.error.fix:
            return self.summary
        return f"{self.summary} ({self.error.fix})"


class TurnNotSaved(StoreUnavailable):
    """The answer was given (`answer`) but its turn could not be saved yet. It is kept: written
    with the next successful write, or journaled at the end of the process and replayed by the
    next command. `kept` counts the turns waiting, this one included."""

    def __init__(self, failure: SaveFailure, *, kept: int, answer: str = "") -> None:
        super().__init__(f"answer not saved yet: {failure.reason}", fix=None)
        self.failure = failure
        self.kept = kept
        self.answer = answer

    def one_line(self) -> str:
        waiting = f" ({self.kept} answers waiting)" if self.kept > 1 else ""
        return f"{self.message}; kept{waiting}, will retry"


class TurnsJournaled(StoreUnavailable):
    """The process ends with answered turns Redis did not take: they are in the journal."""

    def __init__(self, count: int, path: Path, reason: str | None = None) -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(
            f"{_plural(count, 'answered turn')} not saved to Redis{because}: kept in the "
            f"journal {path}",
            fix="the next stock-agent command that reaches Redis saves them",
        )
        self.count = count
        self.path = path


@dataclass(frozen=True)
class KeptTurn:
    """A turn whose save failed, oldest first in `TurnSaver`; `failure` is the latest reason."""

    user_id: str
    session_id: str
    messages: tuple[Any, ...]
    failure: SaveFailure


def explain_failure(
    exc: BaseException,
    sessions: SessionStore,
    *,
    where: str,
    embedded: bool,
    user_id: str | None = None,
    session_id: str | None = None,
) -> SaveFailure:
    """What a failed save (or a failed turn read) means for the user: unreachable, full,
    read-only, loading, a wrong-type key (named), an ACL denial, or another refusal. The
    wrong-type and ACL cases cost a round trip or two to name the key and the limit: on this
    error path only."""
    from stock_agent.store import errors as store_errors
    from stock_agent.store.connection import unreachable

    def per_key(error: StockAgentError) -> bool:
        # A damaged key, or a refusal about one key: other sessions can still be saved.
        return (
            isinstance(error, store_errors.WrongTypeKey) or type(error) is store_errors.StoreError
        )

    if isinstance(exc, StockAgentError):
        return SaveFailure(
            exc, unreachable=type(exc) is StoreUnavailable, whole_store=not per_key(exc)
        )
    import redis

    client, keys = sessions.client, sessions.keys
    if isinstance(exc, redis.RedisError):
        text = store_errors.relay(exc, client)
        if "WRONGTYPE" in text and user_id is not None and session_id is not None:
            # A script names no key: ask which of the turn's keys has the wrong type.
            for key in (keys.messages(user_id, session_id), keys.sessions(user_id)):
                found = store_errors.key_type(client, key)
                if found not in (None, "none", keys.expected_type(key)):
                    return SaveFailure(
                        store_errors.wrong_type(client, keys, key, found), whole_store=False
                    )
        if not isinstance(exc, redis.exceptions.NoPermissionError) and (
            "NOPERM" in text or "no permissions" in text.lower()
        ):
            # An ACL failure inside the save script arrives as a plain ResponseError.
            denied = store_errors.permission_denied(client, text, keys=keys)
            return SaveFailure(denied)
        typed = store_errors.classify(exc, client=client, keys=keys)
        if typed is not None:
            return SaveFailure(typed, whole_store=not per_key(typed))
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return SaveFailure(unreachable(where, exc, embedded=embedded), unreachable=True)
        return SaveFailure(
            store_errors.StoreError(f"Redis refused to save the turn: {text}", fix=None),
            whole_store=False,
        )
    if isinstance(exc, OSError):
        return SaveFailure(unreachable(where, exc, embedded=embedded), unreachable=True)
    return SaveFailure(
        StockAgentError(f"the turn could not be saved: {type(exc).__name__}: {exc}"),
        whole_store=False,
    )


class TurnSaver:
    """Saves answered turns for one App; keeps, retries and journals the ones Redis refuses.
    Thread-safe: the App (and this saver) may be shared by threads."""

    def __init__(
        self,
        sessions: SessionStore,
        journal: TurnJournal,
        *,
        agent_id: str,
        encode: Encode,
        decode: Decode,
        where: str,
        embedded: bool,
    ) -> None:
        self.sessions = sessions
        self.journal = journal
        self.agent_id = agent_id
        self.encode = encode
        self.decode = decode
        self.where = where  # the store's URL, safe to print
        self.embedded = embedded
        self._kept: list[KeptTurn] = []
        # The journal had entries a replay could not save: replay it before writing anything.
        self._journal_waiting = False
        self._last_failure: SaveFailure | None = None
        self._lock = threading.RLock()

    # -- state -----------------------------------------------------------------------------

    @property
    def kept(self) -> int:
        """Turns of this process waiting to be saved (in memory)."""
        return len(self._kept)

    @property
    def kept_sessions(self) -> list[tuple[str, str]]:
        """(user, session) of each kept turn, oldest first: the order they will be written."""
        return [(t.user_id, t.session_id) for t in self._kept]

    @property
    def waiting(self) -> bool:
        """Something waits to be written: kept turns, or journal entries a replay left."""
        return bool(self._kept) or self._journal_waiting

    @property
    def last_failure(self) -> SaveFailure | None:
        """Why the latest write failed (None once a write succeeded)."""
        return self._last_failure

    def explain(
        self, exc: BaseException, user_id: str | None = None, session_id: str | None = None
    ) -> SaveFailure:
        return explain_failure(
            exc,
            self.sessions,
            where=self.where,
            embedded=self.embedded,
            user_id=user_id,
            session_id=session_id,
        )

    # -- saving ----------------------------------------------------------------------------

    def save(
        self, user_id: str, session_id: str, messages: Sequence[Any], *, answer: str = ""
    ) -> None:
        """Save one turn (after anything older still waiting). Raises `TurnNotSaved` (with
        `answer`) when it is kept instead; never loses it."""
        if not messages:
            return
        if not self.waiting:  # the healthy path: one script call, nothing else
            try:
                self.sessions.save_turn(user_id, session_id, messages)
                return
            except Exception as exc:
                failed = self.explain(exc, user_id, session_id)
                raise self._kept_now(user_id, session_id, messages, failed, answer) from exc
        self._save_waiting(user_id, session_id, messages, answer)

    async def asave(
        self, user_id: str, session_id: str, messages: Sequence[Any], *, answer: str = ""
    ) -> None:
        """`save` from async code: the healthy path awaits the one script call on the asyncio
        client; explaining a failure and writing what waits (rare paths that take the lock
        and may retry) run in a worker thread, so the event loop never waits on them."""
        if not messages:
            return
        if not self.waiting:
            try:
                await self.sessions.asave_turn(user_id, session_id, messages)
                return
            except Exception as exc:
                failed = await asyncio.to_thread(self.explain, exc, user_id, session_id)
                raise self._kept_now(user_id, session_id, messages, failed, answer) from exc
        await asyncio.to_thread(self._save_waiting, user_id, session_id, messages, answer)

    def _kept_now(
        self,
        user_id: str,
        session_id: str,
        messages: Sequence[Any],
        failed: SaveFailure,
        answer: str,
    ) -> TurnNotSaved:
        """Keep a turn whose save just failed; the error to raise for it."""
        with self._lock:
            self._keep(user_id, session_id, messages, failed)
            kept = len(self._kept)
        return TurnNotSaved(failed, kept=kept, answer=answer)

    def _save_waiting(
        self, user_id: str, session_id: str, messages: Sequence[Any], answer: str
    ) -> None:
        """Save a turn while older ones wait: they go first (see `save`)."""
        with self._lock:
            failure, blocked = self._drain()
            if (user_id, session_id) not in blocked and (
                failure is None or not failure.whole_store
            ):
                try:
                    self.sessions.save_turn(user_id, session_id, messages)
                    return
                except Exception as exc:
                    failure = self.explain(exc, user_id, session_id)
            elif failure is None:  # e.g. another process is replaying this session's turns
                failure = SaveFailure(
                    StoreUnavailable("an older turn of this session is still in the journal")
                )
            self._keep(user_id, session_id, messages, failure)
            raise TurnNotSaved(failure, kept=len(self._kept), answer=answer)

    def before_turn(self) -> None:
        """Write what waits, so the turn about to start reads it. No I/O when nothing waits.
        Raises the store's error when it is unreachable (the turn's read would fail the same
        way, only later)."""
        if not self.waiting:
            return
        with self._lock:
            failure, _ = self._drain()
        if failure is not None and failure.unreachable:
            raise failure.error

    def with_kept(self, user_id: str, session_id: str, messages: Sequence[Any]) -> list[Any]:
        """`messages` (the window a turn just read) followed by this session's kept turns, cut
        to the window where a turn starts: while part of the conversation waits to be saved,
        the model still sees it. Returns `messages` unchanged when nothing of it is kept."""
        if not self._kept:
            return list(messages)
        with self._lock:
            mine = [t for t in self._kept if (t.user_id, t.session_id) == (user_id, session_id)]
        seen = {m.id for m in messages if getattr(m, "id", None)}
        extra = [
            m for t in mine if getattr(t.messages[-1], "id", None) not in seen for m in t.messages
        ]
        if not extra:
            return list(messages)
        combined = [*messages, *extra]
        window = self.sessions.window
        starts = [i for i, m in enumerate(combined) if getattr(m, "type", None) == "human"]
        fits = [i for i in starts if i >= len(combined) - window]
        # The latest turn alone may be longer than the window: it is kept whole, as saved.
        start = fits[0] if fits else (starts[-1] if starts else 0)
        return combined[start:]

    def retry(self) -> SaveFailure | None:
        """Write what waits now; the failure that stopped it, if any."""
        with self._lock:
            return self._drain()[0]

    def _keep(
        self, user_id: str, session_id: str, messages: Sequence[Any], failure: SaveFailure
    ) -> None:
        self._kept.append(KeptTurn(user_id, session_id, tuple(messages), failure))
        self._last_failure = failure
        log.info("turn of %s/%s kept: %s", user_id, session_id, failure.reason)

    def _drain(self) -> tuple[SaveFailure | None, set[tuple[str, str]]]:
        """Under the lock: replay the journal if it waits, then write kept turns, oldest first.
        Returns the failure that stopped it (None: everything was written) and the sessions
        that still have a turn waiting (their newer turns must wait behind it)."""
        failure: SaveFailure | None = None
        blocked: set[tuple[str, str]] = set()
        if self._journal_waiting:
            result = self._replay(REPLAY_LOCK_TIMEOUT)
            if self._journal_waiting:
                if result.error is not None:
                    failure = self.explain(result.error)
                blocked = {
                    (e.user_id, e.session_id)
                    for e in self._pending_entries()
                    if e.agent_id == self.agent_id
                }
                if failure is not None and failure.whole_store:
                    return failure, blocked | {(t.user_id, t.session_id) for t in self._kept}
        remaining: list[KeptTurn] = []
        for turn in self._kept:
            where = (turn.user_id, turn.session_id)
            if where in blocked or (failure is not None and failure.whole_store):
                remaining.append(turn)
                blocked.add(where)
                continue
            try:
                self.sessions.save_turn(turn.user_id, turn.session_id, turn.messages)
            except Exception as exc:
                failure = self.explain(exc, turn.user_id, turn.session_id)
                remaining.append(KeptTurn(turn.user_id, turn.session_id, turn.messages, failure))
                blocked.add(where)
        self._kept = remaining
        self._last_failure = failure
        return failure, blocked

    def _pending_entries(self) -> list[JournalEntry]:
        try:
            return self.journal.pending()
        except OSError:
            return []

    # -- the journal -----------------------------------------------------------------------

    def flush_to_journal(self) -> int:
        """Append every kept turn to the journal (durably, in order); returns how many.
        Raises `JournalWriteError` when the disk refuses: the turns not written stay kept."""
        with self._lock:
            written = 0
            try:
                for turn in self._kept:
                    self.journal.append(self._entry(turn))
                    written += 1
            finally:
                del self._kept[:written]
            if written:
                self._journal_waiting = True
            return written

    def finish(self) -> int:
        """At process end: one more try to write what waits, then journal the rest. Returns
        how many turns went to the journal (0 when everything reached Redis)."""
        if not self._kept:
            return 0
        self.retry()
        return self.flush_to_journal()

    def _entry(self, turn: KeptTurn) -> JournalEntry:
        try:
            messages = tuple(self.encode(m) for m in turn.messages)
            return JournalEntry(
                agent_id=self.agent_id,
                user_id=turn.user_id,
                session_id=turn.session_id,
                messages=messages,
                error=turn.failure.summary,
            )
        except (JournalEntryError, TypeError, ValueError) as exc:
            raise JournalWriteError(
                f"a kept turn of session {turn.session_id} cannot be journaled: {exc}"
            ) from exc

    def replay(self, *, timeout: float = REPLAY_LOCK_TIMEOUT) -> ReplayResult:
        """Save the journal's entries to Redis, in order, each at most once (run at the start of
        a command). Never raises; waits at most `timeout` for another process's replay."""
        with self._lock:
            return self._replay(timeout)

    def _replay(self, timeout: float) -> ReplayResult:
        if not self.journal.path.exists():
            self._journal_waiting = False
            return ReplayResult()
        try:
            result = self.journal.replay(self._save_entry, timeout=timeout)
        except Exception as exc:  # the journal promises not to; a replay must never fail a command
            log.warning("journal %s: replay failed: %s", self.journal.path, exc)
            result = ReplayResult(error=exc, remaining=1)
        self._journal_waiting = not result.ok
        return result

    def _save_entry(self, entry: JournalEntry) -> None:
        sessions = self.sessions
        if entry.agent_id != self.agent_id:
            # Another agent id used this folder: its keys, on this store.
            from stock_agent.store.keys import KeySpace

            keys = KeySpace(entry.agent_id, cluster=sessions.keys.cluster)
            sessions = type(sessions)(
                sessions.client, keys, ttl=sessions.ttl, window=sessions.window
            )
        try:
            messages = self.decode([dict(m) for m in entry.messages])
        except Exception as exc:  # not messages this LangChain can read: never saveable
            raise EntryRejected(f"entry of session {entry.session_id}: {exc}") from exc
        sessions.save_turn(entry.user_id, entry.session_id, messages)

    def describe_replay(self, result: ReplayResult) -> str | None:
        """One line about a replay for the user, or None when there is nothing to say."""
        parts: list[str] = []
        if result.skipped:
            n = result.remaining
            return (
                f"journal: {_plural(n, 'answered turn')} wait{'s' if n == 1 else ''} (another "
                f"stock-agent process is saving {'it' if n == 1 else 'them'})"
                if n
                else None
            )
        if result.saved:
            parts.append(f"saved {_plural(result.saved, 'answered turn')} from the journal")
        if result.set_aside:
            parts.append(
                f"{_plural(result.set_aside, 'unreadable journal entry')} set aside in "
                f"{self.journal.corrupt_path}"
            )
        if result.error is not None:
            reason = self.explain(result.error).reason
            left = result.remaining or 1
            parts.append(
                f"{_plural(left, 'answered turn')} still in the journal ({reason}); "
                "the next command retries"
            )
        if not parts:
            return None
        return "journal: " + "; ".join(parts)
