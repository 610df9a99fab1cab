"""The scripted OpenAI server, exercised with the real `openai` and `langchain-openai` clients."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.openai_server import (
    NO_REPLY_LEFT,
    ScriptedOpenAI,
    error,
    iter_sse,
    split_tokens,
    text,
    tool_call,
    tool_calls,
)


@pytest.fixture
def server() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


def chat_model(server: ScriptedOpenAI, **kwargs: Any) -> ChatOpenAI:
    options: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": "test-key",
        "model": "test-model",
        "max_retries": 0,
    }
    return ChatOpenAI(**{**options, **kwargs})


@tool
def get_quote(symbol: str) -> str:
    """Return the last price of a stock symbol."""
    return f"{symbol} last 190.12 USD"


def post(server: ScriptedOpenAI, body: Any, key: str | None = "test-key") -> tuple[int, bytes]:
    """A raw HTTP request, to see the exact bytes the server sends."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def merged(chunks: list[Any]) -> Any:
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    return full


# --- langchain-openai ----------------------------------------------------------------------


def test_invoke_returns_the_scripted_text(server: ScriptedOpenAI) -> None:
    server.queue(text("AAPL closed at 190.12."))

    answer = chat_model(server).invoke("How did AAPL close?")

    assert isinstance(answer, AIMessage)
    assert answer.content == "AAPL closed at 190.12."
    assert answer.response_metadata["model_name"] == "test-model"
    assert answer.response_metadata["finish_reason"] == "stop"
    assert answer.usage_metadata is not None and answer.usage_metadata["total_tokens"] > 0
    assert server.requests == [
        {
            "model": "test-model",
            "stream": False,
            "messages": [{"role": "user", "content": "How did AAPL close?"}],
        }
    ]
    assert server.last_messages()[-1]["content"] == "How did AAPL close?"
    assert server.unused == 0 and not server.rejected


def test_stream_arrives_in_several_chunks(server: ScriptedOpenAI) -> None:
    answer = "Apple is trading above its 50-day moving average."
    server.queue(answer)

    chunks = list(chat_model(server).stream("AAPL?"))

    pieces = [c.content for c in chunks if c.content]
    assert len(pieces) >= 5
    assert "".join(pieces) == answer
    assert server.last_request()["stream"] is True
    # With a custom base_url, langchain-openai does not ask for usage while streaming.
    assert "stream_options" not in server.last_request()
    assert merged(chunks).usage_metadata is None


def test_stream_usage_is_sent_when_asked_for(server: ScriptedOpenAI) -> None:
    server.queue("Up 2%.")

    chunks = list(chat_model(server, stream_usage=True).stream("AAPL?"))

    assert server.last_request()["stream_options"] == {"include_usage": True}
    usage = merged(chunks).usage_metadata
    assert usage is not None
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


@pytest.mark.parametrize("streaming", [False, True])
def test_tool_call_is_parsed_into_the_message(server: ScriptedOpenAI, streaming: bool) -> None:
    server.queue(tool_call("get_quote", {"symbol": "AAPL"}, id="call_abc"))
    model = chat_model(server).bind_tools([get_quote])

    if streaming:
        chunks = list(model.stream("Price of AAPL?"))
        assert len(chunks) > 3  # arguments arrive in fragments
        message = merged(chunks)
    else:
        message = model.invoke("Price of AAPL?")

    assert message.tool_calls == [
        {"name": "get_quote", "args": {"symbol": "AAPL"}, "id": "call_abc", "type": "tool_call"}
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    [offered] = server.last_request()["tools"]
    assert offered["type"] == "function" and offered["function"]["name"] == "get_quote"


@pytest.mark.parametrize("streaming", [False, True])
def test_parallel_tool_calls(server: ScriptedOpenAI, streaming: bool) -> None:
    server.queue(tool_calls([("get_quote", {"symbol": "AAPL"}), ("get_quote", {"symbol": "MSFT"})]))
    model = chat_model(server).bind_tools([get_quote])

    message = merged(list(model.stream("AAPL and MSFT?"))) if streaming else model.invoke("x")

    assert [(c["id"], c["args"]) for c in message.tool_calls] == [
        ("call_1", {"symbol": "AAPL"}),
        ("call_2", {"symbol": "MSFT"}),
    ]


def test_bind_tools_round_trip(server: ScriptedOpenAI) -> None:
    server.queue(tool_call("get_quote", {"symbol": "AAPL"}), "AAPL is at 190.12 USD.")
    model = chat_model(server).bind_tools([get_quote])
    history: list[Any] = [HumanMessage("Price of AAPL?")]

    asked = model.invoke(history)
    history.append(asked)
    for call in asked.tool_calls:
        history.append(get_quote.invoke(call))
    answer = model.invoke(history)

    assert answer.content == "AAPL is at 190.12 USD."
    sent = server.last_messages()
    assert sent[1]["role"] == "assistant" and sent[1]["content"] is None
    assert sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "AAPL last 190.12 USD"}
    assert not server.rejected


