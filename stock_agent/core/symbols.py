"""Ticker symbol validation (light: imported by the profile commands, which must start fast)."""

from __future__ import annotations

import re

from stock_agent.errors import InvalidSymbol

_SYMBOL_RE = re.compile(r"[A-Z0-9.\-^=]{1,15}")


def normalize_symbol(raw: str) -> str:
    """Upper-case and validate a ticker: letters, digits, `. - ^ =`, 1 to 15 characters."""
    if not isinstance(raw, str):
        raise InvalidSymbol(
            f"invalid symbol {raw!r}", fix="use a ticker such as AAPL, BRK-B or ^GSPC"
        )
    symbol = raw.strip().upper()
    if not _SYMBOL_RE.fullmatch(symbol) or not re.search(r"[A-Z0-9]", symbol):
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise InvalidSymbol(
            f"invalid symbol {shown!r}",
            fix="a symbol uses letters, digits and . - ^ = only, at most 15 characters (e.g. AAPL, BRK-B, ^GSPC)",
        )
    return symbol
