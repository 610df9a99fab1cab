"""The offline provider (bars, quotes, `check`, `identity`), symbol validation, and the sample
data itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stock_agent import errors
from stock_agent.config import Settings
from stock_agent.core.models import Quote
from stock_agent.core.symbols import normalize_symbol
from stock_agent.providers import make_provider
from stock_agent.providers.base import (
    ALL_CAPABILITIES,
    BAR_COLUMNS,
    MarketDataProvider,
    ProviderCheck,
)
from stock_agent.providers.offline import CsvProvider
from stock_agent.providers.yahoo import YFinanceProvider
from tests.conftest import MARKET_DATA, REPO

SAMPLE_SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA", "GOOGL", "SPY", "NEWCO"]
HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


@pytest.fixture(scope="module")
def offline() -> CsvProvider:
    return CsvProvider(MARKET_DATA)


def write(directory: Path, symbol: str, text: str) -> CsvProvider:
    (directory / f"{symbol}.csv").write_text(text)
    return CsvProvider(directory)


# --- symbols -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("aapl", "AAPL"), ("  msft \n", "MSFT"), ("brk-b", "BRK-B"), ("^gspc", "^GSPC"),
     ("eurusd=x", "EURUSD=X"), ("7203.T", "7203.T"), ("A" * 15, "A" * 15)],
)  # fmt: skip
def test_normalize_symbol(raw, expected):
    assert normalize_symbol(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "A" * 16, "AA PL", "../etc/passwd", "A/B", "$AAPL", "..", "^", None, 42]
)
def test_invalid_symbols_are_refused_with_a_fix(raw):
    with pytest.raises(errors.InvalidSymbol) as info:
        normalize_symbol(raw)
    assert info.value.fix and "AAPL" in info.value.fix


# --- history -------------------------------------------------------------------------------


def test_history_shape(offline):
    bars = offline.history("aapl")
    assert list(bars.columns) == BAR_COLUMNS
    assert all(dtype == np.float64 for dtype in bars.dtypes)
    assert isinstance(bars.index, pd.DatetimeIndex)
    assert bars.index.tz is None and bars.index.name == "Date"
    assert bars.index.is_monotonic_increasing and bars.index.is_unique
    assert (bars.index == bars.index.normalize()).all()
    assert bars.index[-1] == pd.Timestamp("2026-11-20")
    assert not bars.isna().any().any()


def test_history_covers_the_last_days_calendar_days(offline):
    full = offline.history("SPY", days=5000)
    assert len(full) == 783  # the whole file
    month = offline.history("SPY", days=30)
    assert month.index[0] > pd.Timestamp("2026-10-21")
    assert month.index[0] - pd.Timedelta(days=3) <= pd.Timestamp("2026-10-21")
    assert len(month) == 22  # business days from 2026-10-22 to 2026-11-20
    default = offline.history("SPY")
    assert pd.Timestamp("2026-11-20") - default.index[0] < pd.Timedelta(days=800)
    assert len(default) > 253  # enough for every 1-year figure
    # Trimming does not change the values.
    pd.testing.assert_frame_equal(month, full.tail(22))


def test_history_is_a_copy(offline):
    bars = offline.history("MSFT")
    bars.iloc[-1, 0] = -1.0
    assert offline.history("MSFT").iloc[-1, 0] != -1.0


@pytest.mark.parametrize("days", [0, -5, 2.5, "30", True])
def test_bad_days_are_refused(offline, days):
    with pytest.raises(errors.InvalidInput):
        offline.history("AAPL", days=days)


def test_unknown_symbol(offline):
    with pytest.raises(errors.UnknownSymbol) as info:
        offline.history("ZZZZ")
    assert info.value.symbol == "ZZZZ"
    assert "ZZZZ.csv" in info.value.message


def test_invalid_symbol_never_reaches_the_file_system(offline):
    with pytest.raises(errors.InvalidSymbol):
        offline.history("../SPY")


# --- malformed files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Date,Open,High,Low,Volume\n2026-01-02,1,2,0.5,100\n", "Close"),
        (HEADER + "2026-01-02,1,2,0.5,abc,1,100\n", "Close"),
        (HEADER + "yesterday,1,2,0.5,1.5,1.5,100\n", "Date"),
        ("", "cannot read"),
        (HEADER + '2026-01-02,1,2,"unterminated\n', "cannot read"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, text, says):
    provider = write(tmp_path, "BAD", text)
    with pytest.raises(errors.DataSourceError) as info:
        provider.history("BAD")
    assert str(tmp_path / "BAD.csv") in info.value.message
    assert says in info.value.message


def test_header_only_file_is_an_unknown_symbol(tmp_path):
    provider = write(tmp_path, "EMPTY", HEADER)
    with pytest.raises(errors.UnknownSymbol):
        provider.history("EMPTY")


def test_null_rows_are_dropped_and_dates_sorted(tmp_path):
    provider = write(
        tmp_path,
        "GAPS",
        HEADER
        + "2026-01-06,12,13,11,12.5,12.5,300\n"
        + "2026-01-02,10,11,9,10.5,10.5,100\n"
        + "2026-01-05,null,null,null,null,null,null\n"
        + "2026-01-07,13,14,12,13.5,13.5,\n",
    )
    bars = provider.history("GAPS")
    assert [d.day for d in bars.index] == [2, 6, 7]
    assert bars["Close"].tolist() == [10.5, 12.5, 13.5]
    assert bars["Volume"].tolist() == [100.0, 300.0, 0.0]


def test_adj_close_adjusts_prices_like_yfinance_auto_adjust(tmp_path):
    provider = write(
        tmp_path,
        "DIV",
        HEADER + "2026-01-02,100,110,90,100,98,1000\n2026-01-05,101,102,100,101,101,2000\n",
    )
    bars = provider.history("DIV")
    assert bars.iloc[0][["Open", "High", "Low", "Close"]].tolist() == pytest.approx(
        [98, 107.8, 88.2, 98]
    )
    assert bars.iloc[0]["Volume"] == 1000
    assert bars.iloc[1]["Close"] == 101


def test_file_without_adj_close_is_fine(tmp_path):
    provider = write(
        tmp_path, "RAW", "Date,Open,High,Low,Close,Volume\n2026-01-02,1,2,0.5,1.5,10\n"
    )
    assert provider.history("RAW")["Close"].tolist() == [1.5]


def test_missing_data_folder_is_a_config_error(tmp_path):
    with pytest.raises(errors.ConfigError, match="does not exist"):
        CsvProvider(tmp_path / "nowhere")


# --- quote, fundamentals, news -------------------------------------------------------------


def test_quote_from_the_last_two_bars(offline):
    quote = offline.quote("tsla")
    assert isinstance(quote, Quote)
    q = quote.to_dict()
    bars = offline.history("TSLA")
    assert set(q) == {
        "symbol",
        "price",
        "previous_close",
        "change",
        "change_pct",
        "currency",
        "as_of",
        "source",
        "stale",
        "fetched_at",
    }
    assert q["stale"] is False and q["fetched_at"] is None  # set by the service when fetched
    assert q["symbol"] == "TSLA"
    assert q["price"] == bars["Close"].iloc[-1]
    assert q["previous_close"] == bars["Close"].iloc[-2]
    assert q["change"] == pytest.approx(q["price"] - q["previous_close"])
    assert q["change_pct"] == pytest.approx(-0.061, abs=0.001)
    assert q["currency"] == "USD"
    assert q["as_of"] == "2026-11-20"
    assert q["source"] == "offline"


def test_quote_of_a_single_bar_has_no_change(tmp_path):
    q = write(tmp_path, "ONE", HEADER + "2026-11-20,1,2,0.5,1.5,1.5,10\n").quote("ONE")
    assert q.price == 1.5
    assert q.previous_close is q.change is q.change_pct is None


def test_fundamentals_and_news_are_unavailable_offline(offline):
    for call in (lambda: offline.fundamentals("AAPL"), lambda: offline.news("AAPL")):
        with pytest.raises(errors.DataUnavailable) as info:
            call()
        assert "offline" in info.value.message
        assert "STOCK_AGENT_DATA_DIR" in info.value.fix


# --- capabilities, check, identity ----------------------------------------------------------


def test_capabilities_are_quote_and_history(offline):
    assert offline.capabilities == frozenset({"quote", "history"})
    assert offline.capabilities < ALL_CAPABILITIES


def test_check_of_the_sample_folder(offline):
    assert offline.check() == ProviderCheck(
        True,
        "ok",
        f"offline CSV files in {MARKET_DATA}: 7 symbols "
        "(AAPL, GOOGL, MSFT, NEWCO, NVDA, SPY, TSLA)",
    )


def test_check_of_an_empty_folder(tmp_path):
    result = CsvProvider(tmp_path).check()
    assert (result.ok, result.state) == (False, "missing")
    assert result.detail == f"offline data folder {tmp_path} has no readable SYMBOL.csv files"
    assert result.fix and "STOCK_AGENT_DATA_DIR" in result.fix


def test_check_reads_headers_and_skips_files_that_name_no_symbol(tmp_path):
    (tmp_path / "notes.csv").write_text(HEADER + "2026-11-20,1,2,0.5,1.5,1.5,10\n")
    (tmp_path / "README.md").write_text("not data")
    write(tmp_path, "BAD", "a,b\n1,2\n")
    write(tmp_path, "HEADONLY", HEADER)
    write(tmp_path, "BLANK", "")
    result = CsvProvider(tmp_path).check()
    assert (result.ok, result.state) == (False, "missing")
    assert "BAD.csv: no Date, Open, High, Low, Close, Volume column(s)" in result.detail
    assert "HEADONLY.csv: no rows" in result.detail and "BLANK.csv: empty file" in result.detail
    assert "notes" not in result.detail
    assert result.fix and "Date,Open,High,Low,Close,Adj Close,Volume" in result.fix

    write(tmp_path, "GOOD", HEADER + "2026-11-20,1,2,0.5,1.5,1.5,10\n")
    result = CsvProvider(tmp_path).check()
    assert (result.ok, result.state, result.fix) == (True, "ok", None)
    assert "1 symbols (GOOD); 3 unreadable (BAD.csv: " in result.detail


def test_check_of_a_folder_removed_after_start(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    provider = CsvProvider(folder)
    folder.rmdir()
    result = provider.check()
    assert (result.ok, result.state) == (False, "missing")
    assert result.detail == f"offline data folder {folder} does not exist"


def test_check_of_a_file_that_cannot_be_opened(tmp_path, monkeypatch):
    write(tmp_path, "LOCKED", HEADER + "2026-11-20,1,2,0.5,1.5,1.5,10\n")
    real_open = Path.open

    def guarded_open(self, *args, **kwargs):
        if self.name == "LOCKED.csv":  # as chmod 000 would, for a user other than root
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded_open)
    result = CsvProvider(tmp_path).check()
    assert (result.ok, result.state) == (False, "missing")
    assert "LOCKED.csv: PermissionError: [Errno 13] Permission denied" in result.detail


def test_check_never_raises(tmp_path, monkeypatch):
    provider = CsvProvider(tmp_path)

    def broken_glob(self, pattern):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "glob", broken_glob)
    result = provider.check()
    assert (result.ok, result.state) == (False, "error")
    assert "Input/output error" in result.detail and result.fix


def test_identity_changes_when_a_file_is_written_again(tmp_path):
    provider = write(tmp_path, "ONE", HEADER + "2026-11-20,1,2,0.5,1.5,1.5,10\n")
    path = tmp_path / "ONE.csv"
    first = provider.identity("one")
    assert first == provider.identity("ONE")  # stable while nothing changes
    assert first.startswith(f"{path.resolve()}:")

    # the same size, another time
    stat = path.stat()
    path.write_text(HEADER + "2026-11-20,1,2,0.5,1.6,1.6,10\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert path.stat().st_size == stat.st_size
    second = provider.identity("ONE")
    assert second != first

    # another size, the same time
    path.write_text(HEADER + "2026-11-20,1,2,0.5,1.75,1.75,10\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert provider.identity("ONE") not in (first, second)


def test_identity_differs_between_folders_with_the_same_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    write(a, "ONE", HEADER + "2026-11-20,1,2,0.5,1.5,1.5,10\n")
    shutil.copytree(a, b)  # same bytes, same mtime
    assert (b / "ONE.csv").stat().st_mtime_ns == (a / "ONE.csv").stat().st_mtime_ns
    assert CsvProvider(a).identity("ONE") != CsvProvider(b).identity("ONE")


def test_identity_uses_the_resolved_folder(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    write(data, "ONE", HEADER + "2026-11-20,1,2,0.5,1.5,1.5,10\n")
    (tmp_path / "link").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    by_link, relative = CsvProvider(Path("link")), CsvProvider(Path("data"))
    assert by_link.identity("ONE") == relative.identity("ONE") == CsvProvider(data).identity("ONE")
    assert relative.identity("ZZZZ") == f"{data.resolve()}/ZZZZ.csv:missing"


def test_identity_of_an_invalid_symbol_is_refused(offline):
    with pytest.raises(errors.InvalidSymbol):
        offline.identity("../SPY")


# --- make_provider -------------------------------------------------------------------------


def test_make_provider(tmp_path):
    offline = make_provider(Settings(data_dir=MARKET_DATA, home=tmp_path))
    assert isinstance(offline, CsvProvider) and offline.name == "offline"
    live = make_provider(Settings(data_dir=None, home=tmp_path))
    assert isinstance(live, YFinanceProvider) and live.name == "yfinance"
    assert isinstance(offline, MarketDataProvider) and isinstance(live, MarketDataProvider)


def test_offline_use_never_imports_yfinance():
    """Building either provider and using the offline one must not import yfinance
    (it is slow to import, and offline means no Yahoo at all)."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from stock_agent.config import Settings
        from stock_agent.providers import make_provider
        from stock_agent.core.analysis import analyze_bars
        make_provider(Settings(home=Path("/tmp")))
        p = make_provider(Settings(data_dir=Path({str(MARKET_DATA)!r}), home=Path("/tmp")))
        analyze_bars("TSLA", p.history("TSLA"), p.history("SPY"))
        p.quote("TSLA")
        assert "yfinance" not in sys.modules, "yfinance was imported"
        assert "curl_cffi" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=60)


