"""The chat's dim end-of-turn line in a real pseudo-terminal: the tools the turn called with
their symbols and whether the cache answered, the tokens the model server reported, and the
cost (a priced model) or "unpriced" (never $0); the stored totals agree."""

from __future__ import annotations

import re
from typing import Any

from tests.openai_server import ScriptedOpenAI, text, tool_call
from tests.test_chat_pty import Chat


def test_each_turn_ends_with_what_it_used(
    pty_env: dict[str, str], openai_server: ScriptedOpenAI, redis_client: Any
) -> None:
    openai_server.queue(
        tool_call("analyze_stocks", {"symbols": ["AAPL"]}),
        text("AAPL is in an uptrend."),
        tool_call("analyze_stocks", {"symbols": ["AAPL"]}),
        text("Still an uptrend."),
    )
    env = {**pty_env, "STOCK_AGENT_PRICES": "test-model=1000/2000"}
    chat = Chat(env, "--session", "usage-1")
    try:
        chat.prompt()
        chat.say("how is AAPL?")
        chat.expect_exact("AAPL is in an uptrend.")
        first_in, first_out = openai_server.reported_usage()
        line = chat.expect(r"analyze_stocks AAPL · ([\d,]+) in / ([\d,]+) out · \$([\d.]+)")
        assert line is not None
        assert (int(line.group(1).replace(",", "")), int(line.group(2).replace(",", ""))) == (
            first_in,
            first_out,
        )
        assert float(line.group(3)) == round((first_in * 1000 + first_out * 2000) / 1e6, 2)
        chat.prompt()

        chat.say("and now?")  # the same analysis again: served from the cache
        chat.expect_exact("Still an uptrend.")
        chat.expect(r"analyze_stocks AAPL \(cached\) · [\d,]+ in / [\d,]+ out · \$")
        chat.prompt()
        assert chat.leave_with_ctrl_d() == 0
    finally:
        chat.kill()
    tokens_in, tokens_out = openai_server.reported_usage()
    usage = redis_client.hgetall("agent:memory:test_agent:alice:usage-1:usage")
    assert (usage["turns"], usage["in"], usage["out"]) == ("2", str(tokens_in), str(tokens_out))


def test_an_unpriced_model_says_so(pty_env: dict[str, str], openai_server: ScriptedOpenAI) -> None:
    openai_server.queue(text("Hello."))
    chat = Chat(pty_env, "--new")
    try:
        chat.prompt()
        chat.say("hi")
        chat.expect_exact("Hello.")
        found = chat.expect(r"([\d,]+) in / ([\d,]+) out · ([a-z]+)")
        assert found is not None and found.group(3) == "unpriced"
        assert not re.search(r"\$0\b", chat.child.before or "")
        chat.prompt()
        assert chat.leave_with_ctrl_d() == 0
    finally:
        chat.kill()
