"""`stock-agent watch`: the alert threshold, checked for you (the logic is `services.watch`).

One line per alert on stdout (JSON lines with `--json`); notices and errors on stderr, one line
each. `--exec CMD` runs CMD (split like a shell would, but never through one) once per alert
with the alert as JSON on stdin, within a timeout. `--explain` asks the model for a two-sentence
reason per alert, only when a model is configured and only when an alert fires. `--once`
checks now and exits 0 (no alert) or 1 (an alert fired), for cron; otherwise the watch runs
until Ctrl-C (exit 130), and what fired stays fired.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC
from typing import TYPE_CHECKING, Any

import click

from stock_agent.core import numbers as num
from stock_agent.errors import ExitStatus, InvalidInput, StockAgentError
from stock_agent.sanitize import strip_control_line

if TYPE_CHECKING:
    from stock_agent.app import App
    from stock_agent.core.models import Analysis, Profile
    from stock_agent.services.watch import (
        CheckResult,
        Clock,
        MarketCalendar,
        Wake,
        WatchAlert,
        WatchService,
    )

DEFAULT_EXEC_TIMEOUT = 30.0
# Never handed to an --exec command: it needs the alert, not our credentials.
_CHILD_ENV_DROPPED = ("OPENAI_API_KEY", "REDIS_URL")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_REASON_CHARS = 400

Explainer = Callable[["WatchAlert", "Analysis | None", "Profile | None"], str]


def build_watch(
    app: App, *, clock: Clock | None = None, calendar: MarketCalendar | None = None
) -> WatchService:
    """The watch service over the app's cached analysis and its store."""
    from stock_agent.services.watch import WatchService

    return WatchService(app.analysis, app.alerts, clock=clock, calendar=calendar)


