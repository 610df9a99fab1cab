"""A user's sessions (`SessionStore`): listed newest first from a per-user index (a sorted set
of session id -> last activity), never by scanning the keyspace; the turn's read and save.

The index slides with the sessions: every read or write of a history refreshes the
session's score and the index's TTL, so expired sessions drop out of it.

Damaged data is contained: another Redis type at the index or a messages key is one
`WrongTypeKey` naming the key and `stock-agent doctor --repair` (never "cannot reach Redis");
a damaged profile reads as an empty one with a warning; unreadable entries are skipped.
"""

from __future__ import annotations

import builtins
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stock_agent.store.errors import is_wrong_type, raise_reply, translated, wrong_type
from stock_agent.store.keys import is_valid_id, validate_id

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    from langchain_core.messages import BaseMessage

    from stock_agent.core.models import Profile
    from stock_agent.core.usage import UsageTotals
    from stock_agent.store.history import SessionHistory
    from stock_agent.store.keys import KeySpace
    from stock_agent.store.profile import ProfileStore

log = logging.getLogger(__name__)
# The message types LangChain's `messages_from_dict` knows (`sessions show` checks the shape
# without importing LangChain).
_MESSAGE_TYPES = frozenset(
    ("human", "ai", "system", "chat", "function", "tool", "remove", "AIMessageChunk",
     "HumanMessageChunk", "FunctionMessageChunk", "ToolMessageChunk", "SystemMessageChunk",
     "ChatMessageChunk")
)  # fmt: skip


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    messages: int
    last_activity: float  # unix time of the last read or write
    ttl: int  # seconds left before the session expires
    usage: UsageTotals | None = None  # the session's turns, tokens and cost, as counted

    def to_dict(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "messages": self.messages,
            "last_activity": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(self.last_activity)
            ),
            "expires_in": self.ttl,
            "usage": self.usage.to_dict() if self.usage is not None else None,
        }


def new_session_id() -> str:
    """A readable, sortable, unique id: `20261124-0941-3f9a`."""
    return f"{time.strftime('%Y%m%d-%H%M')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class TurnMemory:
    """What one chat turn reads before the model is called: the session's window of messages
    (LangChain messages, oldest first), the history to save into, and the user's profile."""

    history: SessionHistory
    profile: Profile

    @property
    def messages(self) -> list[BaseMessage]:
        return list(self.history.preloaded or [])


