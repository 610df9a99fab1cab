"""Write the synthetic offline market data in examples/market/ (deterministic: fixed seeds).

Daily bars in Yahoo's download format (Date,Open,High,Low,Close,Adj Close,Volume) on business
days ending 2026-11-20. The prices are invented: a geometric random walk per symbol, driven
partly by a common market factor (SPY) so that betas are meaningful. Run from the repo root:

    python examples/make_market_data.py [OUTPUT_DIR]
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

END = date(2026, 11, 20)  # a Friday
BARS = 783  # about three years of business days
NEWCO_BARS = 10
MARKET_SEED = 11  # unlike any per-symbol seed below (a shared seed copies the market)
TSLA_LAST_DAY = -0.061  # a drop big enough to trip a -5% alert


@dataclass(frozen=True)
class Spec:
    symbol: str
    seed: int
    start: float  # first close
    drift: float  # mean daily log return of the stock's own part
    beta: float  # exposure to the market factor
    idio_vol: float  # daily volatility of the stock's own part
    volume: float  # typical daily volume


SPECS = [
    Spec("SPY", 1, 455.0, 0.0, 1.0, 0.0, 70e6),
    Spec("AAPL", 2, 190.0, 0.0001, 1.1, 0.011, 55e6),
    Spec("MSFT", 3, 370.0, 0.0002, 1.0, 0.010, 22e6),
    Spec("NVDA", 4, 48.0, 0.0012, 1.7, 0.022, 300e6),
    Spec("TSLA", 5, 235.0, 0.0, 1.9, 0.028, 100e6),
    Spec("GOOGL", 6, 135.0, 0.0003, 1.05, 0.013, 28e6),
]


def business_days(end: date, count: int) -> list[date]:
    days: list[date] = []
    day = end
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]


def market_returns(count: int) -> np.ndarray:
    rng = np.random.default_rng(MARKET_SEED)
    # Calm and stormy regimes so volatility varies over time.
    vol = np.where(np.sin(np.arange(count) / 60.0) > 0.6, 0.016, 0.008)
    return 0.0004 + rng.normal(0.0, 1.0, count) * vol


def make_bars(spec: Spec, market: np.ndarray, days: list[date]) -> list[list[object]]:
    rng = np.random.default_rng(spec.seed)
    count = len(days)
    own = rng.normal(spec.drift, spec.idio_vol, count) if spec.idio_vol else np.zeros(count)
    log_ret = spec.beta * market[-count:] + own
    if spec.symbol == "TSLA":
        log_ret[-1] = np.log1p(TSLA_LAST_DAY)
    close = spec.start * np.exp(np.cumsum(log_ret) - log_ret[0])
    prev_close = np.concatenate([[close[0] * (1 - log_ret[0])], close[:-1]])
    day_vol = np.abs(log_ret) + 0.004
    open_ = prev_close * np.exp(rng.normal(0.0, 0.3, count) * day_vol)
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 0.6, count)) * day_vol)
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 0.6, count)) * day_vol)
    # Busier on big moves, like real markets.
    volume = spec.volume * np.exp(rng.normal(0.0, 0.25, count)) * (1 + 25 * np.abs(log_ret))
    rows: list[list[object]] = []
    for i, day in enumerate(days):
        o, c = round(float(open_[i]), 2), round(float(close[i]), 2)
        h = max(round(float(high[i]), 2), o, c)
        lo = min(round(float(low[i]), 2), o, c)
        rows.append(
            [
                day.isoformat(),
                f"{o:.2f}",
                f"{h:.2f}",
                f"{lo:.2f}",
                f"{c:.2f}",
                f"{c:.2f}",
                int(volume[i]),
            ]
        )
    return rows


def write_csv(path: Path, rows: list[list[object]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"])
        writer.writerows(rows)


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    days = business_days(END, BARS)
    market = market_returns(BARS)
    for spec in SPECS:
        write_csv(out_dir / f"{spec.symbol}.csv", make_bars(spec, market, days))
    # A recent IPO: ten bars only.
    newco = Spec("NEWCO", 7, 21.5, 0.004, 1.2, 0.035, 8e6)
    write_csv(out_dir / "NEWCO.csv", make_bars(newco, market, days[-NEWCO_BARS:]))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "market")
