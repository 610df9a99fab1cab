"""Indicators against TA-Lib on long series, and the simple statistics by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib

from stock_agent.core import indicators as ind

RTOL = 1e-6
# Only for values that cross zero (the MACD histogram, the MACD line itself), where a relative
# error is meaningless; every other value is held to RTOL alone in practice.
ATOL = 1e-9


def random_walk(seed: int, size: int = 2000, start: float = 100.0, vol: float = 0.02):
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, vol, size)))
    spread = rng.uniform(0.0, 0.02, size)
    high = close * (1 + spread * rng.uniform(0.2, 1.0, size))
    low = close * (1 - spread * rng.uniform(0.2, 1.0, size))
    return high, low, close


def trending(size: int = 1500):
    rng = np.random.default_rng(99)
    close = 20.0 + 0.15 * np.arange(size) + rng.normal(0.0, 0.3, size)
    return close + 0.4, close - 0.4, close


def with_flat_stretches(size: int = 1200):
    """Flat at the start (longer than any warm-up) and in two places in the middle."""
    high, low, close = random_walk(7, size)
    for start, stop in ((0, 60), (400, 470), (900, 930)):
        level = close[start - 1] if start else 50.0
        close[start:stop] = level
        high[start:stop] = level
        low[start:stop] = level
    return high, low, close


SERIES = {
    "walk-1": random_walk(1),
    "walk-2": random_walk(2, vol=0.035),
    "walk-3": random_walk(3, start=5.0, vol=0.01),
    "trend": trending(),
    "flat": with_flat_stretches(),
}


def assert_matches(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.dtype == np.float64
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg="NaN positions differ")
    valid = ~np.isnan(ref)
    assert valid.sum() > 900, "the comparison must cover a long stretch after warm-up"
    np.testing.assert_allclose(ours[valid], ref[valid], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("n", [5, 20, 50, 200])
def test_sma_matches_talib(name, n):
    _, _, close = SERIES[name]
    assert_matches(ind.sma(close, n), talib.SMA(close, n))


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("n", [2, 9, 20, 50])
def test_ema_matches_talib(name, n):
    _, _, close = SERIES[name]
    assert_matches(ind.ema(close, n), talib.EMA(close, n))


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("n", [2, 14, 30])
def test_rsi_matches_talib(name, n):
    _, _, close = SERIES[name]
    assert_matches(ind.rsi(close, n), talib.RSI(close, n))


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("periods", [(12, 26, 9), (5, 35, 5), (26, 12, 9)])
def test_macd_matches_talib(name, periods):
    _, _, close = SERIES[name]
    for ours, ref in zip(ind.macd(close, *periods), talib.MACD(close, *periods), strict=True):
        assert_matches(ours, ref)


def test_macd_alignment_matters():
    """A MACD seeded the textbook way (fast EMA on the first 12 bars) is measurably different:
    the comparison above would catch an implementation that ignored TA-Lib's alignment."""
    _, _, close = SERIES["walk-1"]
    naive = ind.ema(close, 12) - ind.ema(close, 26)
    line, _, _ = talib.MACD(close, 12, 26, 9)
    assert abs(naive[33] - line[33]) / abs(line[33]) > 1e-3


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize(("n", "k"), [(20, 2.0), (10, 1.5), (50, 3.0)])
def test_bbands_match_talib(name, n, k):
    _, _, close = SERIES[name]
    ours = ind.bbands(close, n, k)
    ref = talib.BBANDS(close, timeperiod=n, nbdevup=k, nbdevdn=k, matype=0)
    for a, b in zip(ours, ref, strict=True):
        assert_matches(a, b)


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("n", [7, 14, 30])
def test_atr_matches_talib(name, n):
    high, low, close = SERIES[name]
    assert_matches(ind.atr(high, low, close, n), talib.ATR(high, low, close, n))


@pytest.mark.parametrize("name", SERIES)
def test_true_range_matches_talib(name):
    high, low, close = SERIES[name]
    assert_matches(ind.true_range(high, low, close), talib.TRANGE(high, low, close))


def test_rsi_of_a_flat_price_is_zero_like_talib():
    flat = np.full(30, 10.0)
    np.testing.assert_array_equal(ind.rsi(flat)[14:], 0.0)


def test_rsi_of_a_rising_price_is_100():
    assert ind.rsi(np.arange(1.0, 31.0))[-1] == pytest.approx(100.0)


def test_warm_up_only_when_too_short():
    """Fewer bars than a warm-up needs: all NaN, no error, same length."""
    short = np.array([10.0, 11.0, 10.5])
    for out in (ind.sma(short, 5), ind.ema(short, 5), ind.rsi(short), ind.atr(short, short, short)):
        assert len(out) == 3 and np.isnan(out).all()
    for out in (*ind.macd(short), *ind.bbands(short)):
        assert len(out) == 3 and np.isnan(out).all()
    assert np.isnan(ind.sma(np.array([]), 3)).shape == (0,)


