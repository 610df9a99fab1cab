"""The real yfinance against a fake Yahoo (tests/yahoo_http.py: its HTTP session answers from the
offline files and records every request) and against a dead network (a local TCP listener that
accepts and never answers, set as the HTTPS proxy): how many requests, how long, how quiet.

Waits here are deadlock guards (60 s and more), never timing assertions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from yfinance.exceptions import YFRateLimitError

from stock_agent import errors
from stock_agent.providers.yahoo import YFinanceProvider
from tests.conftest import REPO
from tests.yahoo_http import FakeResponse, FakeYahooSession, fresh_yfinance


@pytest.fixture
def yahoo(tmp_path: Path) -> FakeYahooSession:
    fresh_yfinance(tmp_path / "yfinance-cache")
    return FakeYahooSession()


def test_bars_are_fetched_from_a_start_date(yahoo):
    live = YFinanceProvider(session=yahoo)
    bars = live.history("AAPL", days=800)
    # a new machine: yfinance's cookie and crumb, the symbol's time zone, then the bars
    assert yahoo.kinds() == ["cookie", "crumb", "chart:AAPL", "chart:AAPL"]
    tz, chart = yahoo.requests[2], yahoo.requests[3]
    assert tz.params["range"] == "1d"  # yfinance keeps the zone on disk: asked once ever
    assert "range" not in chart.params and "period1" in chart.params  # not range=5y
    assert len(bars) == 570 and str(bars.index[-1].date()) == "2026-11-20"


def test_a_quote_is_one_request(yahoo):
    live = YFinanceProvider(session=yahoo)
    live.history("MSFT")
    before = len(yahoo.requests)
    quote = live.quote("MSFT")
    assert yahoo.kinds()[before:] == ["chart:MSFT"]
    assert yahoo.requests[-1].params["range"] == "5d"
    assert quote.price == 883.89 and quote.previous_close is not None


def test_each_request_is_cut_to_what_is_left_of_the_call(yahoo):
    live = YFinanceProvider(session=yahoo, timeout=7.0)
    live.history("NVDA")
    # yfinance asks 30 s for its cookie and crumb and 7 s (our timeout) for the chart
    assert all(0 < r.timeout <= 7.0 for r in yahoo.requests)


def test_yfinance_says_nothing_on_the_terminal(tmp_path):
    """With Yahoo unreachable, today's code printed yfinance's warnings ("Cookie/crumb fetch
    failed ...") on stderr, 4 per symbol. Now: one line per failure, from us."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from curl_cffi.requests.exceptions import Timeout
        from stock_agent.providers.yahoo import YFinanceProvider
        from stock_agent import errors
        from tests.yahoo_http import FakeYahooSession, fresh_yfinance

        fresh_yfinance(Path({str(tmp_path / "cache")!r}))

        def down(request):
            raise Timeout("Failed to perform, curl: (28) Connection timed out after 5001 ms. "
                          "See https://curl.se/libcurl/c/libcurl-errors.html for details.")

        live = YFinanceProvider(session=FakeYahooSession(behave=down), sleep=lambda s: None)
        for symbol in ("AAPL", "MSFT", "TSLA"):
            try:
                live.history(symbol)
            except errors.StockAgentError as exc:
                print(exc.one_line())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for symbol, line in zip(("AAPL", "MSFT", "TSLA"), lines, strict=True):
        assert line.startswith(f"error: could not reach Yahoo Finance for daily bars of {symbol} (")
        assert "Timeout: Connection timed out after 5001 ms" in line and "curl.se" not in line


def test_a_rate_limit_on_the_chart_is_rate_limited(yahoo):
    def limited(request):
        if request.kind.startswith("chart:"):
            return FakeResponse(429, "Too Many Requests", request.url)
        return None

    yahoo.behave = limited
    live = YFinanceProvider(session=yahoo, sleep=lambda s: None, max_attempts=2)
    with pytest.raises(errors.RateLimited) as info:
        live.history("AAPL")
    assert isinstance(info.value.__cause__, YFRateLimitError)
    result = YFinanceProvider(session=yahoo).check(timeout=5)
    assert (result.ok, result.state) == (False, "rate-limited")


# --- a network that accepts and never answers ---------------------------------------------------


class SilentListener:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def dead_network() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


def online_env(cli_env: dict[str, str], proxy: str, tmp_path: Path) -> dict[str, str]:
    """`cli_env` for Yahoo (no data folder) behind `proxy`, with yfinance's caches in tmp."""
    env = {k: v for k, v in cli_env.items() if k != "STOCK_AGENT_DATA_DIR"}
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        env[name] = proxy
    env["NO_PROXY"] = env["no_proxy"] = ""
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    return env


def test_analyze_on_a_dead_network_ends_at_its_timeout_in_one_line_per_symbol(
    cli_env, dead_network, tmp_path
):
    """Today's code waited 72 s for one symbol (yfinance's cookie and crumb requests ask for
    30 s each, outside any budget) and printed yfinance's log lines and curl's URL."""
    env = online_env(cli_env, dead_network.url, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "stock_agent", "--timeout", "2", "analyze", "AAPL", "MSFT", "TSLA"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a deadlock guard, far above the 2 s deadline
    )
    assert dead_network.accepted.is_set()  # it really went to the network
    assert done.returncode == errors.ExitStatus.DATA_SOURCE, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    for symbol, line in zip(("AAPL", "MSFT", "TSLA"), lines, strict=True):
        assert line.startswith(
            f"error: Yahoo Finance did not answer for daily bars of {symbol} within 2 s ("
        ), line
        assert line.endswith("(check the internet connection, or work offline with "
                             "STOCK_AGENT_DATA_DIR=examples/market)")  # fmt: skip
    assert "Cookie" not in done.stderr and "curl" not in done.stderr
    assert "OPENAI_API_KEY" not in done.stderr  # no report, so no note about narrating it


def test_doctor_on_a_dead_network_says_unreachable_and_exits_1(cli_env, dead_network, tmp_path):
    env = online_env(cli_env, dead_network.url, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "stock_agent", "--timeout", "2", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    [line] = [ln for ln in done.stdout.splitlines() if " data " in ln]
    assert "FAIL" in line and "Yahoo Finance did not answer within 2 s" in line
    assert "check the internet connection" in line
    assert "Cookie" not in done.stderr + done.stdout


def test_one_ctrl_c_stops_analyze_while_it_waits_on_the_network(cli_env, dead_network, tmp_path):
    """With a 120 s deadline, only the interrupt can end this run before the guard."""
    env = online_env(cli_env, dead_network.url, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stock_agent", "--timeout", "120", "analyze", "AAPL", "MSFT"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert dead_network.accepted.wait(60), "the fetch never reached the network"
        time.sleep(0.2)  # the requests are in flight, waiting on the silent proxy
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # a deadlock guard
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == errors.ExitStatus.INTERRUPTED
    assert err.strip().splitlines() == ["interrupted"]
    assert out == ""


def test_doctor_when_yahoo_rate_limits_says_so_with_the_fix_and_exits_1(
    cli_env, tmp_path, monkeypatch, capsys
):
    from stock_agent.cli import main
    from stock_agent.providers import yahoo as provider_module

    fresh_yfinance(tmp_path / "yfinance-cache")

    def limited(request):
        if request.kind.startswith("chart:"):
            return FakeResponse(429, "Too Many Requests", request.url)
        return None

    # the process's session: what `doctor` builds its provider with
    monkeypatch.setattr(provider_module, "_session", FakeYahooSession(behave=limited))
    env = {k: v for k, v in cli_env.items() if k != "STOCK_AGENT_DATA_DIR"}
    assert main(["doctor"], env=env) == 1
    out = capsys.readouterr().out
    [line] = [ln for ln in out.splitlines() if " data " in ln]
    assert "FAIL" in line and "Yahoo Finance is rate limiting this address" in line
    assert "wait a minute and try again" in line
