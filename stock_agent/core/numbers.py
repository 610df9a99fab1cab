"""The one place that cleans and rounds numbers.

Rules: NaN, infinities, booleans and non-numbers are None (never NaN in JSON); prices and
price-like indicators keep 4 decimals (4 significant digits below 1); fractions (returns,
volatility, distances) keep 6 decimals; RSI keeps 2. What the model reads is rounded further
(`for_model`) and shows fractions as percentages (`percent`).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any


def finite(value: Any) -> float | None:
    """`value` as a finite float; None for None, booleans, NaN, infinities and non-numbers.
    Accepts numpy scalars and numeric strings (as providers send them)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def rounded(value: Any, digits: int) -> float | None:
    number = finite(value)
    return None if number is None else round(number, digits)


def fraction(value: Any) -> float | None:
    """A fraction (0.0523 = 5.23 %), to 6 decimals."""
    return rounded(value, 6)


def rsi(value: Any) -> float | None:
    return rounded(value, 2)


def price(value: Any) -> float | None:
    """4 decimals, or 4 significant digits for values below 1 (penny stocks, MACD)."""
    number = finite(value)
    if number is None:
        return None
    if number == 0 or abs(number) >= 1:
        return round(number, 4)
    return float(f"{number:.4g}")


def percent(value: Any, digits: int = 1) -> float | None:
    """A fraction as a rounded percentage number (0.0523 -> 5.2)."""
    number = finite(value)
    return None if number is None else round(number * 100, digits)


def for_model(value: Any, digits: int = 2) -> Any:
    """Floats rounded for the model (to `digits` decimals, or 3 significant digits for small
    numbers), Nones dropped from dicts, recursively."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value != 0 and abs(value) < 1:
            return float(f"{value:.3g}")
        return round(value, digits)
    if isinstance(value, dict):
        return {k: for_model(v, digits) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [for_model(v, digits) for v in value]
    return value


def short_price(value: float) -> str:
    """A price in running text: 2 decimals, or 4 significant digits below 1."""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"


def jsonable(value: Any) -> Any:
    """`value` with numpy/pandas scalars, dates and tuples turned into plain JSON types;
    NaN and infinities become None (they are not JSON)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return jsonable(value.item())
    if hasattr(value, "tolist"):  # numpy array
        return jsonable(value.tolist())
    return str(value)
