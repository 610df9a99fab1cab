"""5. What a one-shot narrated analysis sends to the model.

The app's own path (`App.agent(only_tools=narration_tools(symbols)).run_once(...)`, as
`stock-agent analyze` does with a model configured) runs against the ScriptedOpenAI server
(tests/openai_server.py) over loopback, with offline market data (examples/market) and a profile
with a watchlist, an alert threshold and a portfolio size. The model is scripted:
- 1 symbol: call `analyze_stocks([AAPL])`, then answer;
- 5 symbols: call `analyze_stocks([5 symbols])`, then `compare_stocks([5 symbols])`, then answer.
Each request body the server received is measured as compact JSON (characters), split into the
system prompt, the tool schemas, and the tool results; tokens are estimated as characters / 4.
The baseline for a tool result is the raw frame a naive tool would return: one year of daily
bars of the symbol as CSV text.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from bench.common import MARKET_DATA, Context, Result, Row
from bench.sides import USER

GROUP = "5. tokens of a narrated analysis"
FIVE = ["AAPL", "MSFT", "GOOGL", "NVDA", "TSLA"]
BUDGET = 1500
CHAT_FIXED_TARGET = 3500  # issue 11: the fixed part of a chat request
NARRATED_TARGETS = {"1 symbol": 5000}  # issue 11: a narrated one-symbol analyze, all requests
_DATA_HEADER = re.compile(r'^<data source="([^"]+)">$')


def tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def breakdown(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages", [])

    def text_of(message: dict[str, Any]) -> str:
        content = message.get("content")
        if isinstance(content, str):
            return content
        return compact(content) if content is not None else ""

    tool_results = [text_of(m) for m in messages if m.get("role") == "tool"]
    return {
        "total_chars": len(compact(body)),
        "messages": len(messages),
        "system_chars": sum(len(text_of(m)) for m in messages if m.get("role") == "system"),
        "user_chars": sum(len(text_of(m)) for m in messages if m.get("role") == "user"),
        "tool_schema_chars": len(compact(body.get("tools", []))),
        "tools": len(body.get("tools", [])),
        "tool_call_chars": sum(
            len(compact(m.get("tool_calls", []))) for m in messages if m.get("role") == "assistant"
        ),
        "tool_result_chars": sum(len(t) for t in tool_results),
        "tool_results": tool_results,
    }


def raw_frame_chars(symbol: str) -> int:
    from stock_agent.providers.offline import CsvProvider

    return len(CsvProvider(MARKET_DATA).history(symbol, days=365).to_csv())


def run(ctx: Context) -> Result:
    from stock_agent.agent.prompts import analyze_request
    from stock_agent.app import App
    from stock_agent.config import Settings
    from stock_agent.ui.analyze import narration_tools
    from tests.openai_server import ScriptedOpenAI, text, tool_call

    narration = "AAPL: price 196.4, up 2.1% this week; trend up, RSI 61; no alert. " * 12
    cases = {
        "1 symbol": (["AAPL"], [tool_call("analyze_stocks", {"symbols": ["AAPL"]}), text(narration)]),
        "5 symbols": (
            FIVE,
            [
                tool_call("analyze_stocks", {"symbols": FIVE}),
                tool_call("compare_stocks", {"symbols": FIVE}),
                text(narration * 3),
            ],
        ),
    }  # fmt: skip
    measured: dict[str, list[dict[str, Any]]] = {}
    with ScriptedOpenAI() as server:
        settings = Settings(
            redis_url=ctx.server.url,
            openai_api_key="test-key",
            openai_base_url=server.base_url,
            model="test-model",
            user_id=USER,
            agent_id="bench_tokens",
            home=ctx.workdir / "tokens-home",
            data_dir=MARKET_DATA,
        )
        app = App(settings)
        try:
            app.profiles.add_symbols(USER, ["AAPL", "MSFT"])
            app.profiles.set_field(USER, "alert_threshold", "-5%")
            app.profiles.set_field(USER, "portfolio_size", "100k")
            for name, (symbols, script) in cases.items():
                start = len(server.requests)
                server.queue(*script)
                agent = app.agent(only_tools=narration_tools(symbols))
                agent.run_once(
                    analyze_request(symbols), profile=app.profiles.get(USER), user_id=USER
                )
                if server.rejected:
                    raise RuntimeError(
                        f"the scripted server refused a request: {server.rejected[0].error}"
                    )
                if server.unused:
                    raise RuntimeError(f"{name}: {server.unused} scripted replies were not used")
                measured[name] = [breakdown(body) for body in server.requests[start:]]
            # A chat request before any history: what every turn of `stock-agent chat` sends.
            start = len(server.requests)
            server.queue(text("ok"))
            app.agent().ask("hi", user_id=USER, session_id="tokens-chat")
            chat_request = breakdown(server.requests[start])
        finally:
            app.close()

    from langchain_core.utils.function_calling import convert_to_openai_tool

    from stock_agent.agent.tools import ToolDeps, build_tools

    chat_schemas = [
        convert_to_openai_tool(t)
        for t in build_tools(ToolDeps(None, None, None))  # type: ignore[arg-type]
    ]
    all_schema_chars = len(json.dumps(chat_schemas, separators=(",", ":")))
    result = Result("tokens")
    raw = {symbol: raw_frame_chars(symbol) for symbol in FIVE}
    for name, requests in measured.items():
        for i, request in enumerate(requests, 1):
            what = "system + tools + question" if i == 1 else "+ tool call and result"
            result.rows.append(
                Row(GROUP, f"{name}, request {i} ({what})", "chars", request["total_chars"],
                    note=f"~{tokens(request['total_chars']):,} tokens")
            )  # fmt: skip
        total = sum(r["total_chars"] for r in requests)
        goal = NARRATED_TARGETS.get(name)
        result.rows.append(
            Row(GROUP, f"{name}, all {len(requests)} requests", "chars", total,
                target=None if goal is None else f"<= {goal:,}",
                met=None if goal is None else total <= goal)
        )  # fmt: skip
        result.rows.append(
            Row(GROUP, f"{name}, all {len(requests)} requests, est. tokens (chars/4)", "tokens",
                tokens(total))
        )  # fmt: skip
    first = measured["1 symbol"][0]
    result.rows.append(
        Row(GROUP, f"of each request: tool schemas ({first['tools']} tools)", "chars",
            first["tool_schema_chars"])
    )  # fmt: skip
    result.rows.append(Row(GROUP, "of each request: system prompt", "chars", first["system_chars"]))
    result.rows.append(
        Row(GROUP, f"a chat request's tool schemas (all {len(chat_schemas)} tools)", "chars",
            all_schema_chars)
    )  # fmt: skip
    offline_fixed = chat_request["system_chars"] + chat_request["tool_schema_chars"]
    result.rows.append(
        Row(GROUP, f"fixed part of a chat request, offline ({chat_request['tools']} tools)",
            "chars", offline_fixed, target=f"<= {CHAT_FIXED_TARGET:,}",
            met=offline_fixed <= CHAT_FIXED_TARGET, note="system prompt + tool schemas")
    )  # fmt: skip
    live_fixed = chat_request["system_chars"] + all_schema_chars
    result.rows.append(
        Row(GROUP, f"fixed part of a chat request, Yahoo ({len(chat_schemas)} tools)", "chars",
            live_fixed, target=f"<= {CHAT_FIXED_TARGET:,}", met=live_fixed <= CHAT_FIXED_TARGET)
    )  # fmt: skip

    per_symbol = _per_symbol_results(measured)
    largest_symbol = max(per_symbol["analyze_stocks"], key=per_symbol["analyze_stocks"].get)
    largest = per_symbol["analyze_stocks"][largest_symbol]
    result.rows.append(
        Row(GROUP, "largest analyze_stocks result per symbol (baseline: raw 1y frame)", "chars",
            largest, raw[largest_symbol], f"<= {BUDGET:,}", largest <= BUDGET, largest_symbol)
    )  # fmt: skip
    if per_symbol["compare_stocks"]:
        row_max = max(per_symbol["compare_stocks"].values())
        result.rows.append(
            Row(GROUP, "largest compare_stocks row per symbol", "chars", row_max,
                target=f"<= {BUDGET:,}", met=row_max <= BUDGET)
        )  # fmt: skip
    result.details = {
        "model": "ScriptedOpenAI server (tests/openai_server.py) over loopback, langchain-openai client",
        "chars": "compact JSON of each request body as received; tokens = ceil(chars / 4)",
        "tool_result_chars_per_symbol": per_symbol,
        "raw_1y_frame_csv_chars": raw,
        "requests": {
            name: [{k: v for k, v in r.items()} for r in requests]
            for name, requests in measured.items()
        },
    }
    return result


def _per_symbol_results(measured: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    """Characters of each symbol's part of the tool results (one line per symbol)."""
    per_symbol: dict[str, dict[str, int]] = {"analyze_stocks": {}, "compare_stocks": {}}
    for requests in measured.values():
        results = requests[-1]["tool_results"]  # the last request carries every result
        for content in results:
            lines = content.splitlines()
            header = _DATA_HEADER.match(lines[0]) if lines else None
            if header:  # the result as the model gets it: inside <data> delimiters
                lines = lines[1:-1]
            tool = (
                "compare_stocks"
                if (header and header.group(1) == "compare_stocks")
                or (lines and lines[0].startswith("ranked by"))
                else "analyze_stocks"
            )
            for line in lines:
                try:
                    item = json.loads(line.split(" ", 1)[1] if tool == "compare_stocks" else line)
                except (ValueError, IndexError):
                    continue
                if isinstance(item, dict) and item.get("symbol"):
                    symbol = str(item["symbol"])
                    per_symbol[tool][symbol] = max(per_symbol[tool].get(symbol, 0), len(line))
    return per_symbol