def test_history_with_a_dangling_tool_call_is_refused(server: ScriptedOpenAI) -> None:
    server.queue("never sent")
    dangling = AIMessage(
        "", tool_calls=[{"name": "get_quote", "args": {"symbol": "AAPL"}, "id": "call_x"}]
    )

    with pytest.raises(openai.BadRequestError) as raised:
        chat_model(server).invoke([HumanMessage("AAPL?"), dangling, HumanMessage("and now?")])

    assert raised.value.status_code == 400
    assert raised.value.body == {
        "message": "An assistant message with 'tool_calls' must be followed by tool messages "
        "responding to each 'tool_call_id'. The following tool_call_ids did not have response "
        "messages: call_x",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }
    [refused] = server.rejected
    assert refused.status == 400 and refused.body == server.last_request()
    assert server.unused == 1  # a refused request consumes no reply


def test_tool_message_without_a_call_is_refused(server: ScriptedOpenAI) -> None:
    orphan = ToolMessage("190.12", tool_call_id="call_gone")

    with pytest.raises(openai.BadRequestError, match="must be a response to a preceeding"):
        chat_model(server).invoke([HumanMessage("AAPL?"), orphan])

    assert len(server.rejected) == 1


def test_wrong_key_is_refused(server: ScriptedOpenAI) -> None:
    server.queue("never sent")

    with pytest.raises(openai.AuthenticationError) as raised:
        chat_model(server, api_key="sk-wrong-key").invoke("hi")

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert raised.value.body["message"].startswith("Incorrect API key provided: sk")
    assert "sk-wrong-key" not in raised.value.body["message"]
    assert server.rejected[0].status == 401 and server.unused == 1


def test_empty_script_fails_loudly_without_retries(server: ScriptedOpenAI) -> None:
    server.queue("the only one")
    model = chat_model(server, max_retries=2)
    model.invoke("first")

    with pytest.raises(openai.InternalServerError, match=NO_REPLY_LEFT):
        model.invoke("second")

    assert len(server.requests) == 2  # the server told the client not to retry
    assert server.rejected[0].error.startswith(NO_REPLY_LEFT)


def test_scripted_error_reaches_the_client(server: ScriptedOpenAI) -> None:
    server.queue(error(429, "Rate limit reached for test-model."))

    with pytest.raises(openai.RateLimitError, match="Rate limit reached"):
        chat_model(server).invoke("hi")

    assert not server.rejected  # scripted, not refused
    assert server.records[0].status == 429


def test_reply_can_depend_on_the_request(server: ScriptedOpenAI) -> None:
    server.queue(lambda body: text(f"you sent {len(body['messages'])} messages"))

    answer = chat_model(server).invoke([HumanMessage("a"), AIMessage("b"), HumanMessage("c")])

    assert answer.content == "you sent 3 messages"


def test_reply_function_that_fails_fails_the_request(server: ScriptedOpenAI) -> None:
    server.queue(lambda body: body["no such field"])

    with pytest.raises(openai.InternalServerError, match="scripted reply raised KeyError"):
        chat_model(server, max_retries=2).invoke("hi")

    assert len(server.rejected) == 1


