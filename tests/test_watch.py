"""`stock-agent watch` as a user (and cron) runs it: real processes against the test Valkey,
a small offline data folder of our own with a planted -6 % day, and the scripted model server
for --explain. The sleeping is driven by an injected clock and calendar."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stock_agent.app import App
from stock_agent.config import Settings
from stock_agent.core.models import Profile, SymbolAlert
from stock_agent.errors import InvalidInput
from stock_agent.services.watch import (
    MAX_NAP,
    OPEN_GRACE,
    CheckResult,
    ExchangeCalendar,
    Wake,
    parse_interval,
    watched_symbols,
)
from stock_agent.store.alerts import ALERT_FIRED_TTL
from stock_agent.ui.watch import alert_line, build_watch, run_watch, two_sentences
from tests.openai_server import ScriptedOpenAI, text

GUARD = 60  # seconds: deadlock guards, never timing assertions
LAST_BAR = date(2026, 11, 20)  # a Friday
FIRED_KEY = "agent:memory:test_agent:alice:alerts:DROP:2026-11-20"


# --------------------------------------------------------------------------- data


def business_days(end: date, count: int) -> list[date]:
    days: list[date] = []
    day = end
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]


def write_bars(path: Path, closes: list[float], end: date = LAST_BAR) -> None:
    rows = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for day, close in zip(business_days(end, len(closes)), closes, strict=True):
        rows.append(
            f"{day.isoformat()},{close:.2f},{close * 1.01:.2f},{close * 0.99:.2f},"
            f"{close:.2f},{close:.2f},1000000"
        )
    path.write_text("\n".join(rows) + "\n")


def append_bar(path: Path, day: date, change: float) -> None:
    last = float(path.read_text().strip().splitlines()[-1].split(",")[4])
    close = last * (1 + change)
    with path.open("a") as f:
        f.write(
            f"{day.isoformat()},{close:.2f},{close * 1.01:.2f},{close * 0.99:.2f},"
            f"{close:.2f},{close:.2f},1000000\n"
        )


def walk(start: float, count: int, step: float) -> list[float]:
    closes = [start]
    for i in range(count - 1):
        closes.append(closes[-1] * (1 + (step if i % 2 else -step / 2)))
    return closes


@pytest.fixture
def market(tmp_path: Path) -> Path:
    """DROP ends with a -6 % day; CALM with a -1 % day; SPY is the benchmark."""
    folder = tmp_path / "market"
    folder.mkdir()
    write_bars(folder / "SPY.csv", walk(400.0, 60, 0.004))
    drop = walk(100.0, 59, 0.003)
    write_bars(folder / "DROP.csv", [*drop, round(drop[-1], 2) * 0.94])
    calm = walk(50.0, 59, 0.002)
    write_bars(folder / "CALM.csv", [*calm, round(calm[-1], 2) * 0.99])
    return folder


@pytest.fixture
def env(cli_env: dict[str, str], market: Path) -> dict[str, str]:
    return {**cli_env, "STOCK_AGENT_DATA_DIR": str(market)}


@pytest.fixture
def app_settings(settings: Settings, market: Path) -> Settings:
    return settings.with_overrides(data_dir=market)


def watch(
    env: dict[str, str], *args: str, timeout: float = GUARD
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stock_agent", "watch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(env["STOCK_AGENT_HOME"]).parent,
    )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "stock_agent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
        cwd=Path(env["STOCK_AGENT_HOME"]).parent,
    )
    assert done.returncode == 0, done.stderr
    return done


def watching(env: dict[str, str], threshold: str = "-5%") -> None:
    cli(env, "profile", "add-symbol", "DROP", "CALM")
    cli(env, "profile", "set", "alert_threshold", threshold)


def one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


# --------------------------------------------------------------------------- fires once


def test_once_fires_once_then_not_then_again_on_a_new_bar(
    env: dict[str, str], market: Path, redis_client: Any
) -> None:
    watching(env)
    first = watch(env, "--once")
    assert first.returncode == 1, first.stderr
    (line,) = first.stdout.splitlines()
    assert line.startswith("DROP  -6.00%  threshold -5.00%  price ")
    assert "  bar 2026-11-20  fired 20" in line and line.endswith(" UTC")
    assert first.stderr == ""
    # the fired state: in Redis, with a TTL of a few days
    assert 4 * 86_400 < redis_client.ttl(FIRED_KEY) <= ALERT_FIRED_TTL
    assert json.loads(redis_client.get(FIRED_KEY))["change_1d"] == pytest.approx(-0.06, abs=1e-3)

    again = watch(env, "--once")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")

    append_bar(market / "DROP.csv", date(2026, 11, 23), -0.06)
    append_bar(market / "CALM.csv", date(2026, 11, 23), 0.01)
    new_bar = watch(env, "--once", "--json")
    assert new_bar.returncode == 1, new_bar.stderr
    (record,) = [json.loads(x) for x in new_bar.stdout.splitlines()]
    assert record["symbol"] == "DROP" and record["bar_date"] == "2026-11-23"
    assert record["change_1d"] == pytest.approx(-0.06, abs=1e-3)
    assert record["threshold"] == -0.05 and record["user_id"] == "alice"
    assert set(record) == {
        "user_id", "symbol", "bar_date", "change_1d", "threshold", "price", "fired_at",
        "text", "source", "stale", "reason",
    }  # fmt: skip
    assert watch(env, "--once", "--json").returncode == 0


# `stock-agent watch ARGS` with the offline provider's reads logged (one line per read: process
# id and symbol) to the file given first, so a test counts the fetches of all processes.
COUNTED_WATCH = """\
import os, sys
from stock_agent.providers.offline import CsvProvider

