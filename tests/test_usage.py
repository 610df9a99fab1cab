"""The price table and the end-of-turn usage line (pure parts of issue 15's chat usage)."""

from __future__ import annotations

import pytest

from stock_agent.core.usage import ToolUse, format_cost, parse_prices, turn_cost, usage_line
from stock_agent.errors import ConfigError


def test_a_known_model_is_priced_and_an_unknown_one_is_unpriced_never_zero():
    assert turn_cost("gpt-4.1-mini", 1_000_000, 1_000_000) == pytest.approx(2.0)
    assert turn_cost("openai:gpt-4.1-mini", 1000, 0) == pytest.approx(0.0004)
    assert turn_cost("test-model", 10, 10) is None
    assert format_cost(None) == "unpriced"


def test_prices_can_be_overridden():
    prices = parse_prices("test-model=1/2, gpt-4.1-mini=0/0")
    assert turn_cost("test-model", 1_000_000, 500_000, prices) == pytest.approx(2.0)
    with pytest.raises(ConfigError):
        parse_prices("broken=1")


def test_the_usage_line():
    tools = [
        ToolUse("analyze_stocks", ("AAPL", "MSFT"), cached=True),
        ToolUse("get_quote", ("NVDA",)),
    ]
    assert usage_line(tools, 1234, 56, 0.00061) == (
        "analyze_stocks AAPL MSFT (cached) · get_quote NVDA · 1,234 in / 56 out · $0.0006"
    )
    assert usage_line([], 10, 2, None) == "10 in / 2 out · unpriced"


def test_the_collector_names_each_tool_its_symbols_and_whether_the_cache_answered():
    from stock_agent.core.usage import TurnUsage
    from stock_agent.services.market import FetchEvent
    from stock_agent.ui.turn_usage import TurnUsageCollector

    turn = TurnUsageCollector()
    assert turn.line() is None  # not finished yet
    turn.on_tool_start({"name": "analyze_stocks"}, "", inputs={"symbols": ["aapl", "MSFT"]})
    turn.on_tool_start({"name": "get_quote"}, '{"symbol": "nvda"}')
    turn.on_fetch(FetchEvent("analysis", "AAPL", True, 0.0))
    turn.on_fetch(FetchEvent("analysis", "MSFT", True, 0.0))
    turn.on_fetch(FetchEvent("quote", "NVDA", False, 0.4))
    turn.on_usage(TurnUsage("gpt-4.1-mini", 1234, 56, 0.00058, 2))
    assert turn.line() == (
        "analyze_stocks AAPL MSFT (cached) · get_quote NVDA · 1,234 in / 56 out · $0.0006"
    )

    silent = TurnUsageCollector()
    silent.on_usage(TurnUsage("local-model"))  # the server reported no usage
    assert silent.line() == "usage not reported by the model server"
