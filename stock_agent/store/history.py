"""Session history: a LangChain `BaseChatMessageHistory` on one Redis list per session.

- Sliding TTL: reading and writing both refresh it (and the session's entry in the user's index).
- Bounded: at most `window` messages are kept and returned, cut only where a human message
  starts, so an assistant message with tool calls is never separated from its tool results.
- Cheap: a read is one pipelined round trip; saving a turn is one atomic script call.
- Explicit: the agent reads a turn's memory once (`SessionStore.read_turn`: history and
  profile together) and saves once (`SessionStore.save_turn`), where a failure can be seen.
  A history made with `preloaded` messages does no I/O at all: `messages` returns them and
  `add_messages` only collects, so the LangChain wrapper's end-of-run callback (whose errors
  LangChain swallows) never writes.
- Contained: a stored entry that does not decode is skipped with one warning; the rest loads.
- Async too: `aget_messages` / `aadd_messages` (and `asave`) run the same commands on the
  `redis.asyncio` client (a cluster client on a cluster); the commands and the decoding are
  shared with the sync methods, so the two cannot drift apart.
- Interoperable: same encoding and order as `langchain_community`'s `RedisChatMessageHistory`
  (LPUSH of `json.dumps(message_to_dict(m))`, newest first), so either reads the other's data.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from stock_agent.store.keys import KeySpace

log = logging.getLogger(__name__)

# KEYS[1] = messages list, KEYS[2] = the user's session index, KEYS[3] = the session's usage,
# KEYS[4] = the user's usage of the day
# ARGV[1] = ttl, ARGV[2] = window, ARGV[3] = now, ARGV[4] = session id,
# ARGV[5] = "1" when the last message has an id, ARGV[6..9] = the turn's usage (tokens in,
# tokens out, cost or "", model; tokens in "" when the turn carries none), ARGV[10..] =
# messages, oldest first
_APPEND_TURN = """
local key, index, usage, day = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, window, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- A call retried after its reply was lost (retry on timeout) finds its last message, which
-- carries a unique id, already on top: the turn is not appended (or counted) twice.
if not (ARGV[5] == '1' and redis.call('LINDEX', key, 0) == ARGV[#ARGV]) then
  for i = 10, #ARGV do redis.call('LPUSH', key, ARGV[i]) end
  if ARGV[6] ~= '' then
    local model = ARGV[9]
    redis.call('HINCRBY', usage, 'turns', 1)
    redis.call('HINCRBY', usage, 'in', ARGV[6])
    redis.call('HINCRBY', usage, 'out', ARGV[7])
    redis.call('HINCRBY', day, 'turns|' .. model, 1)
    redis.call('HINCRBY', day, 'in|' .. model, ARGV[6])
    redis.call('HINCRBY', day, 'out|' .. model, ARGV[7])
    if ARGV[8] == '' then
      redis.call('HINCRBY', usage, 'unpriced', 1)
      redis.call('HINCRBY', day, 'unpriced|' .. model, 1)
    else
      redis.call('HINCRBYFLOAT', usage, 'cost', ARGV[8])
      redis.call('HINCRBYFLOAT', day, 'cost|' .. model, ARGV[8])
    end
  end
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
redis.call('EXPIRE', usage, ttl)
redis.call('ZADD', index, now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now - ttl))
redis.call('EXPIRE', index, ttl)
return n
"""


def encode(message: BaseMessage) -> str:
    return json.dumps(message_to_dict(message))


def usage_args(message: BaseMessage) -> list[str]:
    """The save script's usage arguments from a turn's last message: the tokens, cost and
    model the agent put on its answer (`usage_metadata`, `response_metadata`), or blanks for
    a message that carries none (it is stored, not counted)."""
    from stock_agent.core.usage import MAX_TOKENS_PER_TURN

    usage = getattr(message, "usage_metadata", None)
    meta = getattr(message, "response_metadata", None) or {}
    model = meta.get("model_name")
    if not usage or not isinstance(model, str) or not model or len(model) > 200:
        return ["", "", "", ""]
    counts = [usage.get("input_tokens"), usage.get("output_tokens")]
    if not all(isinstance(c, int) and 0 <= c <= MAX_TOKENS_PER_TURN for c in counts):
        return ["", "", "", ""]
    cost = meta.get("cost_usd")
    priced = isinstance(cost, int | float) and not isinstance(cost, bool) and 0 <= cost < 1e9
    return [str(counts[0]), str(counts[1]), repr(float(cost)) if priced else "", model]  # type: ignore[arg-type]


def trim_to_turn_start(messages: list[BaseMessage]) -> list[BaseMessage]:
    """Drop leading messages until the first human message (a window must start a turn)."""
    for i, message in enumerate(messages):
        if message.type == "human":
            return messages[i:]
    return []


def decode_entry(item: str | bytes) -> BaseMessage:
    """One stored item as a message; ValueError (or another error) when it is not one."""
    decoded = json.loads(item)
    if not isinstance(decoded, dict):
        raise ValueError("not a message object")
    return messages_from_dict([decoded])[0]


def is_readable(item: str | bytes) -> bool:
    """Whether `decode_messages` keeps `item` (`doctor --repair` removes the others)."""
    try:
        decode_entry(item)
    except Exception:
        return False
    return True


def decode_messages(raw: Sequence[str], key: str) -> list[BaseMessage]:
    """Stored items (newest first, as LPUSH leaves them) as messages, oldest first. An item
    that is not a message (corrupt JSON, an unknown type, a bare string) is skipped with one
    warning naming the key, so one bad entry never locks a user out of a session."""
    messages: list[BaseMessage] = []
    skipped = 0
    for item in reversed(raw):
        try:
            messages.append(decode_entry(item))
        except Exception:  # any malformed entry: contained, counted, reported once
            skipped += 1
    if skipped:
        log.warning(
            "skipped %d unreadable message(s) in %s (`stock-agent doctor --repair` removes them)",
            skipped,
            key,
        )
    return messages


class SessionHistory(BaseChatMessageHistory):
    """One conversation's messages in Redis. Creating one does no I/O.

    With `preloaded` (the messages `SessionStore.read_turn` already read), `messages` returns
    them and `add_messages` collects into `pending` without writing: the caller saves."""

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
        preloaded: list[BaseMessage] | None = None,
        aclient: redis.asyncio.Redis | None = None,
    ) -> None:
        if window < 2:
            raise ValueError("window must hold at least one exchange (2 messages)")
        self.client = client
        self.user_id = user_id
        self.session_id = session_id
        self.key = keys.messages(user_id, session_id)  # validates both ids
        self.index_key = keys.sessions(user_id)
        self.usage_key = keys.session_usage(user_id, session_id)
        self.keys = keys
        self.ttl = ttl
        self.window = window
        self.clock = clock
        self.preloaded = preloaded
        self.pending: list[BaseMessage] = []
        # register_script only hashes the text (no I/O); the call uses EVALSHA, EVAL once if unknown
        self._append = client.register_script(_APPEND_TURN)
        self.aclient = aclient  # for the async methods (None: they fall back to the sync ones)

    def queue_read(self, pipe: Any) -> int:
        """Add this history's read (window, TTL slide, index slide) to `pipe`; returns how many
        replies it adds. The first reply is the raw list."""
        pipe.lrange(self.key, 0, self.window - 1)
        pipe.expire(self.key, self.ttl)
        pipe.expire(self.usage_key, self.ttl)
        pipe.zadd(self.index_key, {self.session_id: self.clock()}, xx=True)
        pipe.expire(self.index_key, self.ttl)
        return 5

    def decode(self, raw: Sequence[str]) -> list[BaseMessage]:
        decoded = decode_messages(raw, self.key)
        return trim_to_turn_start(decoded) if len(raw) >= self.window else decoded

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The last `window` messages, oldest first. One round trip that also slides the TTL
        (a refused TTL refresh, e.g. under `noeviction` with memory full, does not fail it)."""
        if self.preloaded is not None:
            return list(self.preloaded)
        pipe = self.client.pipeline(transaction=False)
        self.queue_read(pipe)
        replies = pipe.execute(raise_on_error=False)
        from stock_agent.store.errors import raise_reply

        raise_reply(replies[0], client=self.client, key=self.key)
        return self.decode(replies[0])

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append a turn atomically (append, trim at a turn boundary, TTL, index): one round trip.
        When the last message has an id, repeating the same call appends nothing (safe to retry).
        A preloaded history only collects the messages into `pending` (the caller saves)."""
        if not messages:
            return
        if self.preloaded is not None:
            self.pending.extend(messages)
            return
        self.save(messages)

    def _save_call(self, messages: Sequence[BaseMessage]) -> tuple[list[str], list[Any]]:
        """The save script's keys and arguments (shared by `save` and `asave`). The day is the
        local date of the save."""
        now = self.clock()
        day = time.strftime("%Y-%m-%d", time.localtime(now))
        return (
            [self.key, self.index_key, self.usage_key, self.keys.usage_day(self.user_id, day)],
            [
                self.ttl,
                self.window,
                repr(now),
                self.session_id,
                "1" if messages[-1].id else "0",
                *usage_args(messages[-1]),
                *(encode(m) for m in messages),
            ],
        )

    def save(self, messages: Sequence[BaseMessage]) -> None:
        """Write `messages` now (one script call); raises what Redis raises."""
        if not messages:
            return
        keys, args = self._save_call(messages)
        self._append(keys=keys, args=args)

    def _async_client(self) -> redis.asyncio.Redis:
        if self.aclient is None:
            raise RuntimeError("this history has no asyncio client")
        return self.aclient

    async def asave(self, messages: Sequence[BaseMessage]) -> None:
        """`save` on the asyncio client: the same script call, awaited."""
        if not messages:
            return
        script = self._async_client().register_script(_APPEND_TURN)
        keys, args = self._save_call(messages)
        await script(keys=keys, args=args)

    async def aget_messages(self) -> list[BaseMessage]:
        """`messages`, awaited: the same pipelined read on the asyncio client."""
        if self.preloaded is not None or self.aclient is None:
            return self.messages
        pipe = self.aclient.pipeline(transaction=False)
        self.queue_read(pipe)
        replies = await pipe.execute(raise_on_error=False)
        from stock_agent.store.errors import raise_reply

        raise_reply(replies[0], key=self.key)
        return self.decode(replies[0])

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """`add_messages`, awaited (a preloaded history only collects, as there)."""
        if not messages:
            return
        if self.preloaded is not None or self.aclient is None:
            self.add_messages(messages)
            return
        await self.asave(messages)

    def clear(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key, self.usage_key)
        pipe.zrem(self.index_key, self.session_id)
        pipe.execute()

    def ttl_left(self) -> int:
        """Seconds before this session expires (-2 if it does not exist). Does not refresh it."""
        return int(self.client.ttl(self.key))
