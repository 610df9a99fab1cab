"""Client-side instruments: what redis-py puts on the wire, the time spent in chat-history
methods, and an instant chat model that records what it is sent.

Round trips are counted where redis-py writes to the socket: every `send_packed_command` is
followed by reading the replies, so one call is one round trip (a pipeline is one call, each
command of the connection handshake is one call, a health-check PING is one call).
Counting is process-wide (LangChain reads the history on a worker thread), so it is only
switched on around code that runs alone.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class WireCount:
    round_trips: int = 0
    commands: int = 0  # commands the client sent (a pipeline's count each)
    connects: int = 0
    io_seconds: float = 0.0  # inside socket writes and reply reads (and connecting)
    history_seconds: float = 0.0  # inside history construction, load and save


class WireCounter:
    """Patches redis-py's connection class for the duration of `installed()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: WireCount | None = None

    def _add(self, **changes: float) -> None:
        with self._lock:
            count = self._active
            if count is None:
                return
            for name, value in changes.items():
                setattr(count, name, getattr(count, name) + value)

    @contextmanager
    def installed(self) -> Iterator[WireCounter]:
        from redis.connection import AbstractConnection

        originals = {
            name: AbstractConnection.__dict__[name]
            for name in (
                "send_packed_command",
                "send_command",
                "pack_commands",
                "read_response",
                "connect_check_health",
            )
        }
        counter = self
        send, read, connect = (
            originals["send_packed_command"],
            originals["read_response"],
            originals["connect_check_health"],
        )
        send_one, pack_many = originals["send_command"], originals["pack_commands"]
        depth = threading.local()  # time only the outermost call (connecting sends commands)

        def timed_io(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            level = getattr(depth, "level", 0)
            depth.level = level + 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                depth.level = level
                if level == 0:
                    counter._add(io_seconds=time.perf_counter() - started)

        def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
            counter._add(round_trips=1)
            # a health-check PING inside is a round trip of its own (it calls this again)
            return timed_io(send, self, command, check_health)

        def send_command(self: Any, *args: Any, **kwargs: Any) -> None:
            counter._add(commands=1)
            return send_one(self, *args, **kwargs)

        def pack_commands(self: Any, commands: Any) -> Any:
            commands = list(commands)
            counter._add(commands=len(commands))  # a pipeline, sent by one send_packed_command
            return pack_many(self, commands)

        def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
            return timed_io(read, self, *args, **kwargs)

        def connect_check_health(self: Any, *args: Any, **kwargs: Any) -> Any:
            fresh = self._sock is None
            try:
                return timed_io(connect, self, *args, **kwargs)
            finally:
                if fresh and self._sock is not None:
                    counter._add(connects=1)

        patched = {
            "send_packed_command": send_packed_command,
            "send_command": send_command,
            "pack_commands": pack_commands,
            "read_response": read_response,
            "connect_check_health": connect_check_health,
        }
        for name, function in patched.items():
            setattr(AbstractConnection, name, function)
        try:
            yield self
        finally:
            for name, original in originals.items():
                setattr(AbstractConnection, name, original)

    @contextmanager
    def measure(self) -> Iterator[WireCount]:
        count = WireCount()
        with self._lock:
            if self._active is not None:
                raise RuntimeError("measurements cannot nest")
            self._active = count
        try:
            yield count
        finally:
            with self._lock:
                self._active = None

    def add_history_time(self, seconds: float) -> None:
        self._add(history_seconds=seconds)


@contextmanager
def history_timing(counter: WireCounter, classes: list[type]) -> Iterator[None]:
    """Time each class's `messages` (load) and `add_messages` (save) into the counter."""
    saved: list[tuple[type, str, Any, bool]] = []

    def timed(function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                counter.add_history_time(time.perf_counter() - started)

        return wrapper

    for cls in classes:
        prop = getattr(cls, "messages")  # noqa: B009 - the property object, not its value
        own_prop = "messages" in cls.__dict__
        saved.append((cls, "messages", cls.__dict__.get("messages"), own_prop))
        setattr(cls, "messages", property(timed(prop.fget)))  # noqa: B010
        own_add = "add_messages" in cls.__dict__
        saved.append((cls, "add_messages", cls.__dict__.get("add_messages"), own_add))
        setattr(cls, "add_messages", timed(getattr(cls, "add_messages")))  # noqa: B009, B010
    try:
        yield
    finally:
        for cls, name, original, owned in reversed(saved):
            if owned:
                setattr(cls, name, original)
            else:
                delattr(cls, name)


def timed_factory(counter: WireCounter, factory: Callable[..., Any]) -> Callable[..., Any]:
    """The history factory, with the time it takes (the baseline connects here) counted.
    `functools.wraps` keeps the signature: the wrapper reads the factory's parameter names."""

    @functools.wraps(factory)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return factory(*args, **kwargs)
        finally:
            counter.add_history_time(time.perf_counter() - started)

    return wrapper


# -- the instant model ------------------------------------------------------------------------


def make_instant_model(on_call: Callable[[list[Any]], None] | None = None) -> Any:
    """A LangChain chat model that answers at once with `ok: <the user's last message>` and
    calls `on_call(messages)` with what it was sent. It accepts tools (and never calls one),
    and reports token usage as a real one does (about four characters a token)."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from pydantic import PrivateAttr

    class InstantChatModel(BaseChatModel):
        _on_call: Any = PrivateAttr(default=None)

        @property
        def _llm_type(self) -> str:
            return "bench-instant"

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        def _generate(
            self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> ChatResult:
            if self._on_call is not None:
                self._on_call(list(messages))
            last = next((m for m in reversed(messages) if m.type == "human"), None)
            text = f"ok: {last.text if last is not None else ''}"
            sent = sum(len(str(m.content)) for m in messages)
            reply = AIMessage(
                content=text,
                usage_metadata={
                    "input_tokens": sent // 4 + 1,
                    "output_tokens": len(text) // 4 + 1,
                    "total_tokens": sent // 4 + len(text) // 4 + 2,
                },
            )
            return ChatResult(generations=[ChatGeneration(message=reply)])

    model = InstantChatModel()
    model._on_call = on_call
    return model


def message_chars(messages: list[Any]) -> int:
    """Characters of text the model is sent: every message's content (and tool-call arguments)."""
    total = 0
    for message in messages:
        content = message.content
        if isinstance(content, str):
            total += len(content)
        else:
            total += sum(len(str(part)) for part in content)
        for call in getattr(message, "tool_calls", None) or []:
            total += len(str(call.get("args", "")))
    return total