class SessionStore:
    """A user's sessions: their histories, the per-user index, and the turn read and save.

    `read_turn` is the one read of a turn (history window + TTL slide + profile: one round
    trip); `save_turn` the one write (one atomic script call)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: KeySpace,
        *,
        ttl: int,
        window: int,
        aclient: Callable[[], redis.asyncio.Redis] | None = None,
    ) -> None:
        self.client = client
        # The asyncio client of the same store, for `aread_turn` / `asave_turn` (made on first
        # async use: a sync command never creates one).
        self._aclient = aclient
        self.keys = keys
        self.ttl = ttl
        self.window = window
        self._profiles: ProfileStore | None = None
        self._warned: set[str] = set()

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def history(
        self, user_id: str, session_id: str, *, preloaded: list[BaseMessage] | None = None
    ) -> SessionHistory:
        from stock_agent.store.history import SessionHistory

        return SessionHistory(
            self.client,
            self.keys,
            user_id,
            session_id,
            ttl=self.ttl,
            window=self.window,
            preloaded=preloaded,
        )

    def read_turn(self, user_id: str, session_id: str) -> TurnMemory:
        """History and profile in one round trip. A refused TTL refresh (e.g. `noeviction` with
        memory full) does not fail the read; a failed read of the list does, typed. A
        wrong-type index fails it too (the turn could not be saved); a wrong-type profile
        reads as an empty one, with one warning."""
        history = self.history(user_id, session_id)
        pipe = self.client.pipeline(transaction=False)
        self._queue_turn_read(pipe, history)
        return self._turn_memory(history, pipe.execute(raise_on_error=False))

    async def aread_turn(self, user_id: str, session_id: str) -> TurnMemory:
        """`read_turn` on the asyncio client: the same pipeline, awaited, the same decoding."""
        client = self.async_client()
        history = self.history(user_id, session_id)
        history.aclient = client
        pipe = client.pipeline(transaction=False)
        self._queue_turn_read(pipe, history)
        return self._turn_memory(history, await pipe.execute(raise_on_error=False))

    async def asave_turn(
        self, user_id: str, session_id: str, messages: Sequence[BaseMessage]
    ) -> None:
        """`save_turn`, awaited (the same script on the asyncio client). Raises on failure."""
        history = self.history(user_id, session_id)
        history.aclient = self.async_client()
        await history.asave(messages)

    def async_client(self) -> redis.asyncio.Redis:
        if self._aclient is None:
            raise RuntimeError("this session store has no asyncio client")
        return self._aclient()

    def _queue_turn_read(self, pipe: Any, history: SessionHistory) -> None:
        """The turn's one read (window, TTL slides, profile) into `pipe`, sync or async: on a
        cluster every key has the user's hash tag, so the pipeline goes to one node."""
        history.queue_read(pipe)
        pipe.hgetall(self.keys.profile(history.user_id))

    def _turn_memory(self, history: SessionHistory, replies: list[Any]) -> TurnMemory:
        from stock_agent.store.profile import ProfileStore

        if self._profiles is None:
            self._profiles = ProfileStore(self.client, self.keys)
        profile_key = self.keys.profile(history.user_id)
        raw, fields = replies[0], replies[-1]
        raise_reply(raw, client=self.client, key=history.key, keys=self.keys)
        if any(is_wrong_type(reply) for reply in replies[1:-1]):  # the index's ZADD or EXPIRE
            raise wrong_type(self.client, self.keys, history.index_key)
        profile = self._profiles.from_reply(fields, profile_key)
        history.preloaded = history.decode(raw)
        return TurnMemory(history, profile)

    def save_turn(self, user_id: str, session_id: str, messages: Sequence[BaseMessage]) -> None:
        """Append one turn (retry-safe when its last message has an id). Raises on failure."""
        self.history(user_id, session_id).save(messages)

    def list(self, user_id: str, limit: int = 50) -> list[SessionInfo]:
        """Live sessions of `user_id`, newest first, with message counts. Two round trips."""
        client, keys, ttl = self.client, self.keys, self.ttl
        index = keys.sessions(user_id)
        now = time.time()
        # The score is the last activity; anything older than the TTL has expired.
        with translated(client, key=index, keys=keys):
            entries: list[tuple[str, float]] = client.zrange(  # type: ignore[assignment]
                index, "+inf", now - ttl, desc=True, byscore=True, offset=0, num=limit,
                withscores=True,
            )  # fmt: skip
        # An id that is not valid (written by something else) cannot name a key: skipped.
        entries = [(s, score) for s, score in entries if is_valid_id(s)]
        if not entries:
            return []
        pipe = client.pipeline(transaction=False)
        for session_id, _ in entries:
            key = keys.messages(user_id, session_id)
            pipe.llen(key)
            pipe.ttl(key)
            pipe.hmget(keys.session_usage(user_id, session_id), *USAGE_FIELDS)
        replies = pipe.execute(raise_on_error=False)
        result: list[SessionInfo] = []
        gone: list[str] = []
        for i, (session_id, score) in enumerate(entries):
            count, left, usage = replies[3 * i], replies[3 * i + 1], replies[3 * i + 2]
            if is_wrong_type(count):  # a damaged session must not hide the others: skip it
                damaged = wrong_type(client, keys, keys.messages(user_id, session_id))
                self._warn_once(
                    damaged.key, "warning: session %s skipped: %s (%s)",
                    session_id, damaged.message, damaged.fix,
                )  # fmt: skip
                continue
            for reply in (count, left):
                raise_reply(reply, client=client, key=keys.messages(user_id, session_id), keys=keys)
            if count == 0 or left == -2:
                gone.append(session_id)  # expired or cleared elsewhere
                continue
            result.append(
                SessionInfo(session_id, int(count), float(score), int(left), session_usage(usage))
            )
        if gone:
            try:
                client.zrem(index, *gone)
            except Exception:  # tidying only (e.g. a read-only replica): the list stands
                log.debug("could not drop expired sessions from %s", index, exc_info=True)
        return result

    def latest(self, user_id: str) -> str | None:
        sessions = self.list(user_id, limit=5)
        return sessions[0].session_id if sessions else None

    def count_messages(self, user_id: str, session_id: str) -> int:
        key = self.keys.messages(user_id, session_id)
        with translated(self.client, key=key, keys=self.keys):
            return int(self.client.llen(key))

    def clear(self, user_id: str, session_id: str) -> bool:
        """Delete one session's messages and its index entry. True if it existed."""
        validate_id(session_id, "session id")
        index = self.keys.sessions(user_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(
            self.keys.messages(user_id, session_id), self.keys.session_usage(user_id, session_id)
        )
        pipe.zrem(index, session_id)
        deleted, removed = pipe.execute(raise_on_error=False)
        raise_reply(deleted, client=self.client, keys=self.keys)
        raise_reply(removed, client=self.client, key=index, keys=self.keys)
        return bool(deleted or removed)

    def raw_messages(self, user_id: str, session_id: str) -> builtins.list[dict[str, Any]]:
        """A session's stored messages, oldest first, as the JSON dicts LangChain writes
        (`{"type": ..., "data": {...}}`), without importing LangChain. Does not refresh the TTL.
        Entries that are not messages are skipped, with one warning."""
        key = self.keys.messages(user_id, session_id)
        with translated(self.client, key=key, keys=self.keys):
            raw = self.client.lrange(key, 0, -1)
        out: builtins.list[dict[str, Any]] = []
        for item in reversed(raw):
            decoded = _message_dict(item)
            if decoded is not None:
                out.append(decoded)
        if skipped := len(raw) - len(out):
            log.warning(
                "skipped %d unreadable message(s) in %s (`stock-agent doctor --repair --user %s`"
                " removes them)", skipped, key, user_id,
            )  # fmt: skip
        return out


# The fields of a session's usage hash (written by the turn's save script).
USAGE_FIELDS = ("turns", "in", "out", "cost", "unpriced")


def session_usage(reply: object) -> UsageTotals | None:
    """A session's usage from the HMGET of `USAGE_FIELDS` (None: nothing counted, or not a hash)."""
    from stock_agent.core.usage import UsageTotals, stored_count

    if not isinstance(reply, list) or not any(v is not None for v in reply):
        return None
    turns, tokens_in, tokens_out, cost, unpriced = (stored_count(v) for v in reply)
    return UsageTotals(int(turns), int(tokens_in), int(tokens_out), cost, int(unpriced))


def _message_dict(item: str | bytes) -> dict[str, Any] | None:
    """A stored entry as a message dict if it has the shape of one, else None."""
    try:
        decoded = json.loads(item)
    except ValueError:  # JSONDecodeError, and bytes that are not UTF-8
        return None
    if not isinstance(decoded, dict) or decoded.get("type") not in _MESSAGE_TYPES:
        return None
    data = decoded.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("content"), str | builtins.list):
        return None
    return decoded
