"""The offline provider: daily bars from a folder of `SYMBOL.csv` files (Yahoo's download format).

It answers quotes and history only; fundamentals and news raise DataUnavailable with the fix.
pandas is imported when a file is first read, not when the provider is built.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from stock_agent import errors
from stock_agent.core.limits import HISTORY_DAYS
from stock_agent.core.models import Fundamentals, NewsItem, Quote
from stock_agent.core.symbols import dotted_form, normalize_symbol
from stock_agent.providers import register
from stock_agent.providers.base import (
    BAR_COLUMNS,
    HISTORY,
    QUOTE,
    ProviderCheck,
    check_days,
    check_limit,
    clean_bars,
    last_days,
    quote_from_bars,
)

if TYPE_CHECKING:
    import pandas as pd

    from stock_agent.config import Settings

__all__ = ["CsvProvider"]

OFFLINE_FIX = "unset STOCK_AGENT_DATA_DIR to use Yahoo Finance"
FOLDER_FIX = "set STOCK_AGENT_DATA_DIR to a folder of SYMBOL.csv files, e.g. examples/market"
FORMAT_FIX = "expected Yahoo's download format: Date,Open,High,Low,Close,Adj Close,Volume"
_REQUIRED = ("Date", *BAR_COLUMNS)


class CsvProvider:
    """Daily bars from `{data_dir}/{SYMBOL}.csv` files in Yahoo's download format
    (Date,Open,High,Low,Close,Adj Close,Volume).

    When `Adj Close` differs from `Close`, Open/High/Low/Close are scaled by their ratio,
    which is what yfinance's auto_adjust does, so both providers give the same prices. The
    ratios are taken relative to the last bar's, so the last close is the close the market
    printed (a file cut from a later download has its last Adj Close below its Close: scaling
    by the raw ratio would show a price a few percent too low); returns are unchanged.
    The files carry no currency; `currency` (USD by default) is reported in quotes.
    """

    name = "offline"
    capabilities = frozenset({QUOTE, HISTORY})

    def __init__(self, data_dir: Path, *, currency: str | None = "USD") -> None:
        self.data_dir = Path(data_dir)
        self.currency = currency
        if not self.data_dir.is_dir():
            raise errors.ConfigError(
                f"offline data folder {self.data_dir} does not exist", fix=FOLDER_FIX
            )

    def history(self, symbol: str, days: int = HISTORY_DAYS) -> pd.DataFrame:
        symbol, days = normalize_symbol(symbol), check_days(days)
        return last_days(self._load(symbol), days)

    def quote(self, symbol: str) -> Quote:
        symbol = normalize_symbol(symbol)
        return quote_from_bars(symbol, self._load(symbol), self.currency, self.name)

    def fundamentals(self, symbol: str) -> Fundamentals:
        normalize_symbol(symbol)
        raise errors.DataUnavailable("fundamentals are not available offline", fix=OFFLINE_FIX)

    def news(self, symbol: str, limit: int = 5) -> list[NewsItem]:
        normalize_symbol(symbol)
        check_limit(limit)
        raise errors.DataUnavailable("news is not available offline", fix=OFFLINE_FIX)

    def identity(self, symbol: str) -> str:
        """The resolved file path with its size and mtime_ns, or the path and "missing": another
        folder, or a file written again, gives another identity."""
        path = _symbol_file(self._folder(), normalize_symbol(symbol))
        try:
            stat = path.stat()
        except OSError:
            return f"{path}:missing"
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"

    def check(self, timeout: float = 5.0) -> ProviderCheck:
        """The folder exists and holds at least one readable SYMBOL.csv (its header and a first
        row are read; nothing is parsed). `timeout` is not needed: no network."""
        try:
            return self._check()
        except Exception as exc:  # a check never raises; doctor prints what it says
            return ProviderCheck.failed(
                "error",
                f"offline data folder {self.data_dir}: {type(exc).__name__}: {exc}",
                FOLDER_FIX,
            )

    # -- internals ----------------------------------------------------------------------------

    def _folder(self) -> Path:
        try:
            return self.data_dir.resolve()
        except (OSError, RuntimeError):  # a symlink loop: the path as given still names it
            return self.data_dir.absolute()

    def _check(self) -> ProviderCheck:
        folder = self.data_dir
        if not folder.is_dir():
            return ProviderCheck.failed(
                "missing", f"offline data folder {folder} does not exist", FOLDER_FIX
            )
        readable: list[str] = []
        unreadable: list[str] = []
        for path in sorted(folder.glob("*.csv")):
            if not _names_a_symbol(path):
                continue  # "notes.csv", "aapl.csv": never read as a symbol's bars
            problem = _first_lines_problem(path)
            if problem:
                unreadable.append(f"{path.name}: {problem}")
            else:
                readable.append(path.stem)
        shown_bad = "; ".join(unreadable[:3]) + ("; ..." if len(unreadable) > 3 else "")
        if not readable:
            detail = f"offline data folder {folder} has no readable SYMBOL.csv files"
            return ProviderCheck.failed(
                "missing",
                detail + (f" ({shown_bad})" if unreadable else ""),
                f"{FOLDER_FIX}; {FORMAT_FIX}" if unreadable else FOLDER_FIX,
            )
        names = ", ".join(readable[:8]) + (", ..." if len(readable) > 8 else "")
        detail = f"offline CSV files in {folder}: {len(readable)} symbols ({names})"
        if unreadable:
            detail += f"; {len(unreadable)} unreadable ({shown_bad})"
        return ProviderCheck.passed(detail)

    def _load(self, symbol: str) -> pd.DataFrame:
        import pandas as pd

        path = _symbol_file(self.data_dir, symbol)
        if not path.is_file():
            raise errors.UnknownSymbol(symbol, f"no file {path.name} in {self.data_dir}")
        try:
            raw = pd.read_csv(path, na_values=["null"])
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            # EmptyDataError is a ValueError too.
            raise errors.DataSourceError(f"cannot read {path}: {exc}", fix=FORMAT_FIX) from exc
        missing = [c for c in _REQUIRED if c not in raw.columns]
        if missing:
            raise errors.DataSourceError(
                f"{path} lacks column(s) {', '.join(missing)}", fix=FORMAT_FIX
            )
        try:
            dates = pd.to_datetime(raw["Date"], format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise errors.DataSourceError(
                f"{path} has a Date that is not a date: {exc}", fix=FORMAT_FIX
            ) from exc
        numeric = [*BAR_COLUMNS, *(["Adj Close"] if "Adj Close" in raw.columns else [])]
        values = {}
        for column in numeric:
            try:
                values[column] = pd.to_numeric(raw[column]).astype("float64")
            except (ValueError, TypeError) as exc:
                raise errors.DataSourceError(
                    f"{path} has a {column} value that is not a number: {exc}", fix=FORMAT_FIX
                ) from exc
        frame = pd.DataFrame(values).set_axis(pd.DatetimeIndex(dates), axis=0)
        if "Adj Close" in frame.columns:
            frame = frame.sort_index(kind="stable")  # the last bar is the latest date
            ratio = _adjustment(frame["Adj Close"], frame["Close"])
            for column in ["Open", "High", "Low", "Close"]:
                frame[column] = frame[column] * ratio
        return clean_bars(frame[BAR_COLUMNS], symbol, str(path))


def _adjustment(adjusted: pd.Series, close: pd.Series) -> pd.Series:
    """Each bar's `Adj Close / Close`, divided by the last usable bar's, so the last bar keeps
    its real prices. A bar without a usable ratio keeps its own prices (factor 1)."""
    import numpy as np

    ratio = adjusted / close
    usable = np.isfinite(ratio.to_numpy()) & (ratio.to_numpy() > 0)
    ratio = ratio.where(usable)
    known = ratio.dropna()
    if not known.empty:
        ratio = ratio / float(known.iloc[-1])
    return ratio.fillna(1.0)


def _symbol_file(folder: Path, symbol: str) -> Path:
    """`SYMBOL.csv`; for a class share a file named with the dot (`BRK.B.csv`) serves too."""
    path = folder / f"{symbol}.csv"
    dotted = dotted_form(symbol)
    if dotted is not None and not path.is_file() and (folder / f"{dotted}.csv").is_file():
        return folder / f"{dotted}.csv"
    return path


def _names_a_symbol(path: Path) -> bool:
    """Whether `path` is a file the provider would read for some symbol (`AAPL.csv`, and
    `BRK.B.csv` for BRK-B)."""
    try:
        symbol = normalize_symbol(path.stem)
        return path.stem in (symbol, dotted_form(symbol)) and path.is_file()
    except errors.InvalidSymbol:
        return False


def _first_lines_problem(path: Path) -> str | None:
    """Why `path` cannot serve as a symbol's bars, judged from its header and first row; None
    when it looks readable."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = csv.reader(handle)
            header = next(rows, None)
            first = next(rows, None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
    if not header:
        return "empty file"
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        return f"no {', '.join(missing)} column(s)"
    if not first:
        return "no rows"
    return None


def _from_settings(settings: Settings) -> CsvProvider:
    if settings.data_dir is None:
        raise errors.ConfigError("the offline provider needs a data folder", fix=FOLDER_FIX)
    return CsvProvider(settings.data_dir)


register(CsvProvider.name, _from_settings)
