"""A local OpenAI-compatible chat server that tests start and script.

The real `openai` / `langchain-openai` clients talk to it over loopback: a test queues the
model's replies, runs the code under test, then reads back what the client sent. It checks
requests the way the real service does (auth, the tool-call trail) so a broken history fails
here as it would in production.

    with ScriptedOpenAI() as server:
        server.queue(tool_call("get_quote", {"symbol": "AAPL"}), text("AAPL is at 190."))
        model = ChatOpenAI(base_url=server.base_url, api_key="test-key", model="test-model")
        ...
        assert server.requests[1]["messages"][-1]["role"] == "tool"
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "NO_REPLY_LEFT",
    "ChatRequest",
    "Reply",
    "ScriptedOpenAI",
    "ToolCall",
    "error",
    "iter_sse",
    "split_tokens",
    "text",
    "tool_call",
    "tool_calls",
    "validate_chat_body",
]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
NO_REPLY_LEFT = "no scripted reply left"


# --- replies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, exactly as the model would send it
    id: str | None = None  # None: the server numbers it (call_1, call_2, ...) when served


@dataclass(frozen=True)
class Reply:
    """One scripted model answer: assistant text, tool calls, or an HTTP error."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    status: int = 200
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


ReplyFn = Callable[[dict[str, Any]], Reply | str]
Scripted = Reply | str | ReplyFn


def text(content: str) -> Reply:
    """The assistant answers with `content`."""
    return Reply(content=content)


def tool_call(
    name: str, args: dict[str, Any] | str, id: str | None = None, *, content: str | None = None
) -> Reply:
    """The assistant calls one tool. `args` may be a dict or raw (even invalid) JSON text."""
    return tool_calls([(name, args, id)], content=content)


def tool_calls(
    calls: list[tuple[str, dict[str, Any] | str] | tuple[str, dict[str, Any] | str, str | None]],
    *,
    content: str | None = None,
) -> Reply:
    """The assistant calls several tools in one message (parallel tool calls)."""
    parsed = []
    for name, args, *rest in calls:
        arguments = args if isinstance(args, str) else json.dumps(args)
        parsed.append(ToolCall(name=name, arguments=arguments, id=rest[0] if rest else None))
    if not parsed:
        raise ValueError("tool_calls() needs at least one call")
    return Reply(content=content, tool_calls=tuple(parsed))


def error(status: int, message: str, *, type: str | None = None, code: str | None = None) -> Reply:
    """The service answers with an HTTP error in OpenAI's JSON shape.

    Note the `openai` client retries 408, 409, 429 and 5xx itself (twice by default) unless the
    client was built with `max_retries=0`; each retry consumes the next scripted reply.
    """
    if status == 429:  # what the real service sends for a rate limit
        type, code = type or "requests", code or "rate_limit_exceeded"
    default_type = "invalid_request_error" if status < 500 else "server_error"
    return Reply(
        status=status, error_message=message, error_type=type or default_type, error_code=code
    )


def split_tokens(content: str) -> list[str]:
    """Cut text into small pieces (a word or up to 4 letters of one) the way tokens stream."""
    return re.findall(r"\s*\S{1,4}|\s+", content)


# --- records -------------------------------------------------------------------------------


@dataclass
class ChatRequest:
    """What one request to the server was and how it was answered."""

    method: str
    path: str
    body: dict[str, Any] | None
    headers: dict[str, str]
    status: int = 0
    rejected: bool = False  # refused by the server itself (auth, validation, empty script)
    error: str | None = None
    reply: Reply | None = None
    stream: bool = False
    interrupted: bool = False  # the client went away mid-stream (e.g. Ctrl-C)
    chunks_sent: int = 0


