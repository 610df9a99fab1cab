"""Words the numbers support, prices as the market printed them, sizes from unrounded values
(issue 10). Each test is a case that today's code got wrong: hand-made series for flat runs,
ties and a -4.99996 % day, calendar returns with their dates, and real-shaped CSV files whose
last Adj Close differs from Close."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from stock_agent.core import analysis as _analysis
from stock_agent.core.models import Analysis
from stock_agent.core.personalise import MAX_POSITION, apply_profile
from stock_agent.providers.offline import CsvProvider
from tests.conftest import MARKET_DATA


def make_bars(close, *, start="2024-01-02"):
    close = np.asarray(close, dtype=float)
    index = pd.bdate_range(start, periods=len(close), name="Date")
    return pd.DataFrame(
        {
            "Open": close,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Volume": np.full(len(close), 1e6),
        },
        index=index,
    )


def analyze(close, **kwargs) -> Analysis:
    result = _analysis.analyze_bars("TEST", make_bars(close, **kwargs))
    assert Analysis.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    return result


def state(result: Analysis, name: str) -> tuple[str, str]:
    found = result.signal(name)
    assert found is not None, f"no {name} signal in {result.signals}"
    return found.state, found.text


# --- a flat run: no movement, not oversold, not "lower half" ----------------------------------


def test_bands_of_a_flat_run_are_flat_not_a_lower_half():
    # After a move, 30 closes of 33.33: the bands coincide (TA-Lib width 0; float noise here
    # leaves 2.8e-14), and today's code read that as "lower half (%B 0.25)".
    close = np.concatenate([np.linspace(90, 110, 60), np.full(30, 33.33)])
    result = analyze(close)
    width = result.indicators.bb_upper - result.indicators.bb_lower
    assert abs(width) < 1e-9 * result.price
    assert state(result, "bollinger") == (
        "flat",
        "the bands are flat: no movement in the last 20 bars",
    )


def test_rsi_of_a_flat_run_is_no_movement_not_oversold():
    close = np.concatenate([np.linspace(90, 110, 60), np.full(30, 33.33)])
    result = analyze(close)
    assert result.indicators.rsi_14 is not None and result.indicators.rsi_14 < 30  # TA-Lib's value
    assert state(result, "rsi_14") == ("flat", "RSI(14): no movement in the last 14 bars")


def test_a_series_that_never_moved_is_flat_everywhere_and_bearish_nowhere():
    result = analyze(np.full(260, 50.0))
    assert result.indicators.rsi_14 == 0.0  # as TA-Lib
    states = {s.name: s.state for s in result.signals}
    assert states == {
        "sma_20": "at",
        "sma_50": "at",
        "sma_200": "at",
        "sma_50_200": "tie",
        "rsi_14": "flat",
        "macd": "flat",
        "bollinger": "flat",
        "volume": "normal",
    }
    assert not any(
        word in s.text for s in result.signals for word in ("below", "bearish", "oversold")
    )


def test_a_flat_run_after_a_rise_keeps_no_false_crossing():
    # float noise around zero on the flat stretch must not read as MACD crossing its signal
    close = np.concatenate([np.linspace(50, 60, 80), np.full(60, 60.0)])
    result = analyze(close)
    assert state(result, "macd")[0] == "flat"


# --- ties are ties ------------------------------------------------------------------------------


def test_exact_ties_are_ties_not_bearish():
    tol = 1e-9 * 100
    equal = np.array([1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    signals: list[dict[str, str]] = []
    _analysis._macd_signal(signals, equal + 0.3, equal + 0.3, tol, flat=False)
    _analysis._sma_cross_signal(signals, np.full(30, 101.0), np.full(30, 101.0), tol)
    assert [(s["state"], s["text"]) for s in signals] == [
        ("tie", "MACD at its signal line"),
        ("tie", "the 50-day average equals the 200-day"),
    ]


def test_a_difference_of_float_noise_is_a_tie():
    tol = 1e-9 * 100
    signals: list[dict[str, str]] = []
    _analysis._macd_signal(signals, np.full(10, 0.2 + 1e-13), np.full(10, 0.2), tol, flat=False)
    _analysis._trend_signal(signals, 100.0, 20, 100.0 + 1e-12, tol)
    assert [s["state"] for s in signals] == ["tie", "at"]
    assert signals[1]["text"] == "price at its 20-day average (100.00)"


def test_a_price_on_the_middle_band_is_at_the_middle_not_the_upper_half():
    # the last 20 closes: 9 x (101, 99), then 100 and 100: the middle band is exactly 100
    close = np.concatenate([np.linspace(90, 110, 40), np.tile([101.0, 99.0], 9), [100.0, 100.0]])
    result = analyze(close)
    assert result.indicators.bb_middle == result.price == 100.0
    bb_state, text = state(result, "bollinger")
    assert (bb_state, text) == ("middle", "price at the middle band (%B 0.50)")


# --- alerts compare unrounded values ------------------------------------------------------------


def test_a_day_of_minus_4_99996_percent_does_not_fire_a_minus_5_percent_alert():
    result = analyze([100.0, 95.000004])
    assert result.returns.d1 == -0.05  # rounded to 6 decimals for reading
    assert result.unrounded is not None and result.unrounded.change_1d == pytest.approx(-0.04999996)
    assert apply_profile(result, alert_threshold=-0.05).alerts == ()


def test_a_day_of_exactly_minus_5_percent_fires():
    result = analyze([100.0, 95.0])
    [alert] = apply_profile(result, alert_threshold=-0.05).alerts
    assert alert.change_1d == -0.05 and "-5.00%" in alert.text


# --- positions from unrounded values --------------------------------------------------------------


def sized(price: float, atr: float, portfolio: float = 100_000.0, *, exact=None):
    data = {
        "symbol": "X",
        "as_of": "2026-01-02",
        "price": round(price, 4),
        "bars": 100,
        "returns": {"1d": 0.0},
        "indicators": {"atr_14": round(atr, 4)},
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
    if exact:
        data["unrounded"] = {"price": price, "change_1d": 0.0, "atr_14": atr}
    return apply_profile(Analysis.from_dict(data), portfolio_size=portfolio).position


def test_the_cap_holds_at_the_unrounded_price():
    # 200.00004 reads as 200.0: 100 shares from the rounded price are 20.000004 % of 100,000
    rounded = sized(200.00004, 0.01)
    exact = sized(200.00004, 0.01, exact=True)
    assert rounded.shares == 100 and rounded.shares * 200.00004 > MAX_POSITION * 100_000
    assert exact.shares == 99 and exact.shares * 200.00004 <= MAX_POSITION * 100_000


def test_the_risk_holds_at_the_unrounded_atr():
    # ATR 2.50004 reads as 2.5: 200 shares risk 1,000.016, more than 1 % of 100,000
    rounded = sized(100.0, 2.50004)
    exact = sized(100.0, 2.50004, exact=True)
    assert rounded.shares == 200 and rounded.shares * 2 * 2.50004 > 1000
    assert exact.shares == 199 and exact.risk_amount <= 1000


# --- prices as the market printed them --------------------------------------------------------------


def cut_from_a_later_download(tmp_path, symbol: str, last_ratio: float, source=None):
    """A file as a later download would have it: Adj Close below Close by `last_ratio` on every
    bar (a dividend after the file ends), the closes as printed. `source`: a sample file, else
    a calm stock (small ATR, so the 20 % cap, not the risk, sizes its position)."""
    if source is not None:
        raw = pd.read_csv(MARKET_DATA / f"{source}.csv")
    else:
        dates = pd.bdate_range("2025-06-02", periods=300)
        close = np.round(100 + 10 * np.sin(np.linspace(0, 3, 300)), 2)
        raw = pd.DataFrame(
            {
                "Date": dates.strftime("%Y-%m-%d"),
                "Open": close,
                "High": close + 0.2,
                "Low": close - 0.2,
                "Close": close,
                "Adj Close": close,
                "Volume": 1_000_000,
            }
        )
    raw["Adj Close"] = (raw["Close"] * last_ratio).round(6)
    raw.to_csv(tmp_path / f"{symbol}.csv", index=False)
    return raw


@pytest.mark.parametrize(("ratio", "old_pct"), [(0.97, 0.206), (0.943, 0.212)])
def test_the_last_close_is_the_printed_close_and_the_cap_holds_there(tmp_path, ratio, old_pct):
    raw = cut_from_a_later_download(tmp_path, "DIVCO", ratio)
    printed = float(raw["Close"].iloc[-1])
    bars = CsvProvider(tmp_path).history("DIVCO")
    assert bars["Close"].iloc[-1] == pytest.approx(printed, rel=1e-12)
    # returns are those of the adjusted series, as before
    adjusted = raw["Adj Close"].to_numpy()
    assert bars["Close"].iloc[-1] / bars["Close"].iloc[-2] == pytest.approx(
        adjusted[-1] / adjusted[-2], rel=1e-9
    )

    result = _analysis.analyze_bars("DIVCO", bars)
    assert result.price == round(printed, 4)
    position = apply_profile(result, portfolio_size=100_000).position
    assert position is not None and "capped at 20%" in position.method
    assert position.shares * printed <= MAX_POSITION * 100_000
    # what sizing at the scaled-down price (today's code) would have given, at the real price
    scaled_price = printed * ratio
    old_shares = math.floor(MAX_POSITION * 100_000 / scaled_price)
    assert round(old_shares * printed / 100_000, 3) == old_pct


def test_stops_and_the_52_week_range_follow_the_printed_price(tmp_path):
    raw = cut_from_a_later_download(tmp_path, "DIVCO", 0.95, source="AAPL")
    same = _analysis.analyze_bars("AAPL", CsvProvider(MARKET_DATA).history("AAPL"))
    result = _analysis.analyze_bars("DIVCO", CsvProvider(tmp_path).history("DIVCO"))
    assert result.price == same.price == round(float(raw["Close"].iloc[-1]), 4)
    assert result.high_52w == pytest.approx(same.high_52w, rel=1e-6)
    assert result.low_52w == pytest.approx(same.low_52w, rel=1e-6)
    assert result.returns == same.returns


def test_a_last_bar_without_a_usable_ratio_does_not_scale_the_rest(tmp_path):
    (tmp_path / "GAP.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2026-01-02,100,100,100,100,90,10\n"
        "2026-01-05,110,110,110,110,99,10\n"
        "2026-01-06,120,120,120,120,null,10\n"
    )
    bars = CsvProvider(tmp_path).history("GAP")
    # the last usable ratio (0.9) is the reference: those bars keep their printed prices
    assert bars["Close"].tolist() == pytest.approx([100.0, 110.0, 120.0])


# --- calendar returns -----------------------------------------------------------------------------


def test_calendar_returns_start_on_the_same_date_months_earlier():
    close = np.linspace(100, 200, 400)
    bars = make_bars(close, start="2023-01-02")
    last = bars.index[-1]
    result = _analysis.analyze_bars("CAL", bars)
    cal = result.returns_calendar
    assert cal is not None and cal.as_of == last.date().isoformat() == "2024-07-12"
    price = close[-1]

    def expected(months: int) -> tuple[float, str]:
        start = bars[bars.index <= last - pd.DateOffset(months=months)].iloc[-1]
        return round(price / start["Close"] - 1, 6), start.name.date().isoformat()

    for field, months in (("m1", 1), ("m3", 3), ("m6", 6), ("y1", 12)):
        value, since = expected(months)
        assert getattr(cal, field) == value
        assert getattr(cal.since, field) == since
    # 2024-04-12 was a Friday, 2024-01-12 too; a year back, 2023-07-12 a Wednesday
    assert (cal.since.m3, cal.since.y1) == ("2024-04-12", "2023-07-12")
    # ytd from the last close of 2023 (Friday 2023-12-29)
    assert cal.since.ytd == "2023-12-29"
    # the bar windows are kept as they were
    assert result.returns.m1 == round(price / close[-22] - 1, 6)
    data = result.to_dict()["returns_calendar"]
    assert list(data) == ["as_of", "1m", "3m", "6m", "1y", "ytd", "since"]
    assert list(data["since"]) == ["1m", "3m", "6m", "1y", "ytd"]


def test_a_weekend_target_starts_from_the_friday_before():
    bars = make_bars(np.linspace(10, 20, 300), start="2023-06-01")
    bars = bars[bars.index <= "2024-06-03"]  # Monday 2024-06-03: a month back is Friday 05-03
    cal = _analysis.analyze_bars("CAL", bars).returns_calendar
    assert cal.as_of == "2024-06-03" and cal.since.m1 == "2024-05-03"


def test_calendar_returns_the_history_does_not_reach_are_none_with_a_note():
    result = _analysis.analyze_bars("YOUNG", make_bars(np.linspace(10, 12, 80), start="2024-03-01"))
    cal = result.returns_calendar
    assert cal.m1 is not None and cal.m3 is not None
    assert cal.m6 is cal.y1 is cal.ytd is None and cal.since.y1 is None
    assert (
        "calendar return(s) 6m, 1y, ytd: no close before their start (history from 2024-03-01)"
        in (result.notes)
    )
