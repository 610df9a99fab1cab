"""The analysis of one symbol's daily bars as a typed `Analysis`. Pure: no I/O.

`analyze_bars` gives the base result, the same for every user and so cacheable;
`core.personalise` returns a copy with one user's drop alert and position size.

Words follow the numbers: comparisons allow for floating-point noise (values within
TOLERANCE x the price are equal), a series that did not move over an indicator's window is
"flat" (not oversold, not bearish), and ties are ties. What is decided by a threshold (the
alert, the position size) uses the unrounded values carried in `Analysis.unrounded`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from stock_agent import errors
from stock_agent.core import indicators as ind
from stock_agent.core import numbers as num
from stock_agent.core.limits import TRADING_DAYS_PER_YEAR
from stock_agent.core.models import (
    Analysis,
    CalendarReturns,
    CalendarStarts,
    Indicators,
    Returns,
    Signal,
    Unrounded,
)
from stock_agent.core.personalise import apply_profile, personalise
from stock_agent.core.symbols import normalize_symbol

__all__ = ["analyze_bars", "apply_profile", "personalise"]

# Windows in bars (trading days). "1y" and "52 weeks" are the last 252 bars.
RETURN_WINDOWS = Returns.windows
YEAR = TRADING_DAYS_PER_YEAR
SMA_WINDOWS = (20, 50, 200)
# Beta needs this many daily returns on dates shared with the benchmark within the symbol's
# last year (its last 252 bars): a benchmark that ends early gives no beta, not an old one.
BETA_MIN_RETURNS = 200
# Price-like values closer than this fraction of the price are equal (float noise is ~1e-14).
TOLERANCE = 1e-9
RSI_OVERBOUGHT, RSI_OVERSOLD = 70.0, 30.0
MACD_CROSS_BARS = 5  # a MACD crossover is news for this many bars
SMA_CROSS_BARS = 20  # a golden/death cross is news for this many bars
VOLUME_SPIKE = 2.0  # today's volume vs the average of the previous 20 bars

_COLUMNS = ["High", "Low", "Close", "Volume"]


def analyze_bars(
    symbol: str,
    bars: pd.DataFrame,
    benchmark: pd.DataFrame | None = None,
    *,
    benchmark_symbol: str = "SPY",
) -> Analysis:
    """Returns, indicators, 52-week range, volume, beta and signals from daily bars.

    Everything is computed from the bars as given (their last bar is "today"). A value
    that cannot be computed is None, with a line in `notes` saying why; the result holds
    only str/int/float/bool/None/list/dict and never NaN or infinity. Rounding: prices
    and price-like indicators to 4 decimals (4 significant digits below 1), fractions
    (returns, volatility, drawdown, distances) to 6 decimals, RSI to 2.

    Conventions: N-bar returns compare the last close with the close N bars earlier;
    `ytd` starts from the last close of the previous calendar year (or the first bar of
    this year when there is none); volatility is the annualised sample std of daily
    simple returns; `volume_avg_20d` averages the 20 bars *before* the last one, so a
    spike does not inflate its own baseline; beta uses the simple returns on the dates
    both series share within the symbol's last 252 bars, and needs at least 200 of them.
    `returns_calendar` gives returns over calendar months with the dates they start from.
    """
    symbol = normalize_symbol(symbol)
    notes: list[str] = []
    frame = _prepare(bars, symbol, notes)
    close = frame["Close"].to_numpy()
    high = frame["High"].to_numpy()
    low = frame["Low"].to_numpy()
    volume = frame["Volume"].to_numpy()
    n = len(close)
    price = float(close[-1])
    tol = TOLERANCE * abs(price)

    def need(name: str, bars_needed: int) -> bool:
        if n >= bars_needed:
            return True
        notes.append(f"{name} needs {bars_needed} bars, have {n}")
        return False

    returns: dict[str, float | None] = {}
    for key, k in RETURN_WINDOWS.items():
        returns[key] = _frac(price / close[-1 - k] - 1.0) if need(f"return {key}", k + 1) else None
    returns["ytd"] = _ytd(frame, notes)
    change_1d = float(price / close[-2] - 1.0) if n >= 2 else None
    calendar = _calendar_returns(frame, notes)

    values: dict[str, Any] = {}
    for w in SMA_WINDOWS:
        values[f"sma_{w}"] = _last(ind.sma(close, w)) if need(f"sma_{w}", w) else None
    values["ema_20"] = _last(ind.ema(close, 20)) if need("ema_20", 20) else None
    rsi = ind.rsi(close, 14)
    values["rsi_14"] = _last(rsi) if need("rsi_14", 15) else None
    line, signal, hist = ind.macd(close, 12, 26, 9)
    has_macd = need("macd", 34)
    values["macd"], values["macd_signal"], values["macd_hist"] = (
        (_last(line), _last(signal), _last(hist)) if has_macd else (None, None, None)
    )
    upper, middle, lower = ind.bbands(close, 20, 2.0)
    has_bb = need("bollinger bands", 20)
    values["bb_upper"], values["bb_middle"], values["bb_lower"] = (
        (_last(upper), _last(middle), _last(lower)) if has_bb else (None, None, None)
    )
    values["atr_14"] = _last(ind.atr(high, low, close, 14)) if need("atr_14", 15) else None
    values["volatility_20d"] = (
        _last(ind.annualized_volatility(close, 20)) if need("volatility_20d", 21) else None
    )
    values["volatility_1y"] = (
        _last(ind.annualized_volatility(close, YEAR)) if need("volatility_1y", YEAR + 1) else None
    )
    values["max_drawdown_1y"] = None
    if need("max_drawdown_1y", 2):
        values["max_drawdown_1y"] = ind.max_drawdown(close[-YEAR:])
        if n < YEAR:
            notes.append(f"max_drawdown_1y covers only {n} bars (less than a year)")
    beta, benchmark_used = _beta(frame, benchmark, benchmark_symbol, notes)
    values["beta"] = beta

    high_52w = float(np.max(high[-YEAR:]))
    low_52w = float(np.min(low[-YEAR:]))
    if n < YEAR:
        notes.append(f"high_52w and low_52w cover only {n} bars (less than 52 weeks)")

    volume_avg = volume_ratio = None
    if need("volume_avg_20d", 21):
        volume_avg = float(np.mean(volume[-21:-1]))
        volume_ratio = float(volume[-1]) / volume_avg if volume_avg > 0 else None

    indicators = {
        key: (_round_rsi(v) if key == "rsi_14" else _price_like(v))
        for key, v in values.items()
        if key not in ("volatility_20d", "volatility_1y", "max_drawdown_1y", "beta")
    }
    indicators["volatility_20d"] = _frac(values["volatility_20d"])
    indicators["volatility_1y"] = _frac(values["volatility_1y"])
    indicators["max_drawdown_1y"] = _frac(values["max_drawdown_1y"])
    indicators["beta"] = _round(beta, 4)

    signals: list[dict[str, str]] = []
    for w in SMA_WINDOWS:
        _trend_signal(signals, price, w, values[f"sma_{w}"], tol)
    if values["sma_200"] is not None:
        _sma_cross_signal(signals, ind.sma(close, 50), ind.sma(close, 200), tol)
    if values["rsi_14"] is not None:
        _rsi_signal(signals, values["rsi_14"], _flat(close, 15, tol))
    if has_macd:
        _macd_signal(signals, line, signal, tol, _flat(close, 34, tol))
    if has_bb:
        _bollinger_signal(
            signals, price, values["bb_upper"], values["bb_middle"], values["bb_lower"], tol
        )
    if volume_ratio is not None:
        state = "spike" if volume_ratio >= VOLUME_SPIKE else "normal"
        signals.append(
            {
                "name": "volume",
                "state": state,
                "text": f"volume {volume_ratio:.1f}x its 20-day average"
                + (" (a spike)" if state == "spike" else ""),
            }
        )

    return Analysis(
        symbol=symbol,
        as_of=frame.index[-1].date().isoformat(),
        price=_price_like(price) or 0.0,
        bars=n,
        returns=Returns(**{_RETURN_FIELDS[k]: v for k, v in returns.items()}),
        indicators=Indicators(**indicators),
        high_52w=_price_like(high_52w),
        low_52w=_price_like(low_52w),
        pct_from_high_52w=_frac(price / high_52w - 1.0) if high_52w > 0 else None,
        pct_from_low_52w=_frac(price / low_52w - 1.0) if low_52w > 0 else None,
        volume=int(volume[-1]),
        volume_avg_20d=None if volume_avg is None else int(round(volume_avg)),
        volume_ratio_20d=_round(volume_ratio, 4),
        benchmark=benchmark_used,
        signals=tuple(Signal(**s) for s in signals),
        notes=tuple(notes),
        returns_calendar=calendar,
        unrounded=Unrounded(price=price, change_1d=num.finite(change_1d), atr_14=values["atr_14"]),
    )


_RETURN_FIELDS = {v: k for k, v in Returns.json_names.items()} | {"ytd": "ytd"}


# --- preparation ----------------------------------------------------------------------------


def _prepare(bars: pd.DataFrame, symbol: str, notes: list[str]) -> pd.DataFrame:
    if not isinstance(bars, pd.DataFrame):
        raise errors.DataSourceError(f"daily bars for {symbol} are not a table")
    if bars.empty:
        raise errors.UnknownSymbol(symbol, "no daily bars to analyze")
    missing = [c for c in _COLUMNS if c not in bars.columns]
    if missing:
        raise errors.DataSourceError(f"daily bars for {symbol} lack {', '.join(missing)}")
    try:
        frame = bars[_COLUMNS].astype("float64")
        index = pd.DatetimeIndex(bars.index)
    except (TypeError, ValueError) as exc:
        raise errors.DataSourceError(f"daily bars for {symbol} are unreadable: {exc}") from exc
    if index.tz is not None:
        index = index.tz_localize(None)
    frame.index = index.normalize()
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    prices = frame[["High", "Low", "Close"]]
    usable = np.isfinite(prices.to_numpy()).all(axis=1) & (frame["Close"].to_numpy() > 0)
    if not usable.all():
        notes.append(f"skipped {int((~usable).sum())} bar(s) without a usable price")
        frame = frame[usable]
    if frame.empty:
        raise errors.UnknownSymbol(symbol, "no usable daily bars to analyse")
    frame["Volume"] = frame["Volume"].where(np.isfinite(frame["Volume"]), 0.0)
    return frame


def _ytd(frame: pd.DataFrame, notes: list[str]) -> float | None:
    close = frame["Close"]
    last_date = frame.index[-1]
    before = close[frame.index.year < last_date.year]
    if len(before):
        return _frac(close.iloc[-1] / before.iloc[-1] - 1.0)
    if len(close) >= 2:
        notes.append(
            f"return ytd measured from the first bar ({frame.index[0].date().isoformat()}): "
            f"no bar before {last_date.year}"
        )
        return _frac(close.iloc[-1] / close.iloc[0] - 1.0)
    notes.append("return ytd needs a bar before the last one")
    return None


def _calendar_returns(frame: pd.DataFrame, notes: list[str]) -> CalendarReturns:
    """Returns over calendar months, as finance sites give them: the last close against the
    last close on or before the same date N months earlier; ytd against the last close of the
    previous year. A period the history does not reach is None (one note names them)."""
    close = frame["Close"]
    last_date = frame.index[-1]
    price = float(close.iloc[-1])
    values: dict[str, float | None] = {}
    starts: dict[str, str | None] = {}
    missing: list[str] = []

    def start_at(name: str, before: pd.Series) -> None:
        if len(before) == 0:
            values[name], starts[name] = None, None
            missing.append(name)
            return
        values[name] = _frac(price / float(before.iloc[-1]) - 1.0)
        starts[name] = before.index[-1].date().isoformat()

    for name, months in CalendarReturns.months.items():
        target = last_date - pd.DateOffset(months=months)
        start_at(name, close[close.index <= target])
    start_at("ytd", close[close.index.year < last_date.year])
    if missing:
        notes.append(
            f"calendar return(s) {', '.join(missing)}: no close before their start "
            f"(history from {frame.index[0].date().isoformat()})"
        )
    fields = {_CALENDAR_FIELDS[k]: v for k, v in values.items()}
    since = CalendarStarts(**{_CALENDAR_FIELDS[k]: v for k, v in starts.items()})
    return CalendarReturns(as_of=last_date.date().isoformat(), since=since, **fields)


_CALENDAR_FIELDS = {"1m": "m1", "3m": "m3", "6m": "m6", "1y": "y1", "ytd": "ytd"}


def _beta(
    frame: pd.DataFrame,
    benchmark: pd.DataFrame | None,
    benchmark_symbol: str,
    notes: list[str],
) -> tuple[float | None, str | None]:
    """Beta over the symbol's last year (its last 252 bars), on the dates both series share;
    None with a note when they share fewer than BETA_MIN_RETURNS returns there (a benchmark
    that ends early is named with its last date: an older window is never used instead)."""
    if benchmark is None or not isinstance(benchmark, pd.DataFrame) or benchmark.empty:
        notes.append(f"beta skipped: no data for benchmark {benchmark_symbol}")
        return None, None
    if "Close" not in benchmark.columns:
        notes.append(f"beta skipped: benchmark {benchmark_symbol} has no Close prices")
        return None, None
    index = pd.DatetimeIndex(benchmark.index)
    if index.tz is not None:
        index = index.tz_localize(None)
    market = pd.Series(benchmark["Close"].to_numpy(dtype="float64"), index=index.normalize())
    market = market[~market.index.duplicated(keep="last")].sort_index()
    market = market[np.isfinite(market.to_numpy()) & (market.to_numpy() > 0)]
    own = frame["Close"].iloc[-(YEAR + 1) :]
    joined = pd.concat([own, market], axis=1, join="inner").sort_index()
    count = max(len(joined) - 1, 0)
    if count < BETA_MIN_RETURNS:
        last_own = frame.index[-1].date().isoformat()
        if len(market) and market.index[-1] < frame.index[-1]:
            notes.append(
                f"beta skipped: benchmark {benchmark_symbol} ends on "
                f"{market.index[-1].date().isoformat()}, before {last_own}; {count} daily "
                f"returns shared in the last year, need {BETA_MIN_RETURNS}"
            )
        else:
            notes.append(
                f"beta skipped: {count} daily returns on dates shared with {benchmark_symbol} "
                f"in the last year, need {BETA_MIN_RETURNS}"
            )
        return None, None
    value = ind.beta(joined.iloc[:, 0].to_numpy(), joined.iloc[:, 1].to_numpy())
    if not math.isfinite(value):
        notes.append(f"beta skipped: {benchmark_symbol} did not move")
        return None, None
    return value, benchmark_symbol


# --- signals --------------------------------------------------------------------------------


def _flat(close: np.ndarray, bars: int, tol: float) -> bool:
    """Whether the last `bars` closes are all equal within `tol` (no movement to read)."""
    window = close[-bars:]
    return len(window) >= 2 and float(np.max(window) - np.min(window)) <= tol


def _sign(value: float, tol: float) -> int:
    """-1, 0 or 1, with values within `tol` of zero counted as zero (a tie)."""
    return 0 if abs(value) <= tol else (1 if value > 0 else -1)


def _trend_signal(
    signals: list[dict[str, str]], price: float, window: int, sma: float | None, tol: float
) -> None:
    if sma is None or sma <= 0:
        return
    side = _sign(price - sma, tol)
    state = "above" if side > 0 else "below" if side < 0 else "at"
    gap = price / sma - 1.0
    where = "at" if state == "at" else f"{abs(gap):.1%} {state}"
    signals.append(
        {
            "name": f"sma_{window}",
            "state": state,
            "text": f"price {where} its {window}-day average ({_fmt(sma)})",
        }
    )


def _last_cross(
    fast: np.ndarray, slow: np.ndarray, bars: int, tol: float
) -> tuple[str, int] | None:
    """The most recent crossing of `fast` over `slow` within the last `bars` bars:
    ("up" or "down", bars ago; 0 = on the last bar). Differences within `tol` are ties, so
    float noise on a flat stretch is no crossing."""
    diff = fast - slow
    size = len(diff)
    for ago in range(min(bars, size - 1)):
        i = size - 1 - ago
        before, now = diff[i - 1], diff[i]
        if not (np.isfinite(before) and np.isfinite(now)):
            return None
        was, is_ = _sign(float(before), tol), _sign(float(now), tol)
        if was <= 0 < is_:
            return "up", ago
        if was >= 0 > is_:
            return "down", ago
    return None


def _ago(bars: int) -> str:
    return "on the last bar" if bars == 0 else f"{bars} bar{'s' if bars > 1 else ''} ago"


def _sma_cross_signal(
    signals: list[dict[str, str]], sma50: np.ndarray, sma200: np.ndarray, tol: float
) -> None:
    cross = _last_cross(sma50, sma200, SMA_CROSS_BARS, tol)
    if cross:
        direction, ago = cross
        state = "golden_cross" if direction == "up" else "death_cross"
        side = "above" if direction == "up" else "below"
        text = (
            f"{state.replace('_', ' ')}: the 50-day average crossed {side} the 200-day {_ago(ago)}"
        )
    else:
        side_sign = _sign(float(sma50[-1] - sma200[-1]), tol)
        if side_sign == 0:
            state, text = "tie", "the 50-day average equals the 200-day"
        else:
            state = "bullish" if side_sign > 0 else "bearish"
            side = "above" if side_sign > 0 else "below"
            text = f"the 50-day average is {side} the 200-day (no cross in {SMA_CROSS_BARS} bars)"
    signals.append({"name": "sma_50_200", "state": state, "text": text})


def _rsi_signal(signals: list[dict[str, str]], rsi: float, flat: bool) -> None:
    if flat:
        # RSI is 0 (TA-Lib) or frozen at its last value when nothing moves: not a reading.
        signals.append(
            {"name": "rsi_14", "state": "flat", "text": "RSI(14): no movement in the last 14 bars"}
        )
        return
    if rsi > RSI_OVERBOUGHT:
        state, why = "overbought", f"above {RSI_OVERBOUGHT:g}"
    elif rsi < RSI_OVERSOLD:
        state, why = "oversold", f"below {RSI_OVERSOLD:g}"
    else:
        state, why = "neutral", f"between {RSI_OVERSOLD:g} and {RSI_OVERBOUGHT:g}"
    signals.append(
        {"name": "rsi_14", "state": state, "text": f"RSI(14) {rsi:.1f}: {state} ({why})"}
    )


def _macd_signal(
    signals: list[dict[str, str]], line: np.ndarray, signal: np.ndarray, tol: float, flat: bool
) -> None:
    if flat:
        signals.append(
            {"name": "macd", "state": "flat", "text": "MACD: no movement in the last 34 bars"}
        )
        return
    cross = _last_cross(line, signal, MACD_CROSS_BARS, tol)
    if cross:
        direction, ago = cross
        state = "bullish_crossover" if direction == "up" else "bearish_crossover"
        side = "above" if direction == "up" else "below"
        text = f"MACD crossed {side} its signal line {_ago(ago)}"
    else:
        side_sign = _sign(float(line[-1] - signal[-1]), tol)
        if side_sign == 0:
            state, text = "tie", "MACD at its signal line"
        else:
            state = "bullish" if side_sign > 0 else "bearish"
            side = "above" if side_sign > 0 else "below"
            text = f"MACD {side} its signal line (no crossover in {MACD_CROSS_BARS} bars)"
    signals.append({"name": "macd", "state": state, "text": text})


def _bollinger_signal(
    signals: list[dict[str, str]],
    price: float,
    upper: float,
    middle: float,
    lower: float,
    tol: float,
) -> None:
    width = upper - lower
    if width <= tol:
        # Bands narrower than float noise: the last 20 closes were all the same.
        signals.append(
            {
                "name": "bollinger",
                "state": "flat",
                "text": "the bands are flat: no movement in the last 20 bars",
            }
        )
        return
    percent_b = (price - lower) / width
    if _sign(price - upper, tol) > 0:
        state, where = "above_upper", "above the upper band"
    elif _sign(price - lower, tol) < 0:
        state, where = "below_lower", "below the lower band"
    elif _sign(price - middle, tol) > 0:
        state, where = "upper_half", "in the upper half of the bands"
    elif _sign(price - middle, tol) < 0:
        state, where = "lower_half", "in the lower half of the bands"
    else:
        state, where = "middle", "at the middle band"
    signals.append(
        {"name": "bollinger", "state": state, "text": f"price {where} (%B {percent_b:.2f})"}
    )


# --- numbers --------------------------------------------------------------------------------


def _last(values: np.ndarray) -> float | None:
    return num.finite(values[-1]) if len(values) else None


_round = num.rounded
_frac = num.fraction
_round_rsi = num.rsi
_price_like = num.price
_fmt = num.short_price
