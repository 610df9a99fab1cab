"""A user's sessions: listed newest first from a per-user index (a sorted set of
session id -> last activity), never by scanning the keyspace.

The index slides with the sessions: every read or write of a history refreshes the
session's score and the index's TTL, so expired sessions drop out of it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stock_agent.store.keys import validate_id

if TYPE_CHECKING:
    import redis

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


def list_sessions(
    client: redis.Redis, keys: KeySpace, user_id: str, ttl: int, limit: int = 50
) -> list[SessionInfo]:
    """Live sessions of `user_id`, newest first, with message counts. Two round trips."""
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


def latest_session(client: redis.Redis, keys: KeySpace, user_id: str, ttl: int) -> str | None:
    sessions = list_sessions(client, keys, user_id, ttl, limit=5)
    return sessions[0].session_id if sessions else None


def clear_session(client: redis.Redis, keys: KeySpace, user_id: str, session_id: str) -> bool:
    """Delete one session's messages and its index entry. True if it existed."""
    validate_id(session_id, "session id")
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.messages(user_id, session_id))
    pipe.zrem(keys.sessions(user_id), session_id)
    deleted, removed = pipe.execute()
    return bool(deleted or removed)


def read_raw_messages(
    client: redis.Redis, keys: KeySpace, user_id: str, session_id: str
) -> list[dict]:
    """A session's stored messages, oldest first, as the JSON dicts LangChain writes
    (`{"type": ..., "data": {...}}`), without importing LangChain. Does not refresh the TTL."""
    import json

    raw = client.lrange(keys.messages(user_id, session_id), 0, -1)
    out = []
    for item in reversed(raw):
        try:
            out.append(json.loads(item))
        except json.JSONDecodeError:
            continue
    return out
