"""Redis error replies as errors a person can act on: one place that tells a wrong-type key, an
ACL denial, a full server, a read-only replica, a loading or a non-persisting server apart,
names the key or command involved and says what fixes it.

Without this they all read as "cannot reach Redis" or a raw `ResponseError`. Every text relayed
from Redis passes `scrub_secrets` with the connection's password, so none is ever printed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stock_agent.errors import ExitStatus, StockAgentError, StoreUnavailable
from stock_agent.sanitize import scrub_secrets

if TYPE_CHECKING:
    import redis

    from stock_agent.store.keys import KeySpace

_TYPE_NAMES = {
    "string": "a string",
    "hash": "a hash",
    "list": "a list",
    "set": "a set",
    "zset": "a sorted set",
    "stream": "a stream",
    "ReJSON-RL": "a JSON document",
}
_RUN_COMMAND = re.compile(r"permissions to run the '([^']+)' command")


def type_name(redis_type: str | None) -> str:
    """`zset` -> "a sorted set" (for messages)."""
    if redis_type is None:
        return "a value of another type"
    return _TYPE_NAMES.get(redis_type, f"a {redis_type}")


class StoreError(StockAgentError):
    """Redis answered, but refused or could not do what was asked (see the subclasses)."""

    exit_code = ExitStatus.STORE


class WrongTypeKey(StoreError):
    """A key of this app holds another Redis type than the one the app writes (damaged data)."""

    def __init__(self, key: str, found: str | None, expected: str, fix: str) -> None:
        super().__init__(f"{key} holds {type_name(found)}, not {type_name(expected)}", fix=fix)
        self.key = key
        self.found = found
        self.expected = expected


class PermissionDenied(StoreError):
    """The Redis user may not run a command or touch a key (ACL)."""


class StoreFull(StoreUnavailable, StoreError):
    """`OOM`: used memory is over `maxmemory` and the policy refuses writes."""


class StoreReadOnly(StoreUnavailable, StoreError):
    """`READONLY`: connected to a replica."""


class StoreUnwell(StoreUnavailable, StoreError):
    """`LOADING` (still reading its data) or `MISCONF` (cannot persist): alive, not writable."""


def repair_fix(keys: KeySpace | None, key: str) -> str:
    """The command that repairs damaged `key`."""
    if keys is not None and keys.kind_of(key) == "cache":
        return "run `stock-agent cache clear` (it deletes cached results only)"
    user = None
    if keys is not None and (found := keys.split(key)) is not None:
        user = found[0]
    command = (
        f"stock-agent doctor --repair --user {user}" if user else "stock-agent doctor --repair"
    )
    return f"run `{command}`: it sets the key aside for 7 days and rebuilds what it can"


def _connection_kwargs(client: Any) -> dict[str, Any]:
    """How `client` logs in (a cluster client keeps it in its nodes manager)."""
    holder = getattr(client, "connection_pool", None) or getattr(client, "nodes_manager", None)
    kwargs: dict[str, Any] = getattr(holder, "connection_kwargs", {})
    return kwargs


def redis_user(client: redis.Redis | None) -> str:
    """The Redis user the client logs in as (`default` without one)."""
    if client is None:
        return "default"
    kwargs = _connection_kwargs(client)
    return str(kwargs.get("username") or "default")


def redis_secrets(client: redis.Redis | None) -> list[str]:
    """What must never appear in a message relayed from this client's server."""
    if client is None:
        return []
    kwargs = _connection_kwargs(client)
    password = kwargs.get("password")
    return [str(password)] if password else []


def relay(text: object, client: redis.Redis | None = None) -> str:
    """Text from Redis (an error reply) safe to print: no password, no credential-like parts."""
    return scrub_secrets(str(text), redis_secrets(client))


def key_type(client: redis.Redis | None, key: str) -> str | None:
    """`TYPE key`, or None when that fails too (only used on an error path)."""
    if client is None:
        return None
    try:
        return str(client.type(key))
    except Exception:  # best effort: the error being explained matters more
        return None


def wrong_type(
    client: redis.Redis | None, keys: KeySpace | None, key: str, found: str | None = None
) -> WrongTypeKey:
    expected = keys.expected_type(key) if keys is not None else None
    if expected is None:  # no KeySpace at hand: the key's last part says what it is
        expected = {"messages": "list", "sessions": "zset"}.get(key.rpartition(":")[2], "hash")
    if found is None:
        found = key_type(client, key)
    return WrongTypeKey(key, found, expected, fix=repair_fix(keys, key))


