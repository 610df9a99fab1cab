"""The rules of a profile's fields: what a user may set and how text becomes a value.

Light (no I/O): the CLI, the services and the store all validate with these, so a value is
accepted or refused the same way wherever it is entered.
"""

from __future__ import annotations

import math
import re

from stock_agent.core.limits import MAX_PORTFOLIO_SIZE
from stock_agent.core.models import SymbolAlert
from stock_agent.core.symbols import normalize_symbol
from stock_agent.errors import InvalidInput


def parse_threshold(value: str | float) -> float:
    """`-5%` or `-0.05` -> -0.05. Must be a drop between 0 and -100%."""
    text = str(value).strip().replace(" ", "").replace(MINUS_SIGN, "-")
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise InvalidInput(
            f"invalid alert_threshold {value!r}", fix="give a 1-day drop such as -5% or -0.05"
        ) from None
    if math.isfinite(number):
        number = round(number, 6)  # stored to 6 decimals: a drop too small to keep is no drop
    if not math.isfinite(number) or not -1 < number < 0:
        hint = f" (did you mean {text}%?)" if not text.endswith("%") and -100 < number <= -1 else ""
        raise InvalidInput(
            f"alert_threshold must be a drop between 0% and -100%, got {value!r}{hint}",
            fix="give a negative change such as -5% or -0.05",
        )
    return number


def parse_symbol_alert(symbol: str, value: str | float) -> SymbolAlert:
    """`NVDA`, `-3%` -> SymbolAlert("NVDA", -0.03): a valid symbol and a drop threshold."""
    return SymbolAlert(normalize_symbol(symbol), parse_threshold(value))


# U+2212, what word processors and web pages print for a negative number.
MINUS_SIGN = "\u2212"
_AMOUNT_RE = re.compile(r"^[$€£¥]?([0-9][0-9_,]*(?:\.[0-9]+)?)([kKmMbB]?)$")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")


def parse_currency(value: str) -> str:
    """`usd` -> `USD`: an ISO 4217 code, three letters."""
    code = str(value).strip().upper()
    if not _CURRENCY_RE.fullmatch(code):
        raise InvalidInput(
            f"invalid currency {value!r}", fix="give a three-letter code such as USD, EUR or GBP"
        )
    return code


def parse_amount(value: str | float) -> float:
    """`100000`, `100,000`, `$250k`, `1.5m`, `2b` -> a positive amount, at most 1e15."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        match = _AMOUNT_RE.match(str(value).strip())
        if not match:
            raise InvalidInput(
                f"invalid portfolio_size {value!r}",
                fix="give an amount such as 100000, 100k or 1.5m",
            )
        number = float(match.group(1).replace(",", "").replace("_", ""))
        number *= {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}[match.group(2).lower()]
    if not math.isfinite(number) or number <= 0:
        raise InvalidInput(
            f"portfolio_size must be a positive amount, got {value!r}", fix="e.g. 100000"
        )
    if number > MAX_PORTFOLIO_SIZE:
        raise InvalidInput(
            f"portfolio_size must be at most {MAX_PORTFOLIO_SIZE:g}, got {value!r}",
            fix="give an amount such as 100000, 250k, 1.5m or 2b",
        )
    return number


def parse_symbols(values: list[str] | str) -> list[str]:
    """Validated, upper-cased, de-duplicated symbols in the given order (`AAPL,msft` or a list)."""
    items = values.replace(",", " ").split() if isinstance(values, str) else list(values)
    result: list[str] = []
    for item in items:
        for part in str(item).replace(",", " ").split():
            symbol = normalize_symbol(part)
            if symbol not in result:
                result.append(symbol)
    return result
