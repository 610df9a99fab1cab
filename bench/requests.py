"""8. Yahoo requests per analyze: every HTTP request the real yfinance makes for `App.analyze`.

yfinance runs unchanged over a recording fake HTTP session (`tests/yahoo_http.py`: it answers
from examples/market as Yahoo would, cookie, crumb, time zone and chart requests alike), behind
the project's `YFinanceProvider`, through the real cache on the bench's Valkey. Three states:
- new machine: nothing on disk (yfinance's cookie and time-zone caches empty), an empty cache;
- new process: yfinance's disk caches kept from the run before, the Redis cache empty;
- cached: the same analysis again (the Redis cache answers).
The 5-symbol case includes SPY, the benchmark, so fetching it once shows. A quote (in a warm
process) is counted too.

The baseline replays the request pattern of the provider before issue 10 through the same real
yfinance and fake session: `history(period="5y")` per symbol, the benchmark again for the
others (once per run, through its cache entry), and a quote read from `fast_info` (its last
price and previous close: two chart requests). Counts are exact; there is no spread.

A dead network: `stock-agent analyze AAPL` as a whole process with Yahoo as the source and the
HTTPS and HTTP proxies pointing at a local listener that accepts and never answers
(tests/test_provider_yahoo_network.py: SilentListener), a new STOCK_AGENT_HOME and yfinance
cache per run and an empty Redis cache, so nothing is known: its wall time with the default
timeout and with `--timeout 2`, against "the timeout plus 1 s" (judged on the slowest run: a
bound is a promise for every run). The exit code and whether a traceback was printed are in the
JSON.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from typing import Any

from bench.common import Context, Result, Row, Stat, clean_env

GROUP = "8. Yahoo requests per analyze (fake HTTP session)"
FIVE = ["AAPL", "MSFT", "NVDA", "TSLA", "SPY"]
CASES = {"1 symbol": ["AAPL"], "5 symbols (SPY among them)": FIVE}
DEAD_GROUP = "8. Yahoo on a dead network (accepts, never answers)"


def _baseline_analyze(session: Any, symbols: list[str]) -> None:
    """What the previous provider asked of yfinance for an uncached analysis."""
    import yfinance

    for symbol in symbols:
        yfinance.Ticker(symbol, session=session).history(
            period="5y", interval="1d", auto_adjust=True
        )
    if any(s != "SPY" for s in symbols):  # the benchmark's own entry, once per run
        yfinance.Ticker("SPY", session=session).history(
            period="5y", interval="1d", auto_adjust=True
        )


def _baseline_quote(session: Any, symbol: str) -> None:
    import yfinance

    info = yfinance.Ticker(symbol, session=session).fast_info
    _ = info.last_price, info.previous_close


def _dead_network_run(ctx: Context, timeout: float | None, n: int) -> dict[str, Any]:
    """One `stock-agent [--timeout T] analyze AAPL` with every proxy a silent listener: its wall
    seconds, exit code, standard error and whether the listener was reached at all."""
    from bench.startup import cli_command
    from tests.test_provider_yahoo_network import SilentListener, online_env

    cli, _ = cli_command()
    scratch = ctx.workdir / f"dead-network-{timeout or 'default'}-{n}"  # nothing known yet
    listener = SilentListener()
    env = online_env(
        clean_env(
            REDIS_URL=ctx.server.url,
            STOCK_AGENT_USER="bench",
            STOCK_AGENT_AGENT_ID="bench_dead_network",
            STOCK_AGENT_HOME=str(scratch / "home"),
            STOCK_AGENT_CONFIG_DIR=str(scratch / "config"),
        ),
        listener.url,
        scratch,
    )
    ctx.counters.client.flushall()  # and the Redis cache empty
    argv = [*cli, *(["--timeout", f"{timeout:g}"] if timeout else []), "analyze", "AAPL"]
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        done = subprocess.run(
            argv, env=env, cwd=scratch, capture_output=True, text=True, timeout=180
        )  # a deadlock guard far above any timeout measured here
        seconds = time.perf_counter() - started
        reached = listener.accepted.is_set()
    finally:
        listener.close()
    if not reached:
        raise RuntimeError(f"`{' '.join(argv)}` never reached the network: {done.stderr[:300]}")
    output = done.stdout + done.stderr
    return {
        "seconds": round(seconds, 3),
        "exit_code": done.returncode,
        "stderr_lines": done.stderr.splitlines(),
        "stdout": done.stdout,
        "traceback": "Traceback" in output,
    }


def dead_network(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    """The rows and details of `analyze AAPL` on a dead network (see the module docstring)."""
    from stock_agent.config import DEFAULT_TIMEOUT
    from stock_agent.errors import ExitStatus

    repeats = {None: 1, 2.0: 2} if ctx.sizes.quick else {None: 3, 2.0: 5}
    rows: list[Row] = []
    details: dict[str, Any] = {}
    for timeout, n in repeats.items():
        runs = [_dead_network_run(ctx, timeout, i) for i in range(n)]
        limit = (timeout or DEFAULT_TIMEOUT) + 1
        seconds = Stat.of([r["seconds"] for r in runs])
        codes = sorted({r["exit_code"] for r in runs})
        one_line = all(len(r["stderr_lines"]) == 1 and not r["stdout"] for r in runs)
        tracebacks = sum(r["traceback"] for r in runs)
        how = f"--timeout {timeout:g}" if timeout else f"default timeout, {DEFAULT_TIMEOUT:g} s"
        rows.append(
            Row(DEAD_GROUP, f"analyze AAPL until the shell returns ({how})", "s", seconds,
                target=f"<= {limit:g} s", met=seconds.max <= limit,
                note=f"slowest {seconds.max:.2f} s; exit {', '.join(map(str, codes))} (data "
                     f"source: {int(ExitStatus.DATA_SOURCE)}); "
                     f"{'one line' if one_line else 'NOT one line'} on stderr, "
                     f"{tracebacks or 'no'} traceback{'s' if tracebacks != 1 else ''}"
                     + ("; the release before issue 10: 72 s" if not timeout else ""))
        )  # fmt: skip
        details[how] = {
            "limit_s": limit,
            "exit_codes": codes,
            "exit_code_is_data_source": codes == [int(ExitStatus.DATA_SOURCE)],
            "one_line_on_stderr": one_line,
            "tracebacks": tracebacks,
            "runs": runs,
        }
    return rows, details


def run(ctx: Context) -> Result:
    from stock_agent.app import App
    from stock_agent.config import Settings
    from stock_agent.providers.yahoo import YFinanceProvider, _quiet_yfinance
    from tests.yahoo_http import FakeYahooSession, fresh_yfinance

    _quiet_yfinance()
    result = Result("requests")
    details: dict[str, Any] = {}

    def settings(tag: str) -> Settings:
        return Settings(
            redis_url=ctx.server.url,
            user_id="bench",
            agent_id=f"bench_requests_{tag}",
            home=ctx.workdir / f"requests-home-{tag}",
        )

    for case, symbols in CASES.items():
        disk = ctx.workdir / f"yfinance-{len(symbols)}"
        shutil.rmtree(disk, ignore_errors=True)
        counts: dict[str, int] = {}
        kinds: dict[str, dict[str, int]] = {}
        for state in ("new machine", "new process", "cached"):
            if state != "cached":
                fresh_yfinance(disk)  # a new process: yfinance's own state forgotten
                ctx.counters.client.flushall()  # and the Redis cache empty
            session = FakeYahooSession()
            app = App(settings(str(len(symbols))), provider=YFinanceProvider(session=session))
            try:
                batch = app.analyze(symbols)
                if batch.errors:
                    raise RuntimeError(f"{case}, {state}: {batch.errors[0]}")
            finally:
                app.close()
            counts[state] = len(session.requests)
            kinds[state] = dict(Counter(k.split(":")[0] for k in session.kinds()))

        baseline: dict[str, int] = {}
        for state in ("new machine", "new process"):
            if state == "new machine":
                shutil.rmtree(disk, ignore_errors=True)
            fresh_yfinance(disk)
            session = FakeYahooSession()
            _baseline_analyze(session, symbols)
            baseline[state] = len(session.requests)
        details[case] = {"project": kinds, "baseline": baseline}
        for state in ("new machine", "new process", "cached"):
            result.rows.append(
                Row(GROUP, f"analyze, {case}: {state}", "requests", counts[state],
                    baseline.get(state, 0 if state == "cached" else None))
            )  # fmt: skip

    # A quote in a process that has fetched before (its crumb and AAPL's time zone known),
    # with the Redis cache emptied, then the same quote again (a cache hit).
    disk = ctx.workdir / "yfinance-quote"
    fresh_yfinance(disk)
    ctx.counters.client.flushall()
    session = FakeYahooSession()
    app = App(settings("quote"), provider=YFinanceProvider(session=session))
    try:
        app.market.quote("AAPL")  # warms the process
        ctx.counters.client.flushall()
        before = len(session.requests)
        app.market.quote("AAPL")
        app.market.quote("AAPL")
        quote_requests = len(session.requests) - before
    finally:
        app.close()
    fresh_yfinance(disk)
    session = FakeYahooSession()
    _baseline_quote(session, "AAPL")
    before = len(session.requests)
    _baseline_quote(session, "AAPL")
    baseline_quote = len(session.requests) - before
    result.rows.append(
        Row(GROUP, "a quote, then the same quote again (warm process)", "requests",
            quote_requests, baseline_quote, "1", quote_requests == 1,
            "the second quote is served by the cache; the baseline asks fast_info for the "
            "last price (1-year chart) and the previous close (5-day hourly chart)")
    )  # fmt: skip

    # How much history one bars request asks for (Yahoo sends what is asked: 5 years of bars
    # are about 1,258, the 807 days asked now about 556).
    session = FakeYahooSession()
    fresh_yfinance(disk)
    YFinanceProvider(session=session).history("AAPL")
    chart = next(r for r in session.requests if r.kind == "chart:AAPL" and "period1" in r.params)
    asked_days = round((int(chart.params["period2"]) - int(chart.params["period1"])) / 86_400)
    result.rows.append(
        Row(GROUP, "calendar days of bars asked per analysis", "days", asked_days, 1826,
            note="baseline: range=5y for the 800 days an analysis uses")
    )  # fmt: skip
    result.details = {
        "session": "tests/yahoo_http.py FakeYahooSession: answers from examples/market, records",
        "states": {
            "new machine": "yfinance's cookie and time-zone caches empty, Redis cache empty",
            "new process": "yfinance's disk caches from the run before, Redis cache empty",
            "cached": "the same analysis again: the Redis cache answers",
        },
        "requests_by_kind": details,
        "note": (
            "a new machine pays yfinance's cookie and crumb once per process and each "
            "symbol's time zone once ever (kept on disk by yfinance); the bars themselves are "
            "one request per symbol from a start date 807 days back (the baseline: range=5y)"
        ),
    }
    rows, result.details["dead_network"] = dead_network(ctx)
    result.rows.extend(rows)
    return result