@dataclass
class _Refusal(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


# --- request checks ------------------------------------------------------------------------

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _masked(key: str) -> str:
    return key[:2] + "*" * max(len(key) - 4, 0) + key[-2:] if len(key) > 4 else "*" * len(key)


def validate_chat_body(body: Any) -> None:
    """Refuse a request the real service refuses (the subset that matters for an agent)."""
    if not isinstance(body, dict):
        raise _Refusal(400, "We could not parse the JSON body of your request.")
    if not body.get("model"):
        raise _Refusal(400, "Missing required parameter: 'model'.", param="model")
    if "messages" not in body:
        raise _Refusal(400, "Missing required parameter: 'messages'.", param="messages")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _Refusal(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    pending: list[str] | None = None  # call ids of the last assistant message still unanswered
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            raise _Refusal(
                400,
                f"Invalid value: {role!r}. Supported values are: {sorted(_ROLES)}.",
                param=f"messages.[{i}].role",
            )
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not call_id:
                raise _Refusal(
                    400,
                    "Missing parameter 'tool_call_id': messages with role 'tool' must have "
                    "a 'tool_call_id'.",
                    param=f"messages.[{i}].tool_call_id",
                )
            if pending is None or call_id not in pending:
                # Spelling ("preceeding") as the real service has it.
                raise _Refusal(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param="messages",
                )
            pending.remove(call_id)
            continue
        if pending:
            raise _missing_tool_responses(pending)
        pending = None
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if message.get("content") is None and not calls and not message.get("function_call"):
                raise _Refusal(
                    400,
                    "Invalid value for 'content': expected a string, got null.",
                    param=f"messages.[{i}].content",
                )
            if calls:
                pending = [call.get("id") for call in calls]
    if pending:
        raise _missing_tool_responses(pending)


def _missing_tool_responses(ids: list[str]) -> _Refusal:
    return _Refusal(
        400,
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(ids),
        param="messages",
    )


# --- the server ----------------------------------------------------------------------------


class ScriptedOpenAI:
    """An OpenAI-compatible chat server on 127.0.0.1 answering from a queue of scripted replies.

    Thread-safe: the script and the records are guarded by one lock, so a test may queue
    replies while a client (or a subprocess) is talking to the server.
    """

    def __init__(
        self,
        api_key: str | None = "test-key",
        *,
        chunk_delay: float = 0.0,
        models: tuple[str, ...] = ("test-model",),
        forever: Scripted | None = None,
    ) -> None:
        self.api_key = api_key
        self.forever = forever  # the reply once the queue is empty (None: a 500 says so)
        self.chunk_delay = chunk_delay  # seconds slept before each streamed chunk
        self.models = models
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0  # requests being answered right now
        self._connections: set[socket.socket] = set()
        self._script: list[Scripted] = []
        self._records: list[ChatRequest] = []
        self._used = 0  # replies consumed so far
        self._call_numbers = itertools.count(1)
        self._response_numbers = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> ScriptedOpenAI:
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"server_model": self})
        self._httpd = _QuietHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # so stop() is quick
            name="scripted-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        # Keep-alive connections would otherwise go on being served after stop().
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ScriptedOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the scripted OpenAI server is not running; call start()")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # script

    def queue(self, *replies: Scripted) -> None:
        """Append replies, consumed one per chat request in order.

        A reply is a `Reply` (see `text`, `tool_call`, `tool_calls`, `error`), a plain string
        (shorthand for `text`), or a function of the request body returning either.
        """
        for reply in replies:
            if not isinstance(reply, (Reply, str)) and not callable(reply):
                raise TypeError(f"not a scripted reply: {reply!r}")
        with self._lock:
            self._script.extend(replies)

    @property
    def unused(self) -> int:
        """How many queued replies no request has consumed yet."""
        with self._lock:
            return len(self._script)

    def clear(self) -> None:
        """Forget the script and the records (for reuse across tests)."""
        with self._lock:
            self._script.clear()
            self._records.clear()
            self._used = 0

    # records

    @property
    def records(self) -> list[ChatRequest]:
        """Every request received, in order, with how it was answered."""
        with self._lock:
            return list(self._records)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat-completion requests received, in order (refused ones too)."""
        with self._lock:
            return [r.body for r in self._records if r.path == CHAT_PATH and r.body is not None]

    @property
    def rejected(self) -> list[ChatRequest]:
        """Requests the server refused itself: bad key, invalid history, nothing scripted."""
        with self._lock:
            return [r for r in self._records if r.rejected]

    def reported_usage(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens) the server reported, summed over the chat requests
        it answered with a reply whose stream ran to the end (what a client could count)."""
        with self._lock:
            served = [
                r
                for r in self._records
                if r.path == CHAT_PATH and r.status == 200 and r.reply is not None
                and r.body is not None and not r.interrupted
            ]  # fmt: skip
        usages = [_usage(r.body, r.reply) for r in served if r.body and r.reply]
        return sum(u["prompt_tokens"] for u in usages), sum(u["completion_tokens"] for u in usages)

    def last_request(self) -> dict[str, Any]:
        requests = self.requests
        if not requests:
            raise AssertionError("the scripted OpenAI server received no chat request")
        return requests[-1]

    def last_messages(self) -> list[dict[str, Any]]:
        return self.last_request()["messages"]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being answered (e.g. a stream the client broke off)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    # used by the handler

    def _begin(self) -> None:
        with self._lock:
            self._active += 1

    def _end(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def _record(self, record: ChatRequest) -> None:
        with self._lock:
            self._records.append(record)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if not self._script and self.forever is not None:
                self._script.append(self.forever)
            if not self._script:
                raise _Refusal(
                    500,
                    f"{NO_REPLY_LEFT}: all {self._used} queued replies were used, "
                    f"so there is none for chat request {self._used + 1}",
                    type="server_error",
                    code="no_scripted_reply",
                    headers={"x-should-retry": "false"},
                )
            scripted = self._script.pop(0)
            self._used += 1
        reply = scripted(body) if callable(scripted) else scripted
        if isinstance(reply, str):
            reply = text(reply)
        if not isinstance(reply, Reply):
            raise TypeError(f"a scripted reply function returned {reply!r}, not a Reply")
        if any(call.id is None for call in reply.tool_calls):
            with self._lock:
                numbered = tuple(
                    call if call.id else replace(call, id=f"call_{next(self._call_numbers)}")
                    for call in reply.tool_calls
                )
            reply = replace(reply, tool_calls=numbered)
        return reply

    def _completion_id(self) -> str:
        with self._lock:
            return f"chatcmpl-scripted{next(self._response_numbers)}"


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """Fake but consistent token counts: about one token per four characters."""
    prompt = max(1, len(json.dumps(body.get("messages", []))) // 4)
    produced = len(reply.content or "") + sum(
        len(c.name) + len(c.arguments) for c in reply.tool_calls
    )
    completion = max(1, produced // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _argument_fragments(arguments: str) -> list[str]:
    size = 6
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients drop idle keep-alive connections and stop() cuts them: not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_model: ScriptedOpenAI  # set on the subclass made by ScriptedOpenAI.start()
    protocol_version = "HTTP/1.1"  # keep-alive, as the real service; streams use chunked encoding
    timeout = 60  # an idle keep-alive connection does not hold a thread forever

    def setup(self) -> None:
        super().setup()
        with self.server_model._lock:
            self.server_model._connections.add(self.connection)

    def finish(self) -> None:
        with self.server_model._lock:
            self.server_model._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
        pass

    # routing

    def do_GET(self) -> None:
        self.server_model._begin()
        try:
            self._get()
        finally:
            self.server_model._end()

    def do_POST(self) -> None:
        self.server_model._begin()
        try:
            self._post()
        finally:
            self.server_model._end()

    def _new_record(self, body: dict[str, Any] | None) -> ChatRequest:
        # Recorded before answering, so a test that has seen the answer also sees the request.
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = ChatRequest(self.command, self.path, body, headers)
        self.server_model._record(record)
        return record

    def _get(self) -> None:
        record = self._new_record(None)
        try:
            self._check_auth()
            if self.path.rstrip("/") != MODELS_PATH:
                raise _Refusal(404, f"Invalid URL (GET {self.path})")
        except _Refusal as refusal:
            self._refuse(record, refusal)
            return
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "stock-agent-tests"}
            for m in self.server_model.models
        ]
        record.status = 200
        self._send_json(200, {"object": "list", "data": data})

    def _post(self) -> None:
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = self._new_record(body)
        try:
            self._check_auth()
            if self.path != CHAT_PATH:
                raise _Refusal(404, f"Invalid URL (POST {self.path})")
            validate_chat_body(body)
            assert isinstance(body, dict)
            record.stream = bool(body.get("stream"))
            reply = self.server_model._next_reply(body)
        except _Refusal as refusal:
            self._refuse(record, refusal)
            return
        except Exception as exc:  # a scripted reply function failed: fail loudly, not silently
            refusal = _Refusal(
                500,
                f"scripted reply raised {exc!r}",
                type="server_error",
                headers={"x-should-retry": "false"},
            )
            self._refuse(record, refusal)
            return
        record.reply = reply
        if reply.is_error:
            record.status = reply.status
            record.error = reply.error_message
            self._send_error(
                reply.status, reply.error_message or "", reply.error_type, None, reply.error_code
            )
        elif record.stream:
            record.status = 200
            self._stream(body, reply, record)
        else:
            record.status = 200
            self._complete(body, reply, record)

    # answers

    def _complete(self, body: dict[str, Any], reply: Reply, record: ChatRequest) -> None:
        delay = self.server_model.chunk_delay
        if delay:
            time.sleep(delay * max(1, len(split_tokens(reply.content or ""))))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.content,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in reply.tool_calls
            ]
        self._send_json(
            200,
            {
                "id": self.server_model._completion_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": _usage(body, reply),
                "service_tier": "default",
                "system_fingerprint": "fp_scripted",
            },
        )

    def _stream(self, body: dict[str, Any], reply: Reply, record: ChatRequest) -> None:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": self.server_model._completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "service_tier": "default",
            "system_fingerprint": "fp_scripted",
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            out = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                out["usage"] = None
            return out

        chunks: list[dict[str, Any]] = []
        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        if reply.tool_calls and not reply.content:
            first["content"] = None
        chunks.append(chunk(first))
        chunks.extend(chunk({"content": piece}) for piece in split_tokens(reply.content or ""))
        for index, call in enumerate(reply.tool_calls):
            # The first delta of a call names it; the arguments follow in fragments.
            opening = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            chunks.append(chunk({"tool_calls": [opening]}))
            chunks.extend(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in _argument_fragments(call.arguments)
            )
        chunks.append(chunk({}, reply.finish_reason))
        if include_usage:
            chunks.append({**base, "choices": [], "usage": _usage(body, reply)})

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        delay = self.server_model.chunk_delay
        try:
            for item in chunks:
                if delay:
                    time.sleep(delay)
                self._write_chunk(f"data: {json.dumps(item)}\n\n".encode())
                record.chunks_sent += 1
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            record.interrupted = True
            self.close_connection = True

    # plumbing

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _check_auth(self) -> None:
        expected = self.server_model.api_key
        if expected is None:
            return
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _Refusal(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        if given.strip() != expected:
            raise _Refusal(
                401,
                f"Incorrect API key provided: {_masked(given.strip())}. You can find your API "
                "key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def _refuse(self, record: ChatRequest, refusal: _Refusal) -> None:
        record.status = refusal.status
        record.rejected = True
        record.error = refusal.message
        self._send_error(
            refusal.status,
            refusal.message,
            refusal.type,
            refusal.param,
            refusal.code,
            refusal.headers,
        )

    def _send_error(
        self,
        status: int,
        message: str,
        type_: str | None,
        param: str | None,
        code: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self._send_json(status, payload, headers)

    def _send_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_scripted_{id(self):x}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def iter_sse(raw: bytes) -> Iterator[dict[str, Any]]:
    """Parse an SSE body from this server (handy for raw-HTTP tests)."""
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line[len("data: ") :])


# --- in its own process ----------------------------------------------------------------------


def echo_reply(body: dict[str, Any]) -> Reply:
    """`re: <the last user message>`: a reply any number of users can be scripted with."""
    last = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    return text(f"re: {last}")


class EchoServerProcess:
    """A `ScriptedOpenAI` that answers every request with `echo_reply`, run in its own Python
    process, so its request handling does not share the test process's interpreter lock (as a
    real model server would not): for measuring what the app's own event loop does.

    `requests` (after `stop()`) are the request bodies it received, in order."""

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> EchoServerProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.openai_server", "--echo", "--api-key", self.api_key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # "listening <base url>", or EOF if it failed
        if not line.startswith("listening "):
            self._proc.kill()
            raise RuntimeError(f"the echo model server did not start: {line!r}")
        self.base_url = line.split()[1]
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            out, _ = proc.communicate("", timeout=60)  # closing stdin makes it dump and exit
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        self.requests = json.loads(out or "[]")

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve_echo(api_key: str) -> None:
    with ScriptedOpenAI(api_key=api_key, forever=echo_reply) as server:
        print(f"listening {server.base_url}", flush=True)
        sys.stdin.read()  # until the test closes it
        print(json.dumps(server.requests), flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--echo", action="store_true", required=True)
    parser.add_argument("--api-key", default="test-key")
    _serve_echo(parser.parse_args().api_key)
