"""The chat's dim end-of-turn line: the tools a turn called (with their symbols, and whether
each was served from the cache), its tokens in and out, and its cost ("unpriced" when the
model's price is not known, never $0).

`TurnUsageCollector` is a LangChain callback handler (it sees each tool call), a market-data
listener (it sees each fetch: cached or not) and the agent's `on_usage` (what the turn's
requests used). One per turn.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import BaseCallbackHandler

from stock_agent.core.usage import ToolUse, TurnUsage, tool_parts, usage_line

if TYPE_CHECKING:
    from stock_agent.services.market import FetchEvent


def _symbols(args: dict[str, Any]) -> tuple[str, ...]:
    found = args.get("symbols") or ([args["symbol"]] if args.get("symbol") else [])
    if not isinstance(found, list | tuple):
        return ()
    return tuple(str(s).strip().upper() for s in found if str(s).strip())[:10]


class TurnUsageCollector(BaseCallbackHandler):
    """Collects one turn's tool calls, fetches and usage; `line()` is the end-of-turn line."""

    raise_error = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.fetched: dict[str, bool] = {}  # symbol -> every fetch of it was a cache hit
        self.usage: TurnUsage | None = None
        self._lock = threading.Lock()

    # -- a LangChain callback: the tools called
    def on_tool_start(self, serialized: dict[str, Any], input_str: str, **kwargs: Any) -> None:
        name = str((serialized or {}).get("name") or kwargs.get("name") or "tool")
        inputs = kwargs.get("inputs")
        args: Any = inputs if isinstance(inputs, dict) else None
        if args is None:
            try:
                args = json.loads(input_str)
            except (TypeError, ValueError):
                args = {}
        with self._lock:
            self.calls.append((name, _symbols(args if isinstance(args, dict) else {})))

    # -- a market-data listener: cached or fetched
    def on_fetch(self, event: FetchEvent) -> None:
        with self._lock:
            symbol = event.symbol.upper()
            self.fetched[symbol] = self.fetched.get(symbol, True) and bool(event.cached)

    # -- the agent's on_usage
    def on_usage(self, usage: TurnUsage) -> None:
        self.usage = usage

    def tools(self) -> list[ToolUse]:
        """Each tool call; cached when every symbol it names came from the cache."""
        with self._lock:
            uses = []
            for name, symbols in self.calls:
                seen = [self.fetched[s] for s in symbols if s in self.fetched]
                uses.append(ToolUse(name, symbols, cached=bool(seen) and all(seen)))
            return uses

    def line(self) -> str | None:
        """The end-of-turn line, or None before the turn has finished."""
        if self.usage is None:
            return None
        if not self.usage.requests:
            return " · ".join([*tool_parts(self.tools()), "usage not reported by the model server"])
        return usage_line(
            self.tools(), self.usage.tokens_in, self.usage.tokens_out, self.usage.cost
        )
