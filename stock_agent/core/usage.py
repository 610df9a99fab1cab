"""What a chat turn used: tokens in and out, their cost when the model's price is known, and
the tools called. Pure (no I/O): the chat's dim end-of-turn line and the stored usage read it.

Prices are US dollars per million tokens, for common models; STOCK_AGENT_PRICES overrides or
adds (`name=in/out,name=in/out`). An unknown model is "unpriced", never $0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stock_agent.errors import ConfigError

# model -> (input, output) dollars per million tokens
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o4-mini": (1.10, 4.40),
}


def parse_prices(raw: str) -> dict[str, tuple[float, float]]:
    """`my-model=0.5/1.5,other=1/2` -> {"my-model": (0.5, 1.5), ...}."""
    prices: dict[str, tuple[float, float]] = {}
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        name, _, pair = item.partition("=")
        cost_in, _, cost_out = pair.partition("/")
        try:
            value = (float(cost_in), float(cost_out))
        except ValueError:
            raise ConfigError(
                f"STOCK_AGENT_PRICES: cannot read {item!r}",
                fix="give name=input/output dollars per million tokens, e.g. my-model=0.5/1.5",
            ) from None
        if not name.strip() or min(value) < 0 or any(v != v for v in value):
            raise ConfigError(f"STOCK_AGENT_PRICES: cannot read {item!r}")
        prices[name.strip()] = value
    return prices


def turn_cost(
    model: str,
    tokens_in: int,
    tokens_out: int,
    prices: Mapping[str, tuple[float, float]] | None = None,
) -> float | None:
    """Dollars for one turn, or None when the model's price is not known."""
    table = {**PRICES, **(prices or {})}
    price = table.get(model) or table.get(model.split(":", 1)[-1])
    if price is None:
        return None
    return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000


@dataclass(frozen=True)
class ToolUse:
    tool: str
    symbols: tuple[str, ...] = ()
    cached: bool = False


def format_cost(cost: float | None) -> str:
    if cost is None:
        return "unpriced"
    return f"${cost:.4f}" if cost < 0.01 else f"${cost:.2f}"


def usage_line(
    tools: Sequence[ToolUse], tokens_in: int, tokens_out: int, cost: float | None
) -> str:
    """`analyze_stocks AAPL (cached) · 1,234 in / 56 out · $0.0006`."""
    parts = [" ".join([t.tool, *t.symbols]) + (" (cached)" if t.cached else "") for t in tools]
    parts.append(f"{tokens_in:,} in / {tokens_out:,} out")
    parts.append(format_cost(cost))
    return " · ".join(parts)