def test_small_values_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(ind.sma(x, 2), [np.nan, 1.5, 2.5, 3.5, 4.5])
    # seed = mean(1, 2, 3) = 2; alpha = 0.5: 2 + 0.5*(4-2) = 3; 3 + 0.5*(5-3) = 4
    np.testing.assert_allclose(ind.ema(x, 3), [np.nan, np.nan, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(ind.simple_returns([100.0, 110.0, 99.0]), [np.nan, 0.1, -0.1])
    upper, middle, lower = ind.bbands([1.0, 3.0], 2, 2.0)  # population std of (1, 3) is 1
    assert (upper[1], middle[1], lower[1]) == (4.0, 2.0, 0.0)


def test_true_range_uses_the_previous_close_on_gaps():
    high = np.array([10.0, 12.0, 8.0])
    low = np.array([9.0, 11.0, 7.5])
    close = np.array([9.5, 11.5, 7.8])
    # bar 1 gaps up: high - prev close = 2.5; bar 2 gaps down: prev close - low = 4.0
    np.testing.assert_allclose(ind.true_range(high, low, close), [np.nan, 2.5, 4.0])


def test_max_drawdown_by_hand():
    assert ind.max_drawdown([100.0, 120.0, 90.0, 130.0, 65.0, 140.0]) == pytest.approx(-0.5)
    assert ind.max_drawdown([100.0, 120.0, 90.0, 110.0]) == pytest.approx(-0.25)
    assert ind.max_drawdown([1.0, 2.0, 3.0]) == 0.0
    assert ind.max_drawdown([5.0]) == 0.0
    assert math.isnan(ind.max_drawdown([]))


def test_annualized_volatility_matches_pandas_rolling_std():
    _, _, close = SERIES["walk-2"]
    expected = pd.Series(close).pct_change().rolling(20).std(ddof=1).to_numpy() * math.sqrt(252)
    ours = ind.annualized_volatility(close, 20)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    np.testing.assert_allclose(ours[20:], expected[20:], rtol=1e-9)
    assert np.isnan(ours[:20]).all() and not np.isnan(ours[20])


def test_annualized_volatility_by_hand():
    # returns +10%, -10%: mean 0, sample std = sqrt(0.02 / 1)
    out = ind.annualized_volatility([100.0, 110.0, 99.0], 2)
    assert out[2] == pytest.approx(math.sqrt(0.02) * math.sqrt(252))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_beta_matches_numpy_cov_over_var(seed):
    _, _, market = random_walk(seed, 500)
    rng = np.random.default_rng(seed + 100)
    r_m = market[1:] / market[:-1] - 1
    r_s = 1.3 * r_m + rng.normal(0.0, 0.01, len(r_m))
    stock = 50.0 * np.concatenate([[1.0], np.cumprod(1 + r_s)])
    expected = np.cov(r_s, r_m, ddof=1)[0, 1] / np.var(r_m, ddof=1)
    assert ind.beta(stock, market) == pytest.approx(expected, rel=1e-9)
    assert 1.0 < ind.beta(stock, market) < 1.6


def test_beta_of_a_leveraged_copy_is_exact():
    market = np.array([100.0, 101.0, 99.0, 102.0, 103.0])
    r_m = market[1:] / market[:-1] - 1
    stock = 10.0 * np.concatenate([[1.0], np.cumprod(1 + 2 * r_m)])
    assert ind.beta(stock, market) == pytest.approx(2.0, rel=1e-12)


def test_beta_degenerate_inputs():
    assert math.isnan(ind.beta([1.0, 2.0], [1.0, 2.0]))  # a single return
    assert math.isnan(ind.beta([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))  # the market never moves
    with pytest.raises(ValueError, match="aligned"):
        ind.beta([1.0, 2.0, 3.0], [1.0, 2.0])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_periods_are_refused(bad):
    with pytest.raises(ValueError, match="positive whole number"):
        ind.sma([1.0, 2.0], bad)


def test_accepts_lists_and_integer_arrays():
    out = ind.sma(np.array([1, 2, 3]), 2)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [np.nan, 1.5, 2.5])


def test_measured_agreement_is_far_inside_tolerance():
    """Record the worst relative error after warm-up over every series (for the report)."""
    worst = 0.0
    for high, low, close in SERIES.values():
        pairs = [
            (ind.sma(close, 20), talib.SMA(close, 20)),
            (ind.ema(close, 20), talib.EMA(close, 20)),
            (ind.rsi(close, 14), talib.RSI(close, 14)),
            (ind.atr(high, low, close, 14), talib.ATR(high, low, close, 14)),
            *zip(ind.bbands(close), talib.BBANDS(close, 20, 2.0, 2.0, 0), strict=True),
            *zip(ind.macd(close)[:2], talib.MACD(close)[:2], strict=True),
        ]
        for ours, ref in pairs:
            valid = ~np.isnan(ref) & (np.abs(ref) > 1e-3)
            worst = max(worst, float(np.max(np.abs(ours[valid] - ref[valid]) / np.abs(ref[valid]))))
    assert worst < 1e-9
