"""A user's sessions (`SessionStore`): listed newest first from a per-user index (a sorted set
of session id -> last activity), never by scanning the keyspace; the turn's read and save.

The index slides with the sessions: every read or write of a history refreshes the
session's score and the index's TTL, so expired sessions drop out of it.
"""

from __future__ import annotations

import builtins
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stock_agent.store.keys import validate_id

if TYPE_CHECKING:
    import redis
    from langchain_core.messages import BaseMessage

    from stock_agent.core.models import Profile
    from stock_agent.store.history import SessionHistory
    from stock_agent.store.keys import KeySpace


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    messages: int
    last_activity: float  # unix time of the last read or write
    ttl: int  # seconds left before the session expires

    def to_dict(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "messages": self.messages,
            "last_activity": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(self.last_activity)
            ),
            "expires_in": self.ttl,
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

    def __init__(self, client: redis.Redis, keys: KeySpace, *, ttl: int, window: int) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl
        self.window = window

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
        memory full) does not fail the read; a failed read of the list or profile does."""
        from stock_agent.store.profile import ProfileStore

        history = self.history(user_id, session_id)
        pipe = self.client.pipeline(transaction=False)
        history.queue_read(pipe)
        pipe.hgetall(self.keys.profile(user_id))
        replies = pipe.execute(raise_on_error=False)
        raw, fields = replies[0], replies[-1]
        for reply in (raw, fields):
            if isinstance(reply, Exception):
                raise reply
        history.preloaded = history.decode(raw)
        return TurnMemory(history, ProfileStore.from_hash(fields))

    def save_turn(self, user_id: str, session_id: str, messages: Sequence[BaseMessage]) -> None:
        """Append one turn (retry-safe when its last message has an id). Raises on failure."""
        self.history(user_id, session_id).save(messages)

    def list(self, user_id: str, limit: int = 50) -> list[SessionInfo]:
        """Live sessions of `user_id`, newest first, with message counts. Two round trips."""
        client, keys, ttl = self.client, self.keys, self.ttl
        index = keys.sessions(user_id)
        now = time.time()
        # The score is the last activity; anything older than the TTL has expired.
        entries: list[tuple[str, float]] = client.zrange(  # type: ignore[assignment]
            index, "+inf", now - ttl, desc=True, byscore=True, offset=0, num=limit, withscores=True
        )
        if not entries:
            return []
        pipe = client.pipeline(transaction=False)
        for session_id, _ in entries:
            key = keys.messages(user_id, session_id)
            pipe.llen(key)
            pipe.ttl(key)
        replies = pipe.execute()
        result: list[SessionInfo] = []
        gone: list[str] = []
        for i, (session_id, score) in enumerate(entries):
            count, left = replies[2 * i], replies[2 * i + 1]
            if count == 0 or left == -2:
                gone.append(session_id)  # expired or cleared elsewhere
                continue
            result.append(SessionInfo(session_id, int(count), float(score), int(left)))
        if gone:
            client.zrem(index, *gone)
        return result

    def latest(self, user_id: str) -> str | None:
        sessions = self.list(user_id, limit=5)
        return sessions[0].session_id if sessions else None

    def count_messages(self, user_id: str, session_id: str) -> int:
        return int(self.client.llen(self.keys.messages(user_id, session_id)))

    def clear(self, user_id: str, session_id: str) -> bool:
        """Delete one session's messages and its index entry. True if it existed."""
        validate_id(session_id, "session id")
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.messages(user_id, session_id))
        pipe.zrem(self.keys.sessions(user_id), session_id)
        deleted, removed = pipe.execute()
        return bool(deleted or removed)

    def raw_messages(self, user_id: str, session_id: str) -> builtins.list[dict[str, Any]]:
        """A session's stored messages, oldest first, as the JSON dicts LangChain writes
        (`{"type": ..., "data": {...}}`), without importing LangChain. Does not refresh the TTL.
        Unreadable entries are skipped."""
        raw = self.client.lrange(self.keys.messages(user_id, session_id), 0, -1)
        out: builtins.list[dict[str, Any]] = []
        for item in reversed(raw):
            try:
                decoded = json.loads(item)
            except json.JSONDecodeError:
                continue
            if isinstance(decoded, dict):
                out.append(decoded)
        return out