def permission_denied(
    client: redis.Redis | None,
    message: str,
    *,
    key: str | None = None,
    keys: KeySpace | None = None,
) -> PermissionDenied:
    user = redis_user(client)
    command = _RUN_COMMAND.search(message)
    if command:
        name = command.group(1)
        shown = name.replace("|", " ").upper()
        return PermissionDenied(
            f"Redis user {user!r} may not run {shown} (ACL)",
            fix=f"grant it (`ACL SETUSER {user} +{name.lower()}`), or use a Redis user that may",
        )
    pattern = keys.acl_pattern() if keys is not None else "agent:memory:*"
    target = key or pattern
    return PermissionDenied(
        f"Redis user {user!r} may not access {target} (ACL)",
        fix=f"grant the key pattern (`ACL SETUSER {user} ~{pattern}`), or use a Redis user that may",
    )


def _memory_limit(client: redis.Redis | None) -> tuple[str, str]:
    """(maxmemory, policy) as the server reports them, for the message of a refused write."""
    if client is None:
        return "?", "?"
    try:
        info: dict[str, Any] = client.info("memory")
    except Exception:
        return "?", "?"
    limit = info.get("maxmemory_human") or str(info.get("maxmemory", "?"))
    return str(limit), str(info.get("maxmemory_policy", "?"))


def classify(
    exc: BaseException,
    *,
    client: redis.Redis | None = None,
    key: str | None = None,
    keys: KeySpace | None = None,
) -> StockAgentError | None:
    """The typed error for a Redis error reply, or None when it is none of the kinds above
    (a connection failure, a timeout: the caller's usual handling applies). `key` is the key
    the failed command was about, when there was one; `client` lets the message name the
    key's actual type, the memory limit and the Redis user (extra round trips on this error
    path only)."""
    import redis

    if isinstance(exc, StockAgentError):
        return exc
    text = relay(exc, client)
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return permission_denied(client, text, key=key, keys=keys)
    if isinstance(exc, redis.OutOfMemoryError):
        limit, policy = _memory_limit(client)
        return StoreFull(
            f"Redis is out of memory: used memory is over maxmemory {limit} and "
            f"maxmemory-policy {policy} refuses writes",
            fix="raise maxmemory (`CONFIG SET maxmemory 1gb`), free space "
            "(`stock-agent cache clear`), or use maxmemory-policy volatile-lru "
            "(it evicts only keys with a TTL: never profiles)",
        )
    if isinstance(exc, redis.ReadOnlyError):
        return StoreReadOnly(
            f"Redis refused a write: the server is a read-only replica ({text})",
            fix="point REDIS_URL at the primary",
        )
    if isinstance(exc, redis.BusyLoadingError):
        return StoreUnwell(
            "Redis is loading its data into memory and answers nothing else yet",
            fix="try again in a moment",
        )
    if isinstance(exc, redis.ResponseError):
        if "NOPERM" in text or "no permissions" in text.lower():  # e.g. from inside a script
            return permission_denied(client, text, key=key, keys=keys)
        if "WRONGTYPE" in text:
            if key is not None:
                return wrong_type(client, keys, key)
            return StoreError(
                f"a key of stock-agent holds the wrong kind of value ({text})",
                fix="run `stock-agent doctor --repair`",
            )
        if text.startswith("MISCONF") or "MISCONF" in text:
            return StoreUnwell(
                "Redis cannot save to disk (MISCONF) and refuses writes until it can",
                fix="free disk space where the server keeps its data, or fix its `dir` "
                "setting; then writes resume",
            )
    return None


def is_wrong_type(reply: object) -> bool:
    """True for a WRONGTYPE error reply (e.g. in a pipeline run with raise_on_error=False)."""
    import redis

    return isinstance(reply, redis.ResponseError) and "WRONGTYPE" in str(reply)


def raise_reply(
    reply: object,
    *,
    client: redis.Redis | None = None,
    key: str | None = None,
    keys: KeySpace | None = None,
) -> None:
    """Raise the typed error for `reply` if it is an error reply (else return)."""
    if isinstance(reply, BaseException):
        raise classify(reply, client=client, key=key, keys=keys) or reply


@contextlib.contextmanager
def translated(
    client: redis.Redis | None = None,
    *,
    key: str | None = None,
    keys: KeySpace | None = None,
) -> Iterator[None]:
    """Redis errors of the kinds above, raised inside the block, become their typed errors."""
    import redis

    try:
        yield
    except redis.RedisError as exc:
        typed = classify(exc, client=client, key=key, keys=keys)
        if typed is None:
            raise
        raise typed from exc
