"""`--debug` on a dead network (a local listener that accepts and never answers, set as every
proxy): the failure's detail on standard error, where without it there is one line.

The subprocess waits are deadlock guards (60 s), far above the 2 s deadline; nothing is timed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stock_agent.errors import ExitStatus
from tests.test_provider_yahoo_network import SilentListener, online_env

ONE_LINE = "error: Yahoo Finance did not answer for daily bars of AAPL within 2 s ("


@pytest.fixture
def silent_proxy() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


def analyze_aapl(env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stock_agent", *flags, "--timeout", "2", "analyze", "AAPL"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(env["STOCK_AGENT_HOME"]).parent,
    )


def test_debug_shows_the_traceback_and_yfinance_lines_on_a_dead_network(
    cli_env: dict[str, str], silent_proxy: SilentListener, tmp_path: Path
):
    done = analyze_aapl(online_env(cli_env, silent_proxy.url, tmp_path), "--debug")
    assert silent_proxy.accepted.is_set()  # it really went to the network
    assert done.returncode == ExitStatus.DATA_SOURCE, done.stderr
    assert done.stdout == ""
    err = done.stderr
    assert "Traceback (most recent call last):" in err
    # the chain down to the cause: our deadline, then the error the user is told
    assert "stock_agent.providers.base.DeadlineExceeded: no answer within 2 s" in err
    assert "stock_agent.providers.base.SourceUnavailable: Yahoo Finance did not answer" in err
    assert "DEBUG yfinance: Entering history()" in err  # the library's own log
    # and the one line is still said, once
    [said] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert said.startswith(ONE_LINE), said


def test_without_debug_the_same_failure_is_one_line(
    cli_env: dict[str, str], silent_proxy: SilentListener, tmp_path: Path
):
    done = analyze_aapl(online_env(cli_env, silent_proxy.url, tmp_path))
    assert silent_proxy.accepted.is_set()
    assert done.returncode == ExitStatus.DATA_SOURCE, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(ONE_LINE), line
    assert "Traceback" not in done.stderr and "yfinance" not in done.stderr
