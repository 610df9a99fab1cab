"""Technical indicators as pure numpy functions, matching TA-Lib's conventions.

Every indicator takes 1-D arrays and returns float64 arrays of the same length, NaN during
warm-up exactly where TA-Lib puts NaN. Inputs must not contain NaN (the provider drops such
bars). Exponential smoothings are seeded like TA-Lib: with the simple average of the first
`n` values (EMA) or of the first `n` changes (RSI, ATR), then smoothed bar by bar.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stock_agent.core.limits import TRADING_DAYS_PER_YEAR

Array = NDArray[np.float64]


def _as_float(x: ArrayLike, name: str = "x") -> Array:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_period(n: int, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{name} must be a positive whole number, got {n!r}")
    return int(n)


def _window_mean(x: Array, n: int) -> Array:
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        # A mean per window rather than a running sum: no drift on long series.
        out[n - 1 :] = np.lib.stride_tricks.sliding_window_view(x, n).mean(axis=1)
    return out


def sma(x: ArrayLike, n: int) -> Array:
    """Simple moving average; NaN for the first n-1 values (talib.SMA)."""
    n = _check_period(n)
    return _window_mean(_as_float(x), n)


def _ema_from(x: Array, n: int, seed_end: int, out: Array) -> None:
    """Fill out[seed_end:] with the EMA of x, seeded with mean(x[seed_end-n+1 : seed_end+1])."""
    alpha = 2.0 / (n + 1)
    prev = float(np.mean(x[seed_end - n + 1 : seed_end + 1]))
    out[seed_end] = prev
    values = x.tolist()  # plain floats make the recursion several times faster
    for i in range(seed_end + 1, len(values)):
        prev = (values[i] - prev) * alpha + prev
        out[i] = prev


def ema(x: ArrayLike, n: int) -> Array:
    """Exponential moving average, alpha 2/(n+1), seeded with the SMA of the first n values (talib.EMA)."""
    n = _check_period(n)
    arr = _as_float(x)
    out = np.full(arr.shape, np.nan)
    if len(arr) >= n:
        _ema_from(arr, n, n - 1, out)
    return out


def rsi(close: ArrayLike, n: int = 14) -> Array:
    """Relative strength index with Wilder smoothing (talib.RSI); first value at index n.

    The first average gain and loss are the simple averages of the first n changes. Like
    TA-Lib, 0 (not 50) while both averages are exactly zero (a price flat since the first
    bar); after any move they only decay, so a later flat stretch keeps the last value.
    """
    n = _check_period(n)
    arr = _as_float(close, "close")
    out = np.full(arr.shape, np.nan)
    if len(arr) <= n:
        return out
    diff = np.diff(arr)
    gains = np.where(diff > 0, diff, 0.0).tolist()
    losses = np.where(diff < 0, -diff, 0.0).tolist()
    avg_gain = math.fsum(gains[:n]) / n
    avg_loss = math.fsum(losses[:n]) / n

    def value(g: float, lo: float) -> float:
        total = g + lo
        return 100.0 * g / total if total != 0.0 else 0.0

    out[n] = value(avg_gain, avg_loss)
    for i in range(n, len(diff)):
        avg_gain = (avg_gain * (n - 1) + gains[i]) / n
        avg_loss = (avg_loss * (n - 1) + losses[i]) / n
        out[i + 1] = value(avg_gain, avg_loss)
    return out


def macd(
    close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[Array, Array, Array]:
    """MACD line, signal line and histogram, exactly as talib.MACD.

    TA-Lib starts the fast EMA late so that its SMA seed ends on the same bar as the slow
    one (bar slow-1), instead of seeding it on the first `fast` bars; this changes the
    values for a long time after warm-up. All three outputs are NaN until the signal line
    exists, at index slow + signal - 2 (33 for 12/26/9), as in TA-Lib.
    """
    fast, slow, signal = (
        _check_period(p, name) for p, name in ((fast, "fast"), (slow, "slow"), (signal, "signal"))
    )
    if slow < fast:
        fast, slow = slow, fast  # TA-Lib swaps them too
    arr = _as_float(close, "close")
    size = len(arr)
    line = np.full(size, np.nan)
    sig = np.full(size, np.nan)
    start = slow - 1
    first = start + signal - 1
    if size <= first:
        return line, sig.copy(), sig
    fast_ema = np.full(size, np.nan)
    slow_ema = np.full(size, np.nan)
    _ema_from(arr, fast, start, fast_ema)
    _ema_from(arr, slow, start, slow_ema)
    full_line = fast_ema - slow_ema
    signal_part = np.full(size - start, np.nan)
    _ema_from(full_line[start:], signal, signal - 1, signal_part)
    line[first:] = full_line[first:]
    sig[start:] = signal_part
    return line, sig, line - sig


def bbands(close: ArrayLike, n: int = 20, k: float = 2.0) -> tuple[Array, Array, Array]:
    """Bollinger Bands (upper, middle, lower): SMA(n) +/- k population standard deviations (talib.BBANDS)."""
    n = _check_period(n)
    arr = _as_float(close, "close")
    middle = _window_mean(arr, n)
    std = np.full(arr.shape, np.nan)
    if len(arr) >= n:
        std[n - 1 :] = np.lib.stride_tricks.sliding_window_view(arr, n).std(axis=1, ddof=0)
    return middle + k * std, middle, middle - k * std


def true_range(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> Array:
    """max(high-low, |high-prev close|, |low-prev close|); NaN on the first bar (talib.TRANGE)."""
    h, lo, c = _as_float(high, "high"), _as_float(low, "low"), _as_float(close, "close")
    if not (len(h) == len(lo) == len(c)):
        raise ValueError("high, low and close must have the same length")
    out = np.full(c.shape, np.nan)
    if len(c) >= 2:
        prev = c[:-1]
        out[1:] = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - prev), np.abs(lo[1:] - prev)])
    return out


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, n: int = 14) -> Array:
    """Average true range with Wilder smoothing (talib.ATR); first value at index n, the mean of TR[1..n]."""
    n = _check_period(n)
    tr = true_range(high, low, close)
    out = np.full(tr.shape, np.nan)
    if len(tr) <= n:
        return out
    values = tr.tolist()
    prev = math.fsum(values[1 : n + 1]) / n
    out[n] = prev
    for i in range(n + 1, len(values)):
        prev = (prev * (n - 1) + values[i]) / n
        out[i] = prev
    return out


def simple_returns(close: ArrayLike) -> Array:
    """close[i] / close[i-1] - 1, NaN on the first bar."""
    arr = _as_float(close, "close")
    out = np.full(arr.shape, np.nan)
    if len(arr) >= 2:
        out[1:] = arr[1:] / arr[:-1] - 1.0
    return out


def annualized_volatility(close: ArrayLike, window: int) -> Array:
    """Rolling standard deviation (ddof=1) of the last `window` daily simple returns, times sqrt(252).

    The first value is at index `window` (it needs window + 1 closes).
    """
    window = _check_period(window, "window")
    if window < 2:
        raise ValueError("window must be at least 2 returns")
    rets = simple_returns(close)[1:]
    out = np.full(len(rets) + 1, np.nan)
    if len(rets) >= window:
        windows = np.lib.stride_tricks.sliding_window_view(rets, window)
        out[window:] = windows.std(axis=1, ddof=1) * math.sqrt(TRADING_DAYS_PER_YEAR)
    return out


def max_drawdown(close: ArrayLike) -> float:
    """Largest fall from a running peak, as a fraction (e.g. -0.25); 0.0 if the price never fell.

    NaN for an empty series.
    """
    arr = _as_float(close, "close")
    if len(arr) == 0:
        return math.nan
    peaks = np.maximum.accumulate(arr)
    return float(min(0.0, np.min(arr / peaks - 1.0)))


def beta(stock_close: ArrayLike, market_close: ArrayLike) -> float:
    """cov(r_stock, r_market) / var(r_market) of simple returns, both with ddof=1.

    The two series must be aligned on the same dates. NaN with fewer than 2 returns or a
    market whose returns do not vary.
    """
    s, m = _as_float(stock_close, "stock_close"), _as_float(market_close, "market_close")
    if len(s) != len(m):
        raise ValueError("stock_close and market_close must be aligned (same length)")
    rs, rm = simple_returns(s)[1:], simple_returns(m)[1:]
    if len(rs) < 2:
        return math.nan
    var = float(np.var(rm, ddof=1))
    if var == 0.0:
        return math.nan
    cov = float(np.sum((rs - rs.mean()) * (rm - rm.mean())) / (len(rs) - 1))
    return cov / var
