"""Session history: a LangChain `BaseChatMessageHistory` on one Redis list per session.

- Sliding TTL: reading and writing both refresh it (and the session's entry in the user's index).
- Bounded: at most `window` messages are kept and returned, cut only where a human message
  starts, so an assistant message with tool calls is never separated from its tool results.
- Cheap: a read is one pipelined round trip; saving a turn is one atomic script call.
- Interoperable: same encoding and order as `langchain_community`'s `RedisChatMessageHistory`
  (LPUSH of `json.dumps(message_to_dict(m))`, newest first), so either reads the other's data.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

if TYPE_CHECKING:
    import redis

    from stock_agent.store.keys import KeySpace

# KEYS[1] = messages list, KEYS[2] = the user's session index
# ARGV[1] = ttl, ARGV[2] = window, ARGV[3] = now, ARGV[4] = session id,
# ARGV[5] = "1" when the last message has an id, ARGV[6..] = messages, oldest first
_APPEND_TURN = """
local key, index = KEYS[1], KEYS[2]
local ttl, window, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- A call retried after its reply was lost (retry on timeout) finds its last message, which
-- carries a unique id, already on top: the turn is not appended twice.
if not (ARGV[5] == '1' and redis.call('LINDEX', key, 0) == ARGV[#ARGV]) then
  for i = 6, #ARGV do redis.call('LPUSH', key, ARGV[i]) end
end
local n = redis.call('LLEN', key)
local function is_human(item)
  local ok, m = pcall(cjson.decode, item)
  return ok and type(m) == 'table' and m['type'] == 'human'
end
if n > window then
  -- index 0 is the newest message; keep the k newest where message k-1 starts a turn
  local items = redis.call('LRANGE', key, 0, n - 1)
  local keep = 0
  for k = window, 1, -1 do
    if is_human(items[k]) then keep = k; break end
  end
  if keep == 0 then
    -- the latest turn alone is longer than the window: keep that turn whole rather than break it
    for k = window + 1, n do
      if is_human(items[k]) then keep = k; break end
    end
  end
  if keep == 0 then keep = window end
  redis.call('LTRIM', key, 0, keep - 1)
  n = keep
end
redis.call('EXPIRE', key, ttl)
redis.call('ZADD', index, now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now - ttl))
redis.call('EXPIRE', index, ttl)
return n
"""


def encode(message: BaseMessage) -> str:
    return json.dumps(message_to_dict(message))


def trim_to_turn_start(messages: list[BaseMessage]) -> list[BaseMessage]:
    """Drop leading messages until the first human message (a window must start a turn)."""
    for i, message in enumerate(messages):
        if message.type == "human":
            return messages[i:]
    return []


class SessionHistory(BaseChatMessageHistory):
    """One conversation's messages in Redis. Creating one does no I/O."""

    def __init__(
        self,
        client: redis.Redis,
        keys: KeySpace,
        user_id: str,
        session_id: str,
        *,
        ttl: int,
        window: int,
        clock: Callable[[], float] = time.time,
        profile_key: str | None = None,
    ) -> None:
        if window < 2:
            raise ValueError("window must hold at least one exchange (2 messages)")
        self.client = client
        self.user_id = user_id
        self.session_id = session_id
        self.key = keys.messages(user_id, session_id)  # validates both ids
        self.index_key = keys.sessions(user_id)
        self.ttl = ttl
        self.window = window
        self.clock = clock
        # With `profile_key`, a read also fetches the user's profile hash in the same round trip,
        # so the agent reads all of its memory once per turn (see `profile_fields`).
        self.profile_key = profile_key
        self.profile_fields: dict[str, str] | None = None
        # register_script only hashes the text (no I/O); the call uses EVALSHA, EVAL once if unknown
        self._append = client.register_script(_APPEND_TURN)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The last `window` messages, oldest first. One round trip that also slides the TTL."""
        pipe = self.client.pipeline(transaction=False)
        pipe.lrange(self.key, 0, self.window - 1)
        pipe.expire(self.key, self.ttl)
        pipe.zadd(self.index_key, {self.session_id: self.clock()}, xx=True)
        pipe.expire(self.index_key, self.ttl)
        if self.profile_key:
            pipe.hgetall(self.profile_key)
        replies = pipe.execute()
        raw = replies[0]
        if self.profile_key:
            self.profile_fields = replies[-1]
        decoded = messages_from_dict([json.loads(item) for item in reversed(raw)])
        return trim_to_turn_start(decoded) if len(raw) >= self.window else decoded

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append a turn atomically (append, trim at a turn boundary, TTL, index): one round trip.
        When the last message has an id, repeating the same call appends nothing (safe to retry)."""
        if not messages:
            return
        self._append(
            keys=[self.key, self.index_key],
            args=[
                self.ttl,
                self.window,
                repr(self.clock()),
                self.session_id,
                "1" if messages[-1].id else "0",
                *(encode(m) for m in messages),
            ],
        )

    def clear(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key)
        pipe.zrem(self.index_key, self.session_id)
        pipe.execute()

    def ttl_left(self) -> int:
        """Seconds before this session expires (-2 if it does not exist). Does not refresh it."""
        return int(self.client.ttl(self.key))