log = sys.argv.pop(1)
read = CsvProvider.history

def history(self, symbol, *args, **kwargs):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {symbol}\\n")
    return read(self, symbol, *args, **kwargs)

CsvProvider.history = history
from stock_agent.cli import main
main()
"""


def test_two_watchers_in_parallel_fire_once_in_total(
    env: dict[str, str], app_settings: Settings, tmp_path: Path
) -> None:
    watching(env)
    reads = tmp_path / "reads.txt"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTED_WATCH, str(reads), "watch", "--once", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(env["STOCK_AGENT_HOME"]).parent,
        )
        for _ in range(3)
    ]
    outcomes = [(p.wait(GUARD), *p.communicate(timeout=GUARD)) for p in procs]
    fired = [json.loads(line) for _, out, _ in outcomes for line in out.splitlines()]
    assert [a["symbol"] for a in fired] == ["DROP"], outcomes
    assert sorted(code for code, _, _ in outcomes) == [0, 0, 1], outcomes
    assert all(err == "" for _, _, err in outcomes), outcomes
    # One fetch per symbol in all, however many watchers: each file was read once (the
    # benchmark SPY too), by whichever process got there first.
    fetched = sorted(line.split()[1] for line in reads.read_text().splitlines())
    assert fetched == ["CALM", "DROP", "SPY"], reads.read_text()
    # The cache stats agree: every watcher looked up both analyses, and only the analyses that
    # were computed read the benchmark (one lookup each): two computations, not six. (A watcher
    # that waited for another's fetch counts as a miss, so `misses` alone cannot show it.)
    with App(app_settings) as app:
        stats = app.cache.stats()
    assert stats["analysis"]["lookups"] == 3 * 2, stats
    assert stats["history"]["lookups"] == 2, stats


def test_a_symbol_threshold_wins_over_the_global_one(env: dict[str, str]) -> None:
    watching(env)
    out = cli(env, "profile", "set-alert", "calm", "-0.5%").stdout
    assert out == "symbol alerts: CALM -0.50%\n"
    cli(env, "profile", "set-alert", "DROP", "-10%")
    cli(env, "profile", "set-alert", "SPY", "-50%")  # watched although not preferred
    done = watch(env, "--once")
    assert done.returncode == 1, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["CALM"]
    shown = cli(env, "profile", "show").stdout
    assert "  symbol alerts      CALM -0.50%, DROP -10.00%, SPY -50.00%\n" in shown
    assert json.loads(cli(env, "profile", "show", "--json").stdout)["symbol_alerts"] == [
        {"symbol": "CALM", "threshold": -0.005},
        {"symbol": "DROP", "threshold": -0.1},
        {"symbol": "SPY", "threshold": -0.5},
    ]
    # cleared, DROP falls back to the global -5 % (and fires: its bar had not fired yet)
    assert cli(env, "profile", "clear-alert", "DROP").stdout == (
        "symbol alerts: CALM -0.50%, SPY -50.00%\n"
    )
    assert cli(env, "profile", "clear-alert", "DROP").stdout.startswith(
        "no alert of its own was set for DROP\n"
    )
    done = watch(env, "--once")
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["DROP"]


def test_watched_symbols_and_threshold_for() -> None:
    profile = Profile(
        preferred_symbols=["AAPL", "NVDA"],
        alert_threshold=-0.05,
        symbol_alerts=(SymbolAlert("NVDA", -0.03), SymbolAlert("TSLA", -0.08)),
    )
    assert watched_symbols(profile) == ["AAPL", "NVDA", "TSLA"]
    assert profile.threshold_for("NVDA") == -0.03
    assert profile.threshold_for("AAPL") == -0.05
    no_global = Profile(preferred_symbols=["AAPL"], symbol_alerts=(SymbolAlert("TSLA", -0.08),))
    assert watched_symbols(no_global) == ["TSLA"]  # AAPL has no threshold to cross
    assert no_global.threshold_for("AAPL") is None


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_and_fires_nothing(env: dict[str, str], redis_client: Any) -> None:
    assert "no alert threshold set" in one_error_line(watch(env, "--once"), 2)
    cli(env, "profile", "set", "alert_threshold", "-5%")
    assert "no symbols to watch" in one_error_line(watch(env, "--once"), 2)
    cli(env, "profile", "add-symbol", "DROP")
    line = one_error_line(watch(env, "--every", "0"), 2)
    assert line == "error: invalid interval '0' (give 10 seconds to a day, such as 30s, 5m or 1h)"
    assert "no program 'no-such-program-x'" in one_error_line(
        watch(env, "--once", "--exec", "no-such-program-x --flag"), 2
    )
    assert "check the quoting" in one_error_line(watch(env, "--once", "--exec", "'open"), 2)
    refused = subprocess.run(
        [sys.executable, "-m", "stock_agent", "profile", "set-alert", "DROP", "3%"],
        env=env, capture_output=True, text=True, timeout=GUARD,
    )  # fmt: skip
    assert "must be a drop" in one_error_line(refused, 2)
    assert redis_client.exists(FIRED_KEY) == 0  # nothing fired by a refused command


def test_parse_interval() -> None:
    assert parse_interval("5m") == 300
    assert parse_interval("30s") == parse_interval("30") == 30
    assert parse_interval("1h") == 3600 and parse_interval("1.5m") == 90
    for bad in ("0", "5", "2d", "-5m", "5 minutes", "", "nan"):
        with pytest.raises(InvalidInput):
            parse_interval(bad)


# --------------------------------------------------------------------------- --exec


def test_exec_gets_the_alert_on_stdin_without_a_shell_or_our_secrets(
    env: dict[str, str], tmp_path: Path
) -> None:
    watching(env)
    seen = tmp_path / "seen.json"
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, os, sys\n"
        "alert = json.load(sys.stdin)\n"
        f"open({str(seen)!r}, 'w').write(json.dumps({{'alert': alert, 'argv': sys.argv[1:],"
        " 'key': os.environ.get('OPENAI_API_KEY'), 'redis': os.environ.get('REDIS_URL')}))\n"
    )
    env = {**env, "OPENAI_API_KEY": "sk-test-not-for-children"}
    done = watch(env, "--once", "--exec", f"{sys.executable} {script} '$HOME;x' \"a b\"")
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""
    got = json.loads(seen.read_text())
    assert got["alert"]["symbol"] == "DROP" and got["alert"]["bar_date"] == "2026-11-20"
    assert got["argv"] == ["$HOME;x", "a b"]  # no shell: no expansion, no splitting on ;
    assert got["key"] is None and got["redis"] is None


def test_exec_failure_and_timeout_are_one_line_each_and_the_alert_still_fires(
    env: dict[str, str], tmp_path: Path
) -> None:
    watching(env)
    failing = tmp_path / "fail.py"
    failing.write_text(
        "import sys\nsys.stdin.read()\nprint('boom', file=sys.stderr)\nsys.exit(3)\n"
    )
    done = watch(env, "--once", "--exec", f"{sys.executable} {failing}")
    assert done.returncode == 1
    assert done.stdout.startswith("DROP  -6.00%")
    assert done.stderr.splitlines() == [
        f"error: --exec {sys.executable} for DROP: exit status 3: boom"
    ]

    append_bar(Path(env["STOCK_AGENT_DATA_DIR"]) / "DROP.csv", date(2026, 11, 23), -0.07)
    hanging = tmp_path / "hang.py"
    hanging.write_text("import time\ntime.sleep(120)\n")
    done = watch(env, "--once", "--exec", f"{sys.executable} {hanging}", "--exec-timeout", "1")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: --exec {sys.executable} for DROP: still running after 1 s, stopped"
    ]


# --------------------------------------------------------------------------- --explain


def test_explain_asks_the_model_only_when_an_alert_fires(
    env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    watching(env)
    model_env = {
        **env,
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": openai_server.api_key,
        "STOCK_AGENT_MODEL": "test-model",
    }
    openai_server.queue(
        text("DROP fell 6% in one session on average volume. Watch the 20-day low. Third one.")
    )
    done = watch(model_env, "--once", "--explain", "--json")
    assert done.returncode == 1, done.stderr
    (alert,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert alert["reason"] == (
        "DROP fell 6% in one session on average volume. Watch the 20-day low."
    )
    (request,) = openai_server.requests
    asked = request["messages"][-1]["content"]
    assert '"symbol": "DROP"' in asked and '"change_1d_pct": -6.0' in asked
    assert "two sentences" in asked
    assert not request.get("tools")  # a turn with no tools

    again = watch(model_env, "--once", "--explain")
    assert again.returncode == 0 and again.stdout == ""
    assert len(openai_server.requests) == 1  # no alert, no model call


def test_explain_without_a_model_says_so_and_still_alerts(env: dict[str, str]) -> None:
    watching(env)
    done = watch(env, "--once", "--explain")
    assert done.returncode == 1
    assert done.stdout.startswith("DROP  -6.00%")
    assert done.stderr.splitlines() == [
        "note: --explain needs a model (set OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
        "server); alerts come without a reason"
    ]


def test_two_sentences_and_the_alert_line_are_clean() -> None:
    assert two_sentences("One. Two!  Three?") == "One. Two!"
    assert two_sentences("\x1b[31mRed\x1b[0m text.\nNext line. More.") == "Red text. Next line."
    assert len(two_sentences("word " * 500)) <= 400


# --------------------------------------------------------------------------- sleeping


class FakeClock:
    """Time that moves only when the watch sleeps."""

    def __init__(self, now: datetime) -> None:
        self.moment = now
        self.naps: list[float] = []

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.naps.append(seconds)
        self.moment += timedelta(seconds=seconds)


class FakeCalendar:
    """Closed from Friday 21:00 UTC to Monday 14:30 UTC (the weekend of LAST_BAR)."""

    opens = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)

    def __init__(self) -> None:
        self.asked: list[datetime] = []

    def is_open(self, now: datetime) -> bool:
        self.asked.append(now)
        return now >= self.opens

    def next_open(self, now: datetime) -> datetime | None:
        return self.opens if now < self.opens else self.opens + timedelta(days=1)


def test_market_closed_sleeps_until_the_next_session(
    app_settings: Settings, redis_client: Any
) -> None:
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    clock, calendar = FakeClock(saturday), FakeCalendar()
    checks: list[CheckResult] = []
    wakes: list[Wake] = []
    with App(app_settings) as app:
        app.profiles.add_symbols("alice", ["DROP", "CALM"])
        app.profiles.set_field("alice", "alert_threshold", "-5%")
        service = build_watch(app, clock=clock, calendar=calendar)
        fired = service.run(
            "alice",
            every=300,
            on_check=checks.append,
            on_error=pytest.fail,
            on_sleep=wakes.append,
            checks=3,
        )
    # Saturday: one check (the Friday drop fires), then asleep until Monday's open
    assert fired == 1
    assert [c.checked_at for c in checks] == [
        saturday,
        FakeCalendar.opens + OPEN_GRACE,
        FakeCalendar.opens + OPEN_GRACE + timedelta(seconds=300),
    ]
    assert [len(c.fired) for c in checks] == [1, 0, 0]  # and not again on Monday
    assert checks[1].repeated == ("DROP",)
    assert wakes == [
        Wake(FakeCalendar.opens + OPEN_GRACE, "market closed"),
        Wake(FakeCalendar.opens + OPEN_GRACE + timedelta(seconds=300), "interval"),
    ]
    asleep = (FakeCalendar.opens + OPEN_GRACE - saturday).total_seconds()
    weekend_naps = clock.naps[: len(clock.naps) - 5]
    assert sum(weekend_naps) == pytest.approx(asleep)
    assert max(clock.naps) <= MAX_NAP
    assert clock.naps[-5:] == [60.0] * 5  # then the 5-minute interval, in naps


def test_the_terminal_loop_says_when_it_sleeps_and_stops(
    app_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock(datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
    with App(app_settings) as app:
        app.profiles.add_symbols("alice", ["DROP"])
        app.profiles.set_field("alice", "alert_threshold", "-5%")
        code = run_watch(
            app,
            "alice",
            every=600,
            once=False,
            as_json=False,
            clock=clock,
            calendar=FakeCalendar(),
            checks=2,
        )
    out, err = capsys.readouterr()
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["DROP"]
    assert err.splitlines() == [
        "watching DROP for alice every 10m (Ctrl-C to stop)",
        "note: analyses are cached for 15m (STOCK_AGENT_CACHE_TTL_BARS), so a check may see "
        "data that old",
        "market closed: next check at 2026-11-23 14:31 UTC",
    ]


def test_the_exchange_calendar_is_closed_on_a_weekend() -> None:
    pytest.importorskip("exchange_calendars")
    calendar = ExchangeCalendar()
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert calendar.is_open(saturday) is False
    opens = calendar.next_open(saturday)
    assert opens is not None and opens.date() == date(2026, 11, 23)
    assert calendar.is_open(datetime(2026, 11, 23, 15, 0, tzinfo=UTC)) is True


def test_ctrl_c_stops_cleanly_and_the_fired_state_survives(env: dict[str, str]) -> None:
    watching(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stock_agent", "watch", "--every", "10s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(env["STOCK_AGENT_HOME"]).parent,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first check's alert: it fired
        assert first.startswith("DROP  -6.00%"), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "watch stopped; the alerts that fired stay fired"
    assert watch(env, "--once").returncode == 0  # not fired again after the restart


def test_alert_line_names_symbol_move_threshold_price_and_time() -> None:
    from stock_agent.services.watch import WatchAlert

    alert = WatchAlert(
        user_id="alice",
        symbol="TSLA",
        bar_date="2026-11-20",
        change_1d=-0.061,
        threshold=-0.05,
        price=1203.456,
        fired_at="2026-11-20T21:05:00+00:00",
        text="",
        reason="It fell.\x1b[2J Then it stopped.",
    )
    assert alert_line(alert) == (
        "TSLA  -6.10%  threshold -5.00%  price 1,203.46  bar 2026-11-20  "
        "fired 2026-11-20 21:05:00 UTC  It fell. Then it stopped."
    )


def test_a_check_counts_each_symbol_once_in_the_cache(
    app_settings: Settings, redis_client: Any
) -> None:
    """However many watchers share the store, a check of a cached symbol fetches nothing."""
    with App(app_settings) as app:
        app.profiles.add_symbols("alice", ["DROP", "CALM"])
        app.profiles.set_field("alice", "alert_threshold", "-5%")
        build_watch(app).check("alice")
        for _ in range(3):
            build_watch(app).check("alice")
        stats = app.cache.stats()["analysis"]
    assert (stats["lookups"], stats["misses"]) == (8, 2)
