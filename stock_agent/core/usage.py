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


def tool_parts(tools: Sequence[ToolUse]) -> list[str]:
    """`analyze_stocks AAPL MSFT (cached)` for each tool call."""
    return [" ".join([t.tool, *t.symbols]) + (" (cached)" if t.cached else "") for t in tools]


def usage_line(
    tools: Sequence[ToolUse], tokens_in: int, tokens_out: int, cost: float | None
) -> str:
    """`analyze_stocks AAPL (cached) · 1,234 in / 56 out · $0.0006`."""
    parts = tool_parts(tools)
    parts.append(f"{tokens_in:,} in / {tokens_out:,} out")
    parts.append(format_cost(cost))
    return " · ".join(parts)


# A model server's reported count above this is not believed (one turn, in or out).
MAX_TOKENS_PER_TURN = 100_000_000


def _tokens(value: object) -> int:
    """A reported token count as a whole number >= 0 (anything else counts as 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0
    return int(min(max(value, 0), MAX_TOKENS_PER_TURN))


def stored_count(raw: object) -> float:
    """A counter read back from the store, or 0 when it is missing or not a number (a damaged
    field is not trusted)."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return value if value == value and 0 <= value < 1e18 else 0.0


@dataclass(frozen=True)
class TurnUsage:
    """What one turn used: the model, its requests, tokens in and out (summed over the
    requests), and the cost in dollars (None: the model's price is not known)."""

    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None
    requests: int = 0

    @classmethod
    def of(
        cls,
        model: str,
        reported: Sequence[Mapping[str, object]],
        prices: Mapping[str, tuple[float, float]] | None = None,
    ) -> TurnUsage:
        """The turn's usage from each request's reported usage (`input_tokens`,
        `output_tokens`, as LangChain's `usage_metadata` has them)."""
        tokens_in = sum(_tokens(r.get("input_tokens")) for r in reported)
        tokens_out = sum(_tokens(r.get("output_tokens")) for r in reported)
        cost = turn_cost(model, tokens_in, tokens_out, prices)
        return cls(model, tokens_in, tokens_out, cost, len(reported))


@dataclass(frozen=True)
class UsageTotals:
    """Turns, tokens and cost added up (a session's, a day's, a model's). `cost` sums the
    priced turns; `unpriced` counts the turns whose model had no price."""

    turns: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    unpriced: int = 0

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(
            self.turns + other.turns,
            self.tokens_in + other.tokens_in,
            self.tokens_out + other.tokens_out,
            self.cost + other.cost,
            self.unpriced + other.unpriced,
        )

    @property
    def cost_text(self) -> str:
        """`$0.0123`, with "+ N unpriced" when some turns had no price; "unpriced" when none had."""
        if not self.turns:
            return "-"
        if self.unpriced == self.turns:
            return "unpriced"
        text = format_cost(self.cost)
        return f"{text} + {self.unpriced} unpriced" if self.unpriced else text

    def to_dict(self) -> dict[str, object]:
        return {
            "turns": self.turns,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": round(self.cost, 6) if self.turns > self.unpriced else None,
            "unpriced_turns": self.unpriced,
        }


@dataclass(frozen=True)
class DayUsage:
    """One user's usage on one day (an ISO date), by model."""

    day: str
    by_model: Mapping[str, UsageTotals]

    @property
    def total(self) -> UsageTotals:
        return sum(self.by_model.values(), UsageTotals())

    def to_dict(self) -> dict[str, object]:
        return {
            "date": self.day,
            **self.total.to_dict(),
            "models": {m: t.to_dict() for m, t in sorted(self.by_model.items())},
        }
