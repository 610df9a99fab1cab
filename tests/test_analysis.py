"""The analysis (as its JSON form, `Analysis.to_dict()`): values by hand, short histories,
signals, beta, profile, JSON."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import talib

from stock_agent import errors
from stock_agent.core import analysis as _analysis
from stock_agent.core import personalise as _personalise
from stock_agent.core.models import Analysis
from stock_agent.providers.offline import CsvProvider
from tests.conftest import MARKET_DATA


def analyze_bars(*args, **kwargs) -> dict:
    """The typed analysis as the dict `analyze --json` prints, checked to round-trip."""
    result = _analysis.analyze_bars(*args, **kwargs)
    data = result.to_dict()
    assert Analysis.from_dict(json.loads(json.dumps(data))) == result
    return data


def apply_profile(data: dict, **kwargs) -> dict:
    return _personalise.apply_profile(Analysis.from_dict(data), **kwargs).to_dict()


TOP_LEVEL = [
    "symbol",
    "as_of",
    "price",
    "bars",
    "returns",
    "indicators",
    "high_52w",
    "low_52w",
    "pct_from_high_52w",
    "pct_from_low_52w",
    "volume",
    "volume_avg_20d",
    "volume_ratio_20d",
    "benchmark",
    "signals",
    "alerts",
    "position",
    "notes",
    # additions (issue 10): calendar returns, full-precision values, where and when from
    "returns_calendar",
    "unrounded",
    "source",
    "stale",
    "fetched_at",
]
RETURN_KEYS = ["1d", "5d", "1m", "3m", "6m", "1y", "ytd"]
INDICATOR_KEYS = [
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_20",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "volatility_20d",
    "volatility_1y",
    "max_drawdown_1y",
    "beta",
]


def make_bars(close, *, start="2024-01-02", high=None, low=None, volume=None, tz=None):
    close = np.asarray(close, dtype=float)
    index = pd.bdate_range(start, periods=len(close), tz=tz, name="Date")
    return pd.DataFrame(
        {
            "Open": close,
            "High": close * 1.01 if high is None else np.asarray(high, dtype=float),
            "Low": close * 0.99 if low is None else np.asarray(low, dtype=float),
            "Close": close,
            "Volume": np.full(len(close), 1e6) if volume is None else np.asarray(volume, float),
        },
        index=index,
    )


def dumps(result) -> str:
    return json.dumps(result, allow_nan=False, sort_keys=True)


def signal(result, name):
    found = [s for s in result["signals"] if s["name"] == name]
    assert len(found) == 1, f"expected one {name} signal, got {result['signals']}"
    return found[0]


@pytest.fixture(scope="module")
def offline():
    return CsvProvider(MARKET_DATA)


@pytest.fixture(scope="module")
def spy(offline):
    return offline.history("SPY")


# --- shape and JSON ------------------------------------------------------------------------


def test_full_history_has_every_field_and_no_gaps(offline, spy):
    result = analyze_bars("AAPL", offline.history("AAPL"), spy)
    assert list(result) == TOP_LEVEL
    assert list(result["returns"]) == RETURN_KEYS
    assert list(result["indicators"]) == INDICATOR_KEYS
    assert all(v is not None for v in result["returns"].values())
    assert all(v is not None for v in result["indicators"].values())
    assert result["symbol"] == "AAPL"
    assert result["as_of"] == "2026-11-20"
    assert result["benchmark"] == "SPY"
    assert result["alerts"] == [] and result["position"] is None
    assert result["notes"] == []
    assert {s["name"] for s in result["signals"]} == {
        "sma_20",
        "sma_50",
        "sma_200",
        "sma_50_200",
        "rsi_14",
        "macd",
        "bollinger",
        "volume",
    }
    for s in result["signals"]:
        assert set(s) == {"name", "state", "text"} and all(isinstance(v, str) for v in s.values())


def test_json_round_trip_is_exact_and_stable(offline, spy):
    bars = offline.history("TSLA")
    first = analyze_bars("TSLA", bars, spy)
    assert json.loads(dumps(first)) == first
    assert dumps(analyze_bars("TSLA", bars.copy(), spy.copy())) == dumps(first)
    profiled = apply_profile(first, alert_threshold=-0.05, portfolio_size=50_000)
    assert json.loads(dumps(profiled)) == profiled


def test_result_is_compact_enough_for_a_tool_reply(offline, spy):
    # The model reads `agent.format.summarize_analysis` of it; the JSON itself stays small too
    # (calendar returns with their dates and the unrounded values add about 350 characters).
    result = analyze_bars("MSFT", offline.history("MSFT"), spy)
    assert len(json.dumps(result, separators=(",", ":"))) < 2100


def test_only_plain_json_types(offline, spy):
    def walk(value):
        if isinstance(value, dict):
            assert all(isinstance(k, str) for k in value)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert value is None or type(value) in (str, int, float, bool), type(value)
            if isinstance(value, float):
                assert math.isfinite(value)

    walk(analyze_bars("NVDA", offline.history("NVDA"), spy))
    walk(analyze_bars("NEWCO", offline.history("NEWCO"), spy))


# --- values by hand ------------------------------------------------------------------------


def test_returns_by_hand():
    close = np.arange(1.0, 301.0)  # 300 bars, the last close is 300
    result = analyze_bars("TEST", make_bars(close))
    r = result["returns"]
    assert r["1d"] == round(300 / 299 - 1, 6)
    assert r["5d"] == round(300 / 295 - 1, 6)
    assert r["1m"] == round(300 / 279 - 1, 6)
    assert r["3m"] == round(300 / 237 - 1, 6)
    assert r["6m"] == round(300 / 174 - 1, 6)
    assert r["1y"] == round(300 / 48 - 1, 6)
    assert result["price"] == 300.0


def test_ytd_starts_from_the_last_close_of_the_previous_year():
    index = pd.to_datetime(["2025-12-30", "2025-12-31", "2026-01-02", "2026-01-05"])
    bars = make_bars([90.0, 100.0, 104.0, 110.0]).set_axis(index, axis=0)
    result = analyze_bars("TEST", bars)
    assert result["returns"]["ytd"] == pytest.approx(0.10)
    assert not any("ytd" in n for n in result["notes"])


def test_ytd_without_a_previous_year_starts_from_the_first_bar_and_says_so():
    bars = make_bars([50.0, 55.0, 60.0], start="2026-03-02")
    result = analyze_bars("TEST", bars)
    assert result["returns"]["ytd"] == pytest.approx(0.2)
    assert any("ytd measured from the first bar (2026-03-02)" in n for n in result["notes"])


def test_52_week_range_uses_highs_and_lows_of_the_last_252_bars():
    close = np.full(300, 100.0)
    high = close + 1.0
    low = close - 1.0
    high[10] = 500.0  # older than 52 weeks: ignored
    low[20] = 1.0  # older than 52 weeks: ignored
    high[-100] = 130.0
    low[-50] = 80.0
    result = analyze_bars("TEST", make_bars(close, high=high, low=low))
    assert result["high_52w"] == 130.0
    assert result["low_52w"] == 80.0
    assert result["pct_from_high_52w"] == round(100 / 130 - 1, 6)
    assert result["pct_from_low_52w"] == 0.25


def test_max_drawdown_1y_by_hand():
    # 260 bars: an old crash (outside the year), then a peak of 200 and a trough of 150.
    close = np.concatenate(
        [[100.0, 10.0], np.full(150, 120.0), [200.0], np.full(50, 150.0), np.full(57, 180.0)]
    )
    result = analyze_bars("TEST", make_bars(close))
    assert result["indicators"]["max_drawdown_1y"] == -0.25


def test_volume_average_excludes_the_last_bar_and_flags_a_spike():
    volume = np.full(40, 1_000_000.0)
    volume[-1] = 3_000_000.0
    result = analyze_bars("TEST", make_bars(np.linspace(10, 12, 40), volume=volume))
    assert result["volume"] == 3_000_000
    assert result["volume_avg_20d"] == 1_000_000
    assert result["volume_ratio_20d"] == 3.0
    assert signal(result, "volume")["state"] == "spike"
    volume[-1] = 1_500_000.0
    calm = analyze_bars("TEST", make_bars(np.linspace(10, 12, 40), volume=volume))
    assert signal(calm, "volume")["state"] == "normal"


def test_indicators_agree_with_talib_on_the_sample(offline):
    bars = offline.history("GOOGL")
    close, high, low = (bars[c].to_numpy() for c in ("Close", "High", "Low"))
    got = analyze_bars("GOOGL", bars)["indicators"]
    line, sig, hist = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    expected = {
        "sma_20": talib.SMA(close, 20)[-1],
        "sma_50": talib.SMA(close, 50)[-1],
        "sma_200": talib.SMA(close, 200)[-1],
        "ema_20": talib.EMA(close, 20)[-1],
        "rsi_14": talib.RSI(close, 14)[-1],
        "macd": line[-1],
        "macd_signal": sig[-1],
        "macd_hist": hist[-1],
        "bb_upper": upper[-1],
        "bb_middle": middle[-1],
        "bb_lower": lower[-1],
        "atr_14": talib.ATR(high, low, close, 14)[-1],
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=0.005 if key == "rsi_14" else 1e-4), key
    returns = pd.Series(close).pct_change()
    assert got["volatility_20d"] == pytest.approx(returns.tail(20).std() * math.sqrt(252), abs=1e-6)
    assert got["volatility_1y"] == pytest.approx(returns.tail(252).std() * math.sqrt(252), abs=1e-6)


def test_tz_aware_index_gives_the_same_result():
    close = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 120))
    naive = analyze_bars("TEST", make_bars(close))
    aware = analyze_bars("TEST", make_bars(close, tz="America/New_York"))
    assert dumps(aware) == dumps(naive)


def test_bars_without_a_price_are_skipped_with_a_note():
    close = np.linspace(100, 120, 60)
    bars = make_bars(close)
    bars.iloc[30, bars.columns.get_loc("Close")] = np.nan
    bars.iloc[31, bars.columns.get_loc("Volume")] = np.nan
    result = analyze_bars("TEST", bars)
    assert "skipped 1 bar(s) without a usable price" in result["notes"]
    dumps(result)


# --- short histories ------------------------------------------------------------------------


def assert_every_none_is_explained(result):
    notes = " | ".join(result["notes"])
    for key, value in result["returns"].items():
        if value is None:
            assert f"return {key}" in notes, key
    for key, value in result["indicators"].items():
        if value is None:
            label = (
                "macd" if key.startswith("macd") else "bollinger" if key.startswith("bb_") else key
            )
            assert label in notes, key
    for key in ("volume_avg_20d", "volume_ratio_20d"):
        if result[key] is None:
            assert "volume_avg_20d" in notes


def test_ten_bar_ipo(offline, spy):
    bars = offline.history("NEWCO")
    assert len(bars) == 10
    result = analyze_bars("NEWCO", bars, spy)
    dumps(result)
    r = result["returns"]
    close = bars["Close"].to_numpy()
    assert r["1d"] == round(close[-1] / close[-2] - 1, 6)
    assert r["5d"] == round(close[-1] / close[-6] - 1, 6)
    assert r["1m"] is r["1y"] is None
    assert r["ytd"] == round(close[-1] / close[0] - 1, 6)
    ind = result["indicators"]
    assert ind["sma_20"] is ind["rsi_14"] is ind["macd"] is ind["atr_14"] is None
    assert ind["max_drawdown_1y"] is not None
    assert ind["beta"] is None and result["benchmark"] is None
    assert "sma_200 needs 200 bars, have 10" in result["notes"]
    assert (
        "beta skipped: 9 daily returns on dates shared with SPY in the last year, need 200"
        in result["notes"]
    )
    assert result["high_52w"] == bars["High"].max()
    assert_every_none_is_explained(result)


def test_one_bar(tmp_path):
    (tmp_path / "ONE.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n2026-11-20,10.00,11.00,9.50,10.50,10.50,1234\n"
    )
    bars = CsvProvider(tmp_path).history("ONE")
    result = analyze_bars("ONE", bars)
    dumps(result)
    assert result["price"] == 10.5
    assert result["as_of"] == "2026-11-20"
    assert all(v is None for v in result["returns"].values())
    assert all(v is None for v in result["indicators"].values())
    assert result["high_52w"] == 11.0 and result["low_52w"] == 9.5
    assert result["volume"] == 1234
    assert result["signals"] == []
    assert "beta skipped: no data for benchmark SPY" in result["notes"]
    assert "max_drawdown_1y needs 2 bars, have 1" in result["notes"]
    assert_every_none_is_explained(result)
    profiled = apply_profile(result, alert_threshold=-0.05, portfolio_size=10_000)
    assert profiled["alerts"] == []
    assert "drop alert not checked: the 1-day return is not available" in profiled["notes"]
    assert profiled["position"]["shares"] == 190  # 20% of 10,000 at 10.50
    dumps(profiled)


@pytest.mark.parametrize("size", [2, 14, 15, 19, 20, 21, 33, 34, 199, 200, 252, 253])
def test_warm_up_boundaries(size):
    close = 50 + np.cumsum(np.random.default_rng(size).normal(0, 0.5, size))
    result = analyze_bars("TEST", make_bars(close))
    dumps(result)
    ind = result["indicators"]
    assert (ind["rsi_14"] is None) == (size < 15)
    assert (ind["atr_14"] is None) == (size < 15)
    assert (ind["sma_20"] is None) == (size < 20)
    assert (ind["volatility_20d"] is None) == (size < 21)
    assert (ind["macd"] is None) == (size < 34)
    assert (ind["sma_200"] is None) == (size < 200)
    assert (ind["volatility_1y"] is None) == (size < 253)
    assert (result["returns"]["1y"] is None) == (size < 253)
    assert_every_none_is_explained(result)


def test_no_bars_at_all():
    with pytest.raises(errors.UnknownSymbol):
        analyze_bars("TEST", make_bars([]))


def test_missing_columns_are_a_data_error():
    with pytest.raises(errors.DataSourceError, match="Volume"):
        analyze_bars("TEST", make_bars([1.0, 2.0]).drop(columns="Volume"))


def test_symbol_is_validated():
    with pytest.raises(errors.InvalidSymbol):
        analyze_bars("not a symbol!", make_bars([1.0, 2.0]))


# --- beta ----------------------------------------------------------------------------------


def test_beta_on_aligned_dates_over_the_last_year(offline, spy):
    stock = offline.history("TSLA")
    # The benchmark misses some dates: beta must use only the shared ones, within the
    # symbol's last year (its last 252 returns).
    gappy = spy.drop(spy.index[::7])
    result = analyze_bars("TSLA", stock, gappy)
    joined = pd.concat([stock["Close"].iloc[-253:], gappy["Close"]], axis=1, join="inner")
    assert 200 <= len(joined) - 1 < 252
    r = joined.pct_change().dropna()
    expected = r.cov().iloc[0, 1] / r.iloc[:, 1].var()
    assert result["indicators"]["beta"] == round(expected, 4)
    assert result["benchmark"] == "SPY"
    assert 1.3 < expected < 2.5  # the generator's TSLA has beta 1.9


def test_beta_needs_two_hundred_shared_returns():
    rng = np.random.default_rng(5)
    market = 100 * np.cumprod(1 + rng.normal(0, 0.01, 201))
    stock = 100 * np.cumprod(1 + rng.normal(0, 0.01, 201))
    ok = analyze_bars("TEST", make_bars(stock), make_bars(market), benchmark_symbol="QQQ")
    assert ok["indicators"]["beta"] is not None and ok["benchmark"] == "QQQ"
    short = analyze_bars("TEST", make_bars(stock[1:]), make_bars(market[1:]))
    assert short["indicators"]["beta"] is None and short["benchmark"] is None
    assert (
        "beta skipped: 199 daily returns on dates shared with SPY in the last year, need 200"
        in short["notes"]
    )


def test_a_benchmark_that_ends_early_gives_no_beta_from_an_older_year(offline, spy):
    """Today's code used the last 253 shared dates wherever they were: with a benchmark that
    stops 150 bars early, an older year, with no note."""
    stock = offline.history("TSLA")
    early = spy[spy.index <= stock.index[-151]]
    result = analyze_bars("TSLA", stock, early)
    assert result["indicators"]["beta"] is None and result["benchmark"] is None
    last = early.index[-1].date().isoformat()
    [note] = [n for n in result["notes"] if n.startswith("beta skipped")]
    assert note == (
        f"beta skipped: benchmark SPY ends on {last}, before 2026-11-20; "
        "102 daily returns shared in the last year, need 200"
    )


def test_beta_with_disjoint_dates_is_skipped():
    close = np.linspace(10, 20, 100)
    result = analyze_bars("TEST", make_bars(close), make_bars(close, start="2010-01-04"))
    assert result["indicators"]["beta"] is None
    assert any(
        n.startswith("beta skipped: benchmark SPY ends on 2010-05-21") and "0 daily returns" in n
        for n in result["notes"]
    )


# --- signals -------------------------------------------------------------------------------


def test_trend_and_rsi_on_a_steady_rise():
    result = analyze_bars("UP", make_bars(np.linspace(50, 150, 260)))
    for w in (20, 50, 200):
        assert signal(result, f"sma_{w}")["state"] == "above"
    assert signal(result, "rsi_14")["state"] == "overbought"
    assert signal(result, "sma_50_200")["state"] == "bullish"


def test_trend_and_rsi_on_a_steady_fall():
    result = analyze_bars("DOWN", make_bars(np.linspace(150, 50, 260)))
    assert signal(result, "sma_20")["state"] == "below"
    assert signal(result, "rsi_14")["state"] == "oversold"
    assert signal(result, "sma_50_200")["state"] == "bearish"


def v_shape(size=120, turn=80):
    """An accelerating fall, then a straight rise: the MACD histogram is clearly negative
    until the turn and crosses zero a few bars after it."""
    down = 100 - 40 * np.linspace(0, 1, turn) ** 2
    up = np.linspace(60, 90, size - turn + 1)[1:]
    return np.concatenate([down, up])


def test_macd_bullish_crossover_counts_bars_ago():
    close = v_shape()
    line, sig, _ = talib.MACD(close, 12, 26, 9)
    above = line > sig
    cross = next(i for i in range(34, len(close)) if above[i] and not above[i - 1])
    for ago in (0, 3):
        result = analyze_bars("V", make_bars(close[: cross + 1 + ago]))
        s = signal(result, "macd")
        assert s["state"] == "bullish_crossover"
        assert ("on the last bar" if ago == 0 else f"{ago} bars ago") in s["text"]
    later = analyze_bars("V", make_bars(close[: cross + 1 + 5]))
    assert signal(later, "macd")["state"] == "bullish"


def test_macd_bearish_crossover():
    close = 200 - v_shape()  # an inverted V
    line, sig, _ = talib.MACD(close, 12, 26, 9)
    below = line < sig
    cross = next(i for i in range(34, len(close)) if below[i] and not below[i - 1])
    result = analyze_bars("A", make_bars(close[: cross + 2]))
    assert signal(result, "macd")["state"] == "bearish_crossover"
    assert "1 bar ago" in signal(result, "macd")["text"]


def test_golden_and_death_cross():
    close = np.concatenate([np.linspace(100, 60, 220), np.linspace(60, 120, 200)[1:]])
    sma50, sma200 = talib.SMA(close, 50), talib.SMA(close, 200)
    cross = next(
        i for i in range(201, len(close)) if sma50[i] > sma200[i] and sma50[i - 1] <= sma200[i - 1]
    )
    result = analyze_bars("G", make_bars(close[: cross + 4]))
    s = signal(result, "sma_50_200")
    assert s["state"] == "golden_cross" and "3 bars ago" in s["text"]
    inverted = 200 - close
    result = analyze_bars("D", make_bars(inverted[: cross + 1]))
    assert signal(result, "sma_50_200")["state"] == "death_cross"


@pytest.mark.parametrize(
    ("last", "state"),
    [(130.0, "above_upper"), (100.5, "upper_half"), (99.5, "lower_half"), (70.0, "below_lower")],
)
def test_bollinger_position(last, state):
    close = 100 + np.tile([1.0, -1.0], 30)  # middle 100, std 1: bands 98..102 before the last bar
    close[-1] = last
    result = analyze_bars("BB", make_bars(close))
    s = signal(result, "bollinger")
    assert s["state"] == state
    assert "%B" in s["text"]


# --- profile -------------------------------------------------------------------------------


def test_tsla_drop_alert(offline, spy):
    base = analyze_bars("TSLA", offline.history("TSLA"), spy)
    assert base["returns"]["1d"] == pytest.approx(-0.061, abs=0.001)
    snapshot = copy.deepcopy(base)
    alerted = apply_profile(base, alert_threshold=-0.05)
    assert base == snapshot, "apply_profile must not modify its input"
    assert alerted is not base
    [alert] = alerted["alerts"]
    assert alert["kind"] == "drop"
    assert alert["threshold"] == -0.05
    assert alert["change_1d"] == base["returns"]["1d"]
    assert "TSLA" in alert["text"] and "-6.10%" in alert["text"]
    assert apply_profile(base, alert_threshold=-0.07)["alerts"] == []
    assert apply_profile(base)["alerts"] == [] and apply_profile(base)["position"] is None


def test_alert_fires_at_exactly_the_threshold():
    result = analyze_bars("T", make_bars([100.0, 95.0]))
    assert result["returns"]["1d"] == -0.05
    assert len(apply_profile(result, alert_threshold=-0.05)["alerts"]) == 1


def test_applying_twice_gives_the_same_result(offline):
    base = analyze_bars("NEWCO", offline.history("NEWCO"))
    once = apply_profile(base, alert_threshold=-0.01, portfolio_size=1000)
    twice = apply_profile(once, alert_threshold=-0.01, portfolio_size=1000)
    assert dumps(once) == dumps(twice)


def base_for_sizing(price, atr):
    return {
        "symbol": "X",
        "as_of": "2026-01-02",
        "price": price,
        "bars": 100,
        "returns": {"1d": 0.0},
        "indicators": {"atr_14": atr},
        "high_52w": None,
        "low_52w": None,
        "pct_from_high_52w": None,
        "pct_from_low_52w": None,
        "volume": 0,
        "volume_avg_20d": None,
        "volume_ratio_20d": None,
        "benchmark": None,
        "notes": [],
    }


def test_position_risk_based():
    # risk 1% of 100,000 = 1,000 over a stop 2 x 10 = 20 below: 50 shares
    position = apply_profile(base_for_sizing(100.0, 10.0), portfolio_size=100_000)["position"]
    assert position == {
        "portfolio_size": 100_000.0,
        "shares": 50,
        "value": 5000.0,
        "pct_of_portfolio": 0.05,
        "stop_price": 80.0,
        "risk_amount": 1000.0,
        "method": "risk 1% of the portfolio with a stop 2 × ATR(14) below the price",
    }


def test_position_capped_at_twenty_percent():
    # risk sizing wants 1,000 / 4 = 250 shares (25,000), the cap allows 200 (20,000)
    position = apply_profile(base_for_sizing(100.0, 2.0), portfolio_size=100_000)["position"]
    assert position["shares"] == 200
    assert position["value"] == 20_000.0 and position["pct_of_portfolio"] == 0.2
    assert position["risk_amount"] == 800.0
    assert position["stop_price"] == 96.0
    assert "capped at 20%" in position["method"]


def test_position_rounds_shares_down():
    position = apply_profile(base_for_sizing(33.0, 1.7), portfolio_size=10_000)["position"]
    assert position["shares"] == math.floor(100 / 3.4) == 29
    assert position["value"] <= 0.2 * 10_000


def test_position_without_atr_uses_the_cap_and_says_so():
    result = apply_profile(base_for_sizing(100.0, None), portfolio_size=10_000)
    position = result["position"]
    assert (
        position["shares"] == 20
        and position["stop_price"] is None
        and position["risk_amount"] is None
    )
    assert any("ATR(14) unavailable" in n for n in result["notes"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alert_threshold": 0.05},
        {"alert_threshold": -1.5},
        {"alert_threshold": float("nan")},
        {"alert_threshold": "drop"},
        {"portfolio_size": 0},
        {"portfolio_size": -10},
        {"portfolio_size": float("inf")},
    ],
)
def test_bad_profile_values_are_refused(kwargs):
    with pytest.raises(errors.InvalidInput):
        apply_profile(base_for_sizing(100.0, 1.0), **kwargs)