def test_create_agent_calls_the_tool_then_answers(server: ScriptedOpenAI) -> None:
    from langchain.agents import create_agent

    server.queue(
        tool_call("get_quote", {"symbol": "AAPL"}, id="call_q1"),
        "AAPL last traded at 190.12 USD.",
    )
    agent = create_agent(chat_model(server), tools=[get_quote], system_prompt="You analyse stocks.")

    result = agent.invoke({"messages": [{"role": "user", "content": "How is AAPL doing?"}]})

    assert result["messages"][-1].content == "AAPL last traded at 190.12 USD."
    first, second = server.requests
    assert first["messages"] == [
        {"role": "system", "content": "You analyse stocks."},
        {"role": "user", "content": "How is AAPL doing?"},
    ]
    assert [t["function"]["name"] for t in first["tools"]] == ["get_quote"]
    assert second["messages"][2]["tool_calls"][0]["id"] == "call_q1"
    assert second["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call_q1",
        "content": "AAPL last 190.12 USD",
    }
    assert not server.rejected and server.unused == 0


def test_create_agent_streams_tokens(server: ScriptedOpenAI) -> None:
    from langchain.agents import create_agent

    server.queue(tool_call("get_quote", {"symbol": "MSFT"}), "MSFT is flat today.")
    agent = create_agent(chat_model(server), tools=[get_quote], system_prompt="Be brief.")

    tokens = [
        message.content
        for message, _meta in agent.stream(
            {"messages": [{"role": "user", "content": "MSFT?"}]}, stream_mode="messages"
        )
        if isinstance(message, AIMessage) and message.content
    ]

    assert "".join(tokens) == "MSFT is flat today."
    assert len(tokens) > 1
    assert all(body["stream"] is True for body in server.requests)


# --- the wire format -----------------------------------------------------------------------


def test_stream_wire_format_for_tool_calls(server: ScriptedOpenAI) -> None:
    server.queue(tool_call("get_quote", {"symbol": "AAPL"}, id="call_w"))
    body = {
        "model": "gpt-test",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "AAPL?"}],
    }

    status, raw = post(server, body)

    assert status == 200
    assert raw.endswith(b"data: [DONE]\n\n")
    chunks = list(iter_sse(raw))
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"gpt-test"}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": "call_w",
        "type": "function",
        "function": {"name": "get_quote", "arguments": ""},
    }
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    assert "".join(c["function"]["arguments"] for c in calls) == '{"symbol": "AAPL"}'
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "tool_calls" and set(finish[:-1]) == {None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_non_streaming_wire_format(server: ScriptedOpenAI) -> None:
    server.queue("Hello.")

    status, raw = post(server, {"model": "m-1", "messages": [{"role": "user", "content": "hi"}]})

    reply = json.loads(raw)
    assert status == 200
    assert reply["object"] == "chat.completion" and reply["model"] == "m-1"
    assert reply["id"].startswith("chatcmpl-") and isinstance(reply["created"], int)
    assert reply["choices"][0]["message"]["content"] == "Hello."
    usage = reply["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m"}, "Missing required parameter: 'messages'."),
        ({"model": "m", "messages": []}, "Invalid 'messages': empty array."),
    ],
)
def test_missing_or_empty_messages_are_refused(
    server: ScriptedOpenAI, body: dict[str, Any], message: str
) -> None:
    status, raw = post(server, body)

    assert status == 400
    err = json.loads(raw)["error"]
    assert err["message"].startswith(message)
    assert (err["type"], err["param"]) == ("invalid_request_error", "messages")
    assert server.rejected[0].body == body


def _assistant_calls(*ids: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
        ],
    }


def _tool(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "ok"}