def parse_exec(command: str) -> list[str]:
    """`--exec` as an argument list (shell-like quoting, no shell); the program must exist."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise InvalidInput(f"--exec {command!r}: {exc}", fix="check the quoting") from None
    if not argv:
        raise InvalidInput("--exec needs a command", fix='e.g. --exec "notify-send stock-agent"')
    if shutil.which(argv[0]) is None:
        raise InvalidInput(
            f"--exec: no program {argv[0]!r}",
            fix="give a program on PATH or its path (a shell only if you name one: sh -c '...')",
        )
    return argv


def alert_line(alert: WatchAlert) -> str:
    """`TSLA  -6.12%  threshold -5.00%  price 203.4500  bar 2026-11-20  fired 14:32 UTC`."""
    when = alert.fired_at.replace("T", " ").replace("+00:00", " UTC")
    line = (
        f"{alert.symbol}  {alert.change_1d:+.2%}  threshold {alert.threshold:+.2%}  "
        f"price {alert.price:,.2f}  bar {alert.bar_date}  fired {when}"
    )
    if alert.stale:
        line += "  (last good data: the source is failing)"
    if alert.reason:
        line += f"  {alert.reason}"
    return strip_control_line(line)


def two_sentences(text: str) -> str:
    """The first two sentences of `text`, on one line, without control sequences."""
    flat = " ".join(strip_control_line(text).split())
    kept = " ".join(_SENTENCE_END.split(flat)[:2]).strip()
    if len(kept) > MAX_REASON_CHARS:
        kept = kept[: MAX_REASON_CHARS - 1].rstrip() + "…"
    return kept


def explain_request(alert: WatchAlert, analysis: Analysis | None) -> str:
    """What the model is asked about one alert: the move and a few readings of the analysis."""
    facts: dict[str, Any] = {
        "symbol": alert.symbol,
        "bar_date": alert.bar_date,
        "change_1d_pct": round(alert.change_1d * 100, 2),
        "threshold_pct": round(alert.threshold * 100, 2),
        "price": alert.price,
    }
    if analysis is not None:
        ind = analysis.indicators
        facts.update(
            {
                "return_5d_pct": num.percent(analysis.returns.d5, 2),
                "return_1m_pct": num.percent(analysis.returns.m1, 2),
                "rsi_14": ind.rsi_14,
                "trend": analysis.trend,
                "volume_ratio_20d": analysis.volume_ratio_20d,
                "pct_from_high_52w": num.percent(analysis.pct_from_high_52w, 2),
                "signals": [s.text for s in analysis.signals][:4],
            }
        )
    from stock_agent.sanitize import wrap_data

    data = wrap_data("watch_alert", json.dumps(facts, ensure_ascii=False))
    return (
        "My watch alert fired for this one-day drop:\n"
        f"{data}\n"
        "In exactly two sentences and without tools: what does the data say about this move, "
        "and what should I look at next? No advice to buy or sell."
    )


def run_exec(argv: list[str], alert: WatchAlert, timeout: float) -> str | None:
    """Run `argv` with the alert as JSON on stdin; None when it exited 0, else one line."""
    payload = json.dumps(alert.to_dict(), ensure_ascii=False) + "\n"
    env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROPPED}
    what = f"--exec {argv[0]} for {alert.symbol}"
    try:
        done = subprocess.run(
            argv,
            input=payload,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"error: {what}: still running after {timeout:g} s, stopped"
    except OSError as exc:
        return f"error: {what}: cannot run it ({exc.strerror or exc})"
    if done.returncode == 0:
        return None
    said = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    detail = f": {said[-1][:200]}" if said else ""
    return f"error: {what}: exit status {done.returncode}{detail}"


def model_explainer(app: App, user_id: str) -> Explainer:
    """Two sentences from the model about an alert (a turn with no tools and no memory)."""
    agent = app.agent(only_tools=())

    def explain(alert: WatchAlert, analysis: Analysis | None, profile: Profile | None) -> str:
        from stock_agent.core.models import Profile as EmptyProfile

        answer = agent.run_once(
            explain_request(alert, analysis),
            profile=profile or EmptyProfile(),
            user_id=user_id,
        )
        return two_sentences(answer or "")

    return explain


class AlertPrinter:
    """Delivers what a check found: the alert lines (or JSON lines), the --exec runs, the
    --explain reasons, and one stderr line per problem."""

    def __init__(
        self,
        *,
        as_json: bool,
        exec_argv: list[str] | None,
        exec_timeout: float,
        explainer: Explainer | None,
    ) -> None:
        self.as_json = as_json
        self.exec_argv = exec_argv
        self.exec_timeout = exec_timeout
        self.explainer = explainer

    def check(self, result: CheckResult) -> None:
        for symbol, error in result.errors:
            _err(f"{symbol}: {error.one_line()}")
        for alert in result.fired:
            self.deliver(alert, result)

    def deliver(self, alert: WatchAlert, result: CheckResult) -> None:
        if self.explainer is not None:
            try:
                reason = self.explainer(alert, result.analyses.get(alert.symbol), result.profile)
                alert = replace(alert, reason=reason or None)
            except StockAgentError as exc:
                _err(f"{alert.symbol}: no reason from the model: {exc.one_line()}")
            except Exception as exc:  # an explanation never stops the alert itself
                _err(f"{alert.symbol}: no reason from the model: {type(exc).__name__}: {exc}")
        if self.as_json:
            click.echo(json.dumps(alert.to_dict(), ensure_ascii=False, allow_nan=False))
        else:
            click.echo(alert_line(alert))
        if self.exec_argv is not None:
            failure = run_exec(self.exec_argv, alert, self.exec_timeout)
            if failure:
                _err(failure)


def _err(line: str) -> None:
    click.echo(strip_control_line(line), err=True)


def run_watch(
    app: App,
    user_id: str,
    *,
    every: float,
    once: bool,
    as_json: bool,
    exec_command: str | None = None,
    exec_timeout: float = DEFAULT_EXEC_TIMEOUT,
    explain: bool = False,
    clock: Clock | None = None,
    calendar: MarketCalendar | None = None,
    checks: int | None = None,
) -> int:
    """The `watch` command. Returns the exit status: with `once`, 1 when an alert fired, else
    the worst error's status, else 0; a watch ended by Ctrl-C, 130."""
    if not exec_timeout > 0:
        raise InvalidInput(f"invalid --exec-timeout {exec_timeout!r}", fix="give seconds, e.g. 30")
    exec_argv = parse_exec(exec_command) if exec_command is not None else None
    explainer: Explainer | None = None
    if explain:
        if app.settings.model_configured:
            explainer = model_explainer(app, user_id)
        else:
            _err(
                "note: --explain needs a model (set OPENAI_API_KEY, or OPENAI_BASE_URL for a "
                "local server); alerts come without a reason"
            )
    printer = AlertPrinter(
        as_json=as_json, exec_argv=exec_argv, exec_timeout=exec_timeout, explainer=explainer
    )
    watch = build_watch(app, clock=clock, calendar=calendar)

    if once:
        result = watch.check(user_id)
        printer.check(result)
        if result.fired:
            return ExitStatus.ERROR  # 1: an alert fired (for cron and scripts)
        return max((e.exit_code for _, e in result.errors), default=ExitStatus.OK)

    symbols = _watched_or_fail(watch, user_id)
    _err(f"watching {', '.join(symbols)} for {user_id} every {_duration(every)} (Ctrl-C to stop)")
    cache_ttl = app.settings.cache_ttls.bars
    if every < cache_ttl:
        _err(
            f"note: analyses are cached for {_duration(cache_ttl)} "
            "(STOCK_AGENT_CACHE_TTL_BARS), so a check may see data that old"
        )
    last_why = ["interval"]

    def on_sleep(wake: Wake) -> None:
        if wake.why != last_why[0]:
            last_why[0] = wake.why
            if wake.why == "market closed":
                at = wake.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
                _err(f"market closed: next check at {at}")

    def on_error(exc: BaseException) -> None:
        line = exc.one_line() if isinstance(exc, StockAgentError) else _unexpected(app, exc)
        _err(f"{line}; trying again at the next check")

    from stock_agent.ui.progress import stop_fetches_on_ctrl_c

    try:
        with stop_fetches_on_ctrl_c():
            watch.run(
                user_id,
                every=every,
                on_check=printer.check,
                on_error=on_error,
                on_sleep=on_sleep,
                checks=checks,
            )
    except KeyboardInterrupt:
        _err("watch stopped; the alerts that fired stay fired")
        return ExitStatus.INTERRUPTED
    return ExitStatus.OK


def _watched_or_fail(watch: WatchService, user_id: str) -> list[str]:
    from stock_agent.services.watch import nothing_to_watch, watched_symbols

    profile = watch.analysis.profiles.get(user_id)
    symbols = watched_symbols(profile)
    if not symbols:
        raise nothing_to_watch(profile)
    return symbols


def _unexpected(app: App, exc: BaseException) -> str:
    """One line for an error that is not ours (e.g. Redis unreachable mid-watch)."""
    import sys

    if "redis" in sys.modules:
        import redis

        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            from stock_agent.store.connection import unreachable

            return unreachable(app.backend.display_url, embedded=app.settings.embedded).one_line()
    return f"error: {type(exc).__name__}: {exc}"


def _duration(seconds: float) -> str:
    for size, unit in ((86_400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