# --- the sample data -----------------------------------------------------------------------


def test_sample_data_is_what_the_generator_writes(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "make_market_data.py"), str(tmp_path)],
        check=True,
        timeout=60,
    )
    written = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert written == sorted(f"{s}.csv" for s in SAMPLE_SYMBOLS)
    for name in written:
        assert (tmp_path / name).read_bytes() == (MARKET_DATA / name).read_bytes(), name


@pytest.mark.parametrize("symbol", SAMPLE_SYMBOLS)
def test_sample_files_are_sane(symbol):
    raw = pd.read_csv(MARKET_DATA / f"{symbol}.csv")
    assert list(raw.columns) == ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
    assert raw["Date"].iloc[-1] == "2026-11-20"
    assert len(raw) == (10 if symbol == "NEWCO" else 783)
    assert (raw["High"] >= raw[["Open", "Close"]].max(axis=1)).all()
    assert (raw["Low"] <= raw[["Open", "Close"]].min(axis=1)).all()
    assert (raw["Low"] > 0).all() and (raw["Volume"] > 0).all()
    assert raw["Volume"].dtype == np.int64
    assert pd.to_datetime(raw["Date"]).dt.day_of_week.max() < 5


def test_sample_tsla_ends_with_a_six_percent_drop():
    close = pd.read_csv(MARKET_DATA / "TSLA.csv")["Close"]
    assert close.iloc[-1] / close.iloc[-2] - 1 == pytest.approx(-0.06, abs=0.005)


def test_sample_readme_says_synthetic():
    text = (MARKET_DATA / "README.md").read_text().lower()
    assert "synthetic" in text and "make_market_data.py" in text
