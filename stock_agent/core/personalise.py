"""One user's view of an analysis: the drop alert and the position size from their profile.

Light (stdlib only), so a cached analysis is personalised without numpy or pandas. The base
analysis is the same for every user; these functions return a copy and change nothing shared.
Both decide from the unrounded values the analysis carries (`Analysis.unrounded`): a -4.99996 %
day does not reach a -5 % threshold, and the 20 % cap holds at the real price.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from stock_agent import errors
from stock_agent.core import numbers as num
from stock_agent.core.models import Alert, Analysis, Position, Profile

RISK_PER_POSITION = 0.01  # of the portfolio, lost if the stop is hit
STOP_ATR_MULTIPLE = 2.0
MAX_POSITION = 0.20  # of the portfolio


def personalise(analysis: Analysis, profile: Profile | None) -> Analysis:
    """`analysis` with the user's alert and position (a profile of None changes nothing). A
    threshold of the symbol's own (`profile set-alert`) wins over the global one."""
    if profile is None:
        return analysis
    return apply_profile(
        analysis,
        alert_threshold=profile.threshold_for(analysis.symbol),
        portfolio_size=profile.portfolio_size,
    )


def apply_profile(
    analysis: Analysis,
    *,
    alert_threshold: float | None = None,
    portfolio_size: float | None = None,
) -> Analysis:
    """A copy of `analysis` with one user's drop alert and position size filled in.

    Alert: when the unrounded 1-day return is at or below `alert_threshold` (-0.05 = a drop
    of 5% or more), one `Alert(kind="drop", text, threshold, change_1d)`.

    Position (when `portfolio_size` is given): risk-based sizing. Risk 1% of the portfolio
    on the position with a stop 2 × ATR(14) below the price, so
    shares = floor(0.01 * portfolio / (2 * ATR)), then cap the position at 20% of the
    portfolio. `risk_amount` is what is lost if the stop is hit (shares × 2 × ATR, at
    most 1% of the portfolio). Without an ATR (under 15 bars of history) there is no
    stop to size from: the position is the 20% cap, `stop_price` and `risk_amount` are
    None, and a note says so. Fractional shares are never proposed.
    """
    notes: list[str] = list(analysis.notes)
    alerts: list[Alert] = []
    position: Position | None = None
    symbol = analysis.symbol

    def note(text: str) -> None:
        if text not in notes:
            notes.append(text)

    if alert_threshold is not None:
        threshold = _checked(alert_threshold, "alert_threshold", lambda t: -1 < t < 0)
        change = analysis.returns.d1
        exact = analysis.unrounded.change_1d if analysis.unrounded is not None else None
        if change is None:
            note("drop alert not checked: the 1-day return is not available")
        elif (exact if exact is not None else change) <= threshold:
            alerts.append(
                Alert(
                    kind="drop",
                    text=f"{symbol} moved {change:+.2%} in one day, "
                    f"at or below your alert threshold of {threshold:+.2%}",
                    threshold=threshold,
                    change_1d=change,
                )
            )

    if portfolio_size is not None:
        portfolio = _checked(portfolio_size, "portfolio_size", lambda p: p > 0)
        position = _position(analysis, portfolio, note)
    return dataclasses.replace(
        analysis, alerts=tuple(alerts), position=position, notes=tuple(notes)
    )


def _position(result: Analysis, portfolio: float, note: Callable[[str], None]) -> Position | None:
    exact = result.unrounded
    price = exact.price if exact is not None else result.price
    if not price > 0:
        note("position not sized: no price")
        return None
    atr = exact.atr_14 if exact is not None else result.indicators.atr_14
    cap_shares = math.floor(MAX_POSITION * portfolio / price)
    if isinstance(atr, int | float) and atr > 0:
        stop_distance = STOP_ATR_MULTIPLE * atr
        risk_shares = math.floor(RISK_PER_POSITION * portfolio / stop_distance)
        shares = min(risk_shares, cap_shares)
        method = "risk 1% of the portfolio with a stop 2 × ATR(14) below the price"
        if cap_shares < risk_shares:
            method += ", capped at 20% of the portfolio"
        stop_price: float | None = _price_like(max(price - stop_distance, 0.0))
        risk_amount: float | None = round(shares * stop_distance, 2)
    else:
        shares = cap_shares
        method = "20% of the portfolio (no ATR(14) to set a stop from)"
        stop_price = risk_amount = None
        note("position: ATR(14) unavailable, so sized at the 20% cap without a stop")
    if shares == 0:
        note("position: one share is more than the sizing allows")
    value = shares * price
    return Position(
        portfolio_size=portfolio,
        shares=int(shares),
        value=round(value, 2),
        pct_of_portfolio=_frac(value / portfolio),
        stop_price=stop_price,
        risk_amount=risk_amount,
        method=method,
    )


def _checked(value: Any, name: str, valid: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not valid(number):
        raise errors.InvalidInput(
            f"invalid {name} {value!r}",
            fix="alert_threshold is a drop such as -0.05; portfolio_size a positive amount",
        )
    return number


_frac = num.fraction
_price_like = num.price
