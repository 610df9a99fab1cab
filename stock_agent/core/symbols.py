"""Ticker symbol validation (light: imported by the profile commands, which must start fast)."""

from __future__ import annotations

import re

from stock_agent.errors import InvalidSymbol

_SYMBOL_RE = re.compile(r"[A-Z0-9.\-^=]{1,15}")
# A class share written with a dot (BRK.B, BF.A) is the same symbol as Yahoo's dash form
# (BRK-B). Only the class letters A to C: a one-letter exchange suffix (VOD.L, 7203.T) stays.
_CLASS_SHARE_RE = re.compile(r"([A-Z]{1,6})\.([A-C])")


def normalize_symbol(raw: str) -> str:
    """Upper-case and validate a ticker: letters, digits, `. - ^ =`, 1 to 15 characters; a
    class share takes the dash form (`brk.b` -> `BRK-B`)."""
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
    if match := _CLASS_SHARE_RE.fullmatch(symbol):
        symbol = f"{match.group(1)}-{match.group(2)}"
    return symbol


def dotted_form(symbol: str) -> str | None:
    """`BRK-B` -> `BRK.B` (how some files and sites name a class share); None for others."""
    base, dash, letter = symbol.rpartition("-")
    if dash and _CLASS_SHARE_RE.fullmatch(f"{base}.{letter}"):
        return f"{base}.{letter}"
    return None