USER = {"role": "user", "content": "q"}


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([USER, _assistant_calls("a", "b"), _tool("a"), _tool("b"), USER], None),
        ([USER, _assistant_calls("a", "b"), _tool("b"), _tool("a")], None),
        ([USER, _assistant_calls("a", "b"), _tool("a"), USER], "did not have response messages: b"),
        ([USER, _assistant_calls("a")], "did not have response messages: a"),
        ([USER, _assistant_calls("a"), USER, _tool("a")], "did not have response messages: a"),
        ([USER, _tool("a")], "preceeding message with 'tool_calls'"),
        ([USER, _assistant_calls("a"), _tool("a"), _tool("a")], "preceeding message"),
        ([USER, {"role": "assistant", "content": None}], "expected a string, got null"),
    ],
)
def test_tool_call_trail_is_checked(
    server: ScriptedOpenAI, messages: list[dict[str, Any]], problem: str | None
) -> None:
    server.queue("fine")

    status, raw = post(server, {"model": "m", "messages": messages})

    if problem is None:
        assert status == 200
    else:
        assert status == 400
        assert problem in json.loads(raw)["error"]["message"]


def test_missing_key_is_refused(server: ScriptedOpenAI) -> None:
    status, raw = post(server, {"model": "m", "messages": [USER]}, key=None)

    assert status == 401
    assert json.loads(raw)["error"]["code"] == "invalid_api_key"


def test_no_key_needed_when_none_is_set() -> None:
    with ScriptedOpenAI(api_key=None) as server:
        server.queue("open")
        status, _ = post(server, {"model": "m", "messages": [USER]}, key=None)
    assert status == 200


def test_models_are_listed(server: ScriptedOpenAI) -> None:
    models = openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0).models
    assert [m.id for m in models.list()] == ["test-model"]


def test_unknown_endpoint_is_refused(server: ScriptedOpenAI) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        client.responses.create(model="test-model", input="hi")


# --- behaviour under load and interruption -------------------------------------------------


def test_client_that_stops_reading_is_noticed() -> None:
    with ScriptedOpenAI(chunk_delay=0.02) as server:
        server.queue("word " * 200)
        stream = chat_model(server).stream("talk")
        next(stream)
        next(stream)
        stream.close()  # as a Ctrl-C in the terminal would

        assert server.wait_idle(5)
        [record] = server.records
        assert record.interrupted
        assert record.chunks_sent < len(split_tokens("word " * 200))


STREAMING_CLIENT = """
from langchain_openai import ChatOpenAI
model = ChatOpenAI(model="test-model", max_retries=0)  # base URL and key from the environment
for chunk in model.stream("talk"):
    print(chunk.content, end="", flush=True)
"""


def test_subprocess_client_interrupted_by_ctrl_c() -> None:
    with ScriptedOpenAI(chunk_delay=0.05) as server:
        server.queue("word " * 200)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="test-key")
        proc = subprocess.Popen(
            [sys.executable, "-c", STREAMING_CLIENT],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while not (server.records and server.records[0].chunks_sent >= 3):
                assert time.monotonic() < deadline, "the subprocess never started streaming"
                assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=10)
        finally:
            proc.kill()

        assert proc.returncode != 0 and b"KeyboardInterrupt" in err
        assert server.wait_idle(5)
        [record] = server.records
        assert record.status == 200 and record.stream and record.interrupted
        assert record.headers["authorization"] == "Bearer test-key"


def test_concurrent_requests_each_get_one_reply(server: ScriptedOpenAI) -> None:
    server.queue(*[f"answer {i}" for i in range(20)])
    model = chat_model(server)
    answers: list[str] = []
    lock = threading.Lock()

    def ask() -> None:
        content = model.invoke("q").content
        with lock:
            answers.append(str(content))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(answers) == sorted(f"answer {i}" for i in range(20))
    assert server.unused == 0


def test_stopped_server_refuses_connections() -> None:
    server = ScriptedOpenAI().start()
    server.queue("one")
    model = chat_model(server)
    model.invoke("warm the connection pool")
    server.stop()

    with pytest.raises(openai.APIConnectionError):
        model.invoke("again")


def test_split_tokens_keeps_every_character() -> None:
    content = "  Apple (AAPL): RSI 71.3 — overbought.\n\nWatch support at 185 "
    assert "".join(split_tokens(content)) == content
    assert all(len(piece.strip()) <= 4 for piece in split_tokens(content))
