"""The `stock-agent` command line: a thin click layer over `App`. Commands parse arguments, call
one method and render the result; heavy modules are imported inside the commands that need them.

`main(argv, env)` is the one error boundary: every exception becomes one line and an
`ExitStatus` here (tracebacks only with --debug), and tests run it in-process with their own
environment.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from stock_agent import __version__
from stock_agent.core.limits import SETTABLE_PROFILE_FIELDS
from stock_agent.errors import ExitStatus, StockAgentError

if TYPE_CHECKING:
    from stock_agent.app import App

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def user_option(f: Any) -> Any:
    return click.option(
        "--user",
        "user",
        metavar="ID",
        default=None,
        help="User id (default: STOCK_AGENT_USER, else your login name).",
    )(f)


def model_option(f: Any) -> Any:
    return click.option(
        "-m",
        "--model",
        "model",
        metavar="NAME",
        default=None,
        help="The model for this run (default: STOCK_AGENT_MODEL, else `stock-agent models default`).",
    )(f)


def system_prompt_option(f: Any) -> Any:
    return click.option(
        "--system-prompt",
        "system_prompt",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=__import__("pathlib").Path),
        default=None,
        help="Use FILE as the system prompt (default: STOCK_AGENT_PROMPTS_DIR/system.md, else the shipped one).",
    )(f)


def use_prompts(app: App, system_prompt: Any) -> None:
    """The prompts of this run: STOCK_AGENT_PROMPTS_DIR and --system-prompt, checked now (and
    reset when neither is given: `main` may run again in the same process)."""
    from stock_agent.agent.prompts import use_prompts as use

    use(app.settings.prompts_dir, system_prompt)


def get_app(
    ctx: click.Context, user: str | None = None, *, model: str | None = None
) -> tuple[App, str]:
    """The app for this invocation (one per run, closed by `main`) and the user id: a command's
    --user wins over the group's, which wins over STOCK_AGENT_USER. An empty id is refused.
    `model` (a command's --model) wins over the configured model."""
    from stock_agent.app import App
    from stock_agent.config import load_settings
    from stock_agent.store.keys import validate_id

    opts = ctx.find_root().obj
    run: dict[str, Any] = opts["run"]
    app = run.get("app")
    if app is None:
        settings = load_settings(run.get("env")).with_overrides(
            data_dir=opts.get("data_dir"), timeout=opts.get("timeout"), model=model
        )
        app = run["app"] = App(settings, notify=_notice)
    chosen = user if user is not None else opts.get("user")
    user_id = validate_id(chosen if chosen is not None else app.settings.user_id, "user id")
    return app, user_id


def _timeout_option(value: str | None) -> float | None:
    """--timeout's value in seconds (None: not given), or a usage error with the rule."""
    if value is None:
        return None
    from stock_agent.config import parse_timeout
    from stock_agent.errors import ConfigError

    try:
        return parse_timeout(value, "--timeout")
    except ConfigError as exc:
        raise click.BadParameter(exc.message) from None


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))


@click.group(context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, "-V", "--version", prog_name="stock-agent")
@user_option
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=__import__("pathlib").Path),
    default=None,
    help="Offline market data: a folder of SYMBOL.csv files (default: STOCK_AGENT_DATA_DIR, else Yahoo Finance).",
)
@click.option(
    "--timeout",
    metavar="SECONDS",
    default=None,
    callback=lambda ctx, param, value: _timeout_option(value),
    help="Seconds one market-data fetch may take in all, retries included (default: STOCK_AGENT_TIMEOUT, else 20).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option(
    "--color",
    "color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    help="Colours in the output: auto (a terminal without NO_COLOR), always or never.",
)
@click.option("--no-color", "no_color", is_flag=True, help="The same as --color never.")
@click.pass_context
def cli(
    ctx: click.Context,
    user: str | None,
    data_dir: Any,
    timeout: float | None,
    debug: bool,
    color: str,
    no_color: bool,
) -> None:
    """A terminal stock-analysis assistant with its memory in Redis.

    \b
    Start with:
      stock-agent analyze AAPL MSFT     one-shot analysis (works without a model)
      stock-agent chat                  talk to the agent (needs OPENAI_API_KEY or OPENAI_BASE_URL)
      stock-agent profile show          your saved preferences
      stock-agent doctor                check the set-up

    Configuration comes from the environment and a .env file (see .env.example).
    With no REDIS_URL an embedded Valkey server keeps the memory under STOCK_AGENT_HOME.
    The options above also work after the command: `stock-agent analyze AAPL --debug`.
    """
    from stock_agent.ui.console import set_color_mode

    set_color_mode("never" if no_color else color)  # type: ignore[arg-type]
    run = ctx.obj if isinstance(ctx.obj, dict) else {}  # set by `main`: env, and the app once made
    ctx.obj = {"user": user, "data_dir": data_dir, "timeout": timeout, "debug": debug, "run": run}
    if ctx.invoked_subcommand is None:  # plain `stock-agent`: the help, not a usage error
        click.echo(ctx.get_help())
        ctx.exit(0)
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")


# --------------------------------------------------------------------------- chat


@cli.command(context_settings=CONTEXT)
@user_option
@model_option
@system_prompt_option
@click.option("--session", "session_id", metavar="ID", help="Resume (or start) this session.")
@click.option(
    "--new", "new", is_flag=True, help="Start a new session instead of resuming the latest."
)
@click.option(
    "--allow-profile-writes",
    is_flag=True,
    help="On a pipe, save profile changes the agent proposes (in a terminal it asks each time).",
)
@click.pass_context
def chat(
    ctx: click.Context,
    user: str | None,
    model: str | None,
    system_prompt: Any,
    session_id: str | None,
    new: bool,
    allow_profile_writes: bool,
) -> None:
    """Chat with the agent in the terminal.

    Without --session it resumes your latest live session. Type /help for the slash commands.
    When the agent proposes a profile change, you are asked to confirm it. When standard input
    is not a terminal, each line is one message, answers are plain text, and profile changes
    are refused unless --allow-profile-writes.
    """
    from stock_agent.ui.chat import run_chat

    if session_id is not None and new:
        raise click.UsageError("--session and --new do not go together", ctx)
    app, user_id = get_app(ctx, user, model=model)
    use_prompts(app, system_prompt)
    run_chat(
        app,
        user_id,
        session_id=session_id,
        new=new,
        allow_profile_writes=allow_profile_writes,
    )


# --------------------------------------------------------------------------- analyze


@cli.command(context_settings=CONTEXT)
@click.argument("symbols", nargs=-1, metavar="[SYMBOL]...")
@user_option
@model_option
@system_prompt_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the computed analysis as JSON (only JSON on stdout): --format json.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "md"]),
    default=None,
    help="table (default; with a model, followed by its narration), json, csv or md.",
)
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=__import__("pathlib").Path),
    default=None,
    help="Write the report to FILE instead (its .json/.csv/.md suffix picks the format).",
)
@click.option(
    "--narrate-only",
    is_flag=True,
    help="With a model: only the narration, without the tables before it.",
)
@click.option(
    "--no-llm", is_flag=True, help="Print the computed report even when a model is configured."
)
@click.option(
    "--chart",
    "chart",
    metavar="PATH.png",
    type=click.Path(dir_okay=False, path_type=__import__("pathlib").Path),
    default=None,
    help="Also write a chart per symbol (with several, PATH gets the symbol: chart-AAPL.png).",
)
@click.option(
    "--html",
    "html",
    metavar="PATH.html",
    type=click.Path(dir_okay=False, path_type=__import__("pathlib").Path),
    default=None,
    help="Also write a self-contained report page with the charts, to open or share.",
)
@click.pass_context
def analyze(
    ctx: click.Context,
    symbols: tuple[str, ...],
    user: str | None,
    model: str | None,
    system_prompt: Any,
    as_json: bool,
    fmt: str | None,
    output: Any,
    narrate_only: bool,
    no_llm: bool,
    chart: Any,
    html: Any,
) -> None:
    """Analyze SYMBOLs (default: your profile's preferred symbols).

    The computed report is printed as tables; with a model configured the agent's narration
    follows (--narrate-only: the narration alone; --no-llm: no narration). --format json|csv|md
    and --output FILE are for scripts and spreadsheets; --chart and --html write pictures.
    """
    from stock_agent.ui.analyze import run_analyze
    from stock_agent.ui.progress import stop_fetches_on_ctrl_c

    app, user_id = get_app(ctx, user, model=model)
    use_prompts(app, system_prompt)
    with stop_fetches_on_ctrl_c():  # one Ctrl-C stops a fetch at once, not at its deadline
        code = run_analyze(
            app,
            user_id,
            list(symbols),
            as_json=as_json,
            no_llm=no_llm,
            chart=chart,
            html=html,
            fmt=fmt,
            output=output,
            narrate_only=narrate_only,
        )
    ctx.exit(code)


# --------------------------------------------------------------------------- profile


@cli.group(context_settings=CONTEXT)
def profile() -> None:
    """Your saved preferences: preferred symbols, alert threshold, portfolio size, notes.

    Every new chat session starts with them.
    """


@profile.command("show", context_settings=CONTEXT)
@user_option
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@click.pass_context
def profile_show(ctx: click.Context, user: str | None, as_json: bool) -> None:
    """Show the profile."""
    from stock_agent.ui.text import format_profile

    app, user_id = get_app(ctx, user)
    prof = app.profiles.get(user_id)
    if as_json:
        emit_json({"user_id": user_id, **prof.to_dict()})
    else:
        click.echo(format_profile(user_id, prof))
        if prof.symbol_alerts:
            click.echo(f"  symbol alerts      {_symbol_alerts(prof)}")


@profile.command(
    "set", context_settings={**CONTEXT, "ignore_unknown_options": True}, short_help="Set one field."
)
@click.argument(
    "field",
    metavar="FIELD",
    type=click.Choice(SETTABLE_PROFILE_FIELDS),
)
@click.argument("value", nargs=-1, required=True)
@user_option
@click.pass_context
def profile_set(ctx: click.Context, field: str, value: tuple[str, ...], user: str | None) -> None:
    """Set FIELD to VALUE.

    \b
      alert_threshold   a 1-day drop that raises an alert: -5% or -0.05
      portfolio_size    an amount in your account currency: 100000, 250k, 1.5m, 2b
      currency          that currency's code: USD (the default), EUR, GBP
      preferred_symbols the whole list: AAPL MSFT NVDA (see add-symbol to add one)
      notes             free text: "long-term investor, dividend focus"
    Use `none` to clear a field.
    """
    from stock_agent.ui.text import format_profile

    app, user_id = get_app(ctx, user)
    text = " ".join(value)
    prof = app.profiles.set_field(
        user_id, field, list(value) if field == "preferred_symbols" else text
    )
    click.echo(format_profile(user_id, prof))


@profile.command("add-symbol", context_settings=CONTEXT)
@click.argument("symbols", nargs=-1, required=True)
@user_option
@click.pass_context
def profile_add(ctx: click.Context, symbols: tuple[str, ...], user: str | None) -> None:
    """Add SYMBOLs to the preferred symbols (order kept, no duplicates)."""
    app, user_id = get_app(ctx, user)
    prof = app.profiles.add_symbols(user_id, list(symbols))
    click.echo("preferred symbols: " + (", ".join(prof.preferred_symbols) or "none"))


@profile.command("remove-symbol", context_settings=CONTEXT)
@click.argument("symbols", nargs=-1, required=True)
@user_option
@click.pass_context
def profile_remove(ctx: click.Context, symbols: tuple[str, ...], user: str | None) -> None:
    """Remove SYMBOLs from the preferred symbols."""
    from stock_agent.core.profile import parse_symbols

    app, user_id = get_app(ctx, user)
    before = app.profiles.get(user_id).preferred_symbols
    absent = [s for s in parse_symbols(list(symbols)) if s not in before]
    if absent:
        click.echo(f"not in the preferred symbols: {', '.join(absent)}", err=True)
    prof = app.profiles.remove_symbols(user_id, list(symbols))
    click.echo("preferred symbols: " + (", ".join(prof.preferred_symbols) or "none"))


@profile.command("set-alert", context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("symbol")
@click.argument("threshold")
@user_option
@click.pass_context
def profile_set_alert(ctx: click.Context, symbol: str, threshold: str, user: str | None) -> None:
    """Give SYMBOL its own alert THRESHOLD, a 1-day drop: -3% or -0.03.

    It wins over alert_threshold for that symbol, and `watch` watches the symbol.
    """
    app, user_id = get_app(ctx, user)
    prof = app.profiles.set_symbol_alert(user_id, symbol, threshold)
    click.echo("symbol alerts: " + _symbol_alerts(prof))


@profile.command("clear-alert", context_settings=CONTEXT)
@click.argument("symbol")
@user_option
@click.pass_context
def profile_clear_alert(ctx: click.Context, symbol: str, user: str | None) -> None:
    """Remove SYMBOL's own alert threshold."""
    app, user_id = get_app(ctx, user)
    removed = app.profiles.clear_symbol_alert(user_id, symbol)
    if not removed:
        click.echo(f"no alert of its own was set for {symbol.strip().upper()}")
    click.echo("symbol alerts: " + _symbol_alerts(app.profiles.get(user_id)))


def _symbol_alerts(prof: Any) -> str:
    return ", ".join(f"{a.symbol} {a.threshold * 100:+.2f}%" for a in prof.symbol_alerts) or "none"


@profile.command("reset", context_settings=CONTEXT)
@user_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def profile_reset(ctx: click.Context, user: str | None, yes: bool) -> None:
    """Delete the whole profile (asks first; without a terminal, --yes is needed)."""
    from stock_agent.errors import InvalidInput

    app, user_id = get_app(ctx, user)
    if not yes and not sys.stdin.isatty():
        raise InvalidInput(
            f"not deleting the profile of {user_id} without a confirmation", fix="add --yes"
        )
    if not yes and not click.confirm(f"Delete the profile of {user_id}?"):
        raise click.exceptions.Exit(1)
    existed = app.profiles.reset(user_id)
    click.echo(f"profile of {user_id} " + ("deleted" if existed else "was already empty"))


# --------------------------------------------------------------------------- sessions


@cli.group(context_settings=CONTEXT)
def sessions() -> None:
    """Your chat sessions (they expire after STOCK_AGENT_SESSION_TTL seconds without use)."""


@sessions.command("list", context_settings=CONTEXT)
@user_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def sessions_list(ctx: click.Context, user: str | None, as_json: bool) -> None:
    """List live sessions, newest first."""
    from stock_agent.ui.text import format_sessions

    app, user_id = get_app(ctx, user)
    found = app.sessions.list(user_id)
    if as_json:
        emit_json([s.to_dict() for s in found])
    else:
        click.echo(format_sessions(user_id, found))


@sessions.command("show", context_settings=CONTEXT)
@click.argument("session_id", metavar="ID")
@user_option
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_context
def sessions_show(ctx: click.Context, session_id: str, user: str | None, as_json: bool) -> None:
    """Show the messages of session ID (does not extend its life)."""
    from stock_agent.errors import InvalidInput
    from stock_agent.store.keys import validate_id
    from stock_agent.ui.text import format_messages

    app, user_id = get_app(ctx, user)
    validate_id(session_id, "session id")
    messages = app.sessions.raw_messages(user_id, session_id)
    if not messages:
        raise InvalidInput(
            f"no session {session_id!r} for user {user_id}", fix="see `stock-agent sessions list`"
        )
    if as_json:
        from stock_agent.ui.text import message_usage

        emit_json(
            [
                {"type": m.get("type"), "content": m.get("data", {}).get("content")}
                | ({"usage": used} if (used := message_usage(m)) else {})
                for m in messages
            ]
        )
    else:
        click.echo(format_messages(messages))


@sessions.command("clear", context_settings=CONTEXT)
@click.argument("session_id", metavar="ID")
@user_option
@click.pass_context
def sessions_clear(ctx: click.Context, session_id: str, user: str | None) -> None:
    """Delete session ID."""
    from stock_agent.errors import InvalidInput

    app, user_id = get_app(ctx, user)
    if not app.sessions.clear(user_id, session_id):
        raise InvalidInput(
            f"no session {session_id!r} for user {user_id}", fix="see `stock-agent sessions list`"
        )
    click.echo(f"session {session_id} deleted")


# --------------------------------------------------------------------------- usage


@cli.command("usage", context_settings=CONTEXT)
@user_option
@click.option(
    "--since",
    default="30d",
    show_default=True,
    metavar="SPAN|DATE",
    help="From how far back: 7d, 4w, 3m (30-day months) or a date such as 2026-11-01.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def usage_command(ctx: click.Context, user: str | None, since: str, as_json: bool) -> None:
    """Tokens and cost of your chat turns, by day and by model (kept like the profile)."""
    import datetime as dt

    from stock_agent.store.usage import parse_since
    from stock_agent.ui.text import format_usage, usage_summary

    today = dt.date.today()
    first = parse_since(since, today)
    app, user_id = get_app(ctx, user)
    days = app.usage.days(user_id, first, today)
    if as_json:
        emit_json(usage_summary(user_id, first, today, days))
    else:
        click.echo(format_usage(user_id, first, today, days))


# --------------------------------------------------------------------------- cache


@cli.group(context_settings=CONTEXT)
def cache() -> None:
    """The Redis cache of tool results (quotes, analyses, fundamentals, news)."""


@cache.command("stats", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def cache_stats(ctx: click.Context, as_json: bool) -> None:
    """Hits and misses per tool, and the number of cached results (shared by all users)."""
    from stock_agent.ui.text import format_cache_stats

    app, _ = get_app(ctx)
    stats = app.cache.stats()
    entries = app.cache.entries()
    ttls = app.settings.cache_ttls
    if as_json:
        emit_json({"entries": entries, "tools": stats, "ttl_seconds": vars(ttls)})
    else:
        click.echo(format_cache_stats(stats, entries, ttls))


@cache.command("clear", context_settings=CONTEXT)
@click.pass_context
def cache_clear(ctx: click.Context) -> None:
    """Empty the cache of all users (memory and profiles are untouched)."""
    app, _ = get_app(ctx)
    removed = app.cache.clear()
    from stock_agent.ui.text import plural

    click.echo(f"cache cleared: {plural(removed, 'entry', 'entries')} removed")


# --------------------------------------------------------------------------- store


@cli.group(context_settings=CONTEXT)
def store() -> None:
    """The Redis store: embedded Valkey (default) or REDIS_URL."""


@store.command("status", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option(
    "--scan",
    is_flag=True,
    help="Also count this agent's keys by kind (SCANs the whole keyspace: slow on a big server).",
)
@click.pass_context
def store_status(ctx: click.Context, as_json: bool, scan: bool) -> None:
    """Which store is in use, its memory, eviction policy, cache entries and the journal.

    A stopped embedded server is reported as stopped, not started.
    """
    from stock_agent.store import embedded
    from stock_agent.ui.text import format_store_status

    app, _ = get_app(ctx)
    if app.settings.embedded:
        state = embedded.status(app.settings.home)
        if state.state == "stopped":
            home = str(app.settings.home)
            if as_json:
                emit_json({"kind": "embedded", "state": "stopped", "home": home})
            else:
                click.echo(f"embedded store: stopped ({home}); any command that needs it starts it")
            return
    status = app.status(count_keys=scan)
    if as_json:
        emit_json(status.to_dict())
    else:
        click.echo(format_store_status(status))


@store.command("stop", context_settings=CONTEXT)
@click.pass_context
def store_stop(ctx: click.Context) -> None:
    """Stop the embedded Valkey server (it saves its data first)."""
    from stock_agent.errors import StockAgentError as Err
    from stock_agent.store import embedded

    app, _ = get_app(ctx)
    if not app.settings.embedded:
        raise Err("REDIS_URL is set: the store is external", fix="stop that server yourself")
    app.close()
    if embedded.stop(app.settings.home):
        click.echo(f"embedded store stopped ({app.settings.home})")
    else:
        click.echo(f"embedded store was not running ({app.settings.home})")


@store.command("migrate", context_settings=CONTEXT)
@click.option(
    "--to",
    "to_url",
    required=True,
    metavar="URL",
    help="The store to copy to (a redis://, rediss://, unix: or redis+cluster:// URL).",
)
@click.option(
    "--user",
    "user",
    metavar="ID",
    default=None,
    help="Copy only this user (default: every user of this agent, found by SCAN).",
)
@click.pass_context
def store_migrate(ctx: click.Context, to_url: str, user: str | None) -> None:
    """Copy profiles, live sessions (with their TTL), sessions indexes, usage records and alert
    markers from the current store to the one at URL, translating key names to its form (cluster hash tags
    or not). Target keys are replaced, so running it twice changes nothing. The cache is not
    copied (it refills).
    """
    import time
    from dataclasses import replace

    from stock_agent.store.backend import StoreBackend
    from stock_agent.store.migrate import migrate_users
    from stock_agent.ui.text import plural

    app, _ = get_app(ctx)
    target = StoreBackend(replace(app.settings, redis_url=to_url))
    start, users, keys = time.monotonic(), 0, 0
    try:
        for c in migrate_users(app.backend, target, user):
            users, keys = users + 1, keys + c.keys
            click.echo(
                f"{c.user_id}: {plural(c.profiles, 'profile', 'profiles')}, "
                f"{plural(c.sessions, 'session', 'sessions')}, "
                f"{plural(c.indexes, 'sessions index', 'sessions indexes')}, "
                f"{plural(c.alerts, 'alert marker', 'alert markers')}, "
                f"{plural(c.usage, 'usage record', 'usage records')} copied"
            )
    finally:
        target.close()
    click.echo(
        f"migrated {plural(users, 'user', 'users')}, {plural(keys, 'key', 'keys')} from "
        f"{app.backend.display_url} to {target.display_url} in {time.monotonic() - start:.2f} s"
    )


# --------------------------------------------------------------------------- doctor


@cli.command(context_settings=CONTEXT)
@user_option
@click.option(
    "--repair",
    is_flag=True,
    help="Repair your stored data: set damaged keys aside (kept 7 days), drop unreadable "
    "messages, rebuild the sessions index.",
)
@click.option("--all-users", is_flag=True, help="With --repair: every user of this agent.")
@click.pass_context
def doctor(ctx: click.Context, user: str | None, repair: bool, all_users: bool) -> None:
    """Check the configuration, the store, the model server and the data source.

    The model server is asked for its model list (no tokens are spent). The store check
    really writes, reads and deletes a short-lived key of yours (so an ACL on the wrong keys
    fails) and warns when its eviction policy can evict profiles. Exits 1 when something
    needed fails; a missing model is only a warning (analyze works without one).

    With --repair it repairs instead, one line per change, and exits 0 when the data is clean.
    """
    from stock_agent.errors import InvalidInput
    from stock_agent.ui.doctor import run_doctor, run_repair

    app, user_id = get_app(ctx, user)
    if all_users and not repair:
        raise InvalidInput("--all-users works with --repair only", fix="add --repair")
    if repair:
        ctx.exit(run_repair(app, None if all_users else user_id))
    ctx.exit(run_doctor(app, user_id))


# --------------------------------------------------------------------------- models, keys, config


def _env(ctx: click.Context) -> Mapping[str, str] | None:
    env: Mapping[str, str] | None = ctx.find_root().obj["run"].get("env")
    return env


@cli.group("models", context_settings=CONTEXT, invoke_without_command=True)
@click.pass_context
def models_group(ctx: click.Context) -> None:
    """The model server's models, the default marked with *; `models default NAME` sets it.

    The default is STOCK_AGENT_MODEL from the environment or .env, else the user config.env
    (`stock-agent keys path` shows its folder); -m/--model picks one for a run.
    """
    if ctx.invoked_subcommand is not None:
        return
    from stock_agent.ui.setup import format_models, list_models

    app, _ = get_app(ctx)
    click.echo(format_models(list_models(app.settings), app.settings.model))


@models_group.command("default", context_settings=CONTEXT)
@click.argument("name", required=False, metavar="[NAME]")
@click.pass_context
def models_default(ctx: click.Context, name: str | None) -> None:
    """Show the default model, or make NAME the default (saved in the user config.env)."""
    from stock_agent.config import load_settings, set_user_default, user_config_path

    if name is None:
        click.echo(load_settings(_env(ctx)).model)
        return
    from stock_agent.sanitize import strip_control_line

    name = name.strip()
    if not name or strip_control_line(name) != name or " " in name:
        raise click.BadParameter(f"invalid model name {name!r}", param_hint="NAME")
    path = user_config_path(_env(ctx))
    set_user_default(path, "STOCK_AGENT_MODEL", name)
    click.echo(f"default model: {name} (in {path})")
    effective = load_settings(_env(ctx)).model
    if effective != name:
        click.echo(
            f"note: STOCK_AGENT_MODEL={effective} in the environment or .env still wins", err=True
        )


@cli.group(context_settings=CONTEXT)
def keys() -> None:
    """API keys kept in the user config dir (readable by you only). The environment and .env
    still win over a stored key."""


@keys.command("set", context_settings=CONTEXT)
@click.argument("name", type=click.Choice(["openai"]))
@click.pass_context
def keys_set(ctx: click.Context, name: str) -> None:
    """Store the key NAME, typed at a hidden prompt or read from standard input."""
    from stock_agent.config import keys_path, store_key
    from stock_agent.errors import InvalidInput

    if sys.stdin.isatty():
        value = click.prompt(f"{name} key", hide_input=True, default="", show_default=False)
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidInput(f"no usable {name} key given", fix="paste the key alone, on one line")
    path = keys_path(_env(ctx))
    store_key(path, name, value)
    click.echo(f"{name} key saved in {path}")


@keys.command("path", context_settings=CONTEXT)
@click.pass_context
def keys_path_command(ctx: click.Context) -> None:
    """Print the file the keys are stored in."""
    from stock_agent.config import keys_path

    click.echo(str(keys_path(_env(ctx))))


@keys.command("list", context_settings=CONTEXT)
@click.pass_context
def keys_list(ctx: click.Context) -> None:
    """The names of the stored keys (never their values)."""
    from stock_agent.config import keys_path, read_keys

    for name in sorted(read_keys(keys_path(_env(ctx)))):
        click.echo(name)


@cli.group("config", context_settings=CONTEXT)
def config_group() -> None:
    """The effective configuration."""


@config_group.command("show", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (secrets masked).")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Each setting, its value and where it came from: environment, .env, keys.json,
    config.env or default. Secrets are masked."""
    from stock_agent.config import SECRET_SETTINGS, config_dir, resolve_env
    from stock_agent.ui.setup import format_config, mask

    values, sources = resolve_env(_env(ctx))
    if as_json:
        emit_json(
            {
                name: {
                    "value": mask(name, v) if name in SECRET_SETTINGS else v,
                    "source": sources[name],
                }
                for name, v in values.items()
                if name in sources
                and (name.startswith(("STOCK_AGENT_", "OPENAI_")) or name == "REDIS_URL")
            }
        )
        return
    click.echo(format_config(values, sources))
    click.echo(f"(user config dir: {config_dir(_env(ctx))})")


# --------------------------------------------------------------------------- watch


@cli.command(context_settings=CONTEXT)
@user_option
@click.option(
    "--every",
    "every",
    metavar="INTERVAL",
    default="5m",
    show_default=True,
    help="Time between checks while the market is open: 30s, 5m, 1h.",
)
@click.option("--once", is_flag=True, help="Check now and exit: 0 no alert, 1 an alert fired.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per alert (JSON lines).")
@click.option(
    "--exec",
    "exec_command",
    metavar="CMD",
    default=None,
    help="Run CMD per alert with the alert as JSON on stdin (no shell unless CMD names one).",
)
@click.option(
    "--exec-timeout",
    type=float,
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Stop an --exec command that runs longer.",
)
@click.option("--explain", is_flag=True, help="Add the model's two-sentence reason to each alert.")
@click.pass_context
def watch(
    ctx: click.Context,
    user: str | None,
    every: str,
    once: bool,
    as_json: bool,
    exec_command: str | None,
    exec_timeout: float,
    explain: bool,
) -> None:
    """Watch your symbols and alert on a 1-day drop at or below your thresholds.

    Checks the preferred symbols against alert_threshold and every symbol with its own
    threshold (`profile set-alert NVDA -3%`). Each crossing fires once per symbol and bar,
    however many watchers share the store; outside trading hours it sleeps until the next
    session. With --once it checks now and exits 1 when an alert fired (for cron).
    """
    from stock_agent.services.watch import parse_interval
    from stock_agent.ui.watch import run_watch

    seconds = parse_interval(every)
    app, user_id = get_app(ctx, user)
    ctx.exit(
        run_watch(
            app,
            user_id,
            every=seconds,
            once=once,
            as_json=as_json,
            exec_command=exec_command,
            exec_timeout=exec_timeout,
            explain=explain,
        )
    )


# --------------------------------------------------------------------------- mcp


@cli.command("mcp", context_settings=CONTEXT)
@user_option
@click.option(
    "--http",
    "http",
    metavar="HOST:PORT",
    default=None,
    help="Serve streamable HTTP on HOST:PORT (loopback; default: stdio).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow --http on a non-loopback address (the server has no authentication).",
)
@click.option(
    "--allow-profile-writes",
    is_flag=True,
    help="Offer the tools that change the profile (default: read only).",
)
@click.pass_context
def mcp_command(
    ctx: click.Context,
    user: str | None,
    http: str | None,
    allow_remote: bool,
    allow_profile_writes: bool,
) -> None:
    """Serve the market tools to MCP clients (Claude Desktop, IDEs) over stdio or HTTP.

    Quotes, analyses, comparisons, fundamentals, news and the profile, from the same Redis
    cache as the terminal. The user is --user (else STOCK_AGENT_USER) for the whole run.
    """
    from stock_agent.ui.mcp_server import run_mcp

    app, user_id = get_app(ctx, user)
    ctx.exit(
        run_mcp(
            app,
            user_id,
            http=http,
            allow_remote=allow_remote,
            allow_profile_writes=allow_profile_writes,
        )
    )


# --------------------------------------------------------------------------- entry point


# The group's options, also accepted after the subcommand (as git and httpie do).
_GLOBAL_WITH_VALUE = ("--data-dir", "--timeout", "--color")
_GLOBAL_FLAGS = ("--debug", "--no-color")


def hoist_global_options(args: list[str]) -> list[str]:
    """`analyze AAPL --data-dir X` -> `--data-dir X analyze AAPL`: the group's options found after
    the subcommand move before it (never those after `--`, and never the words of a value)."""
    head: list[str] = []
    rest: list[str] = []
    i = 0
    seen_command = False
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        takes_value = name in (*_GLOBAL_WITH_VALUE, "--user") and "=" not in arg
        if not seen_command and not arg.startswith("-"):
            seen_command = True
            rest.append(arg)
        elif not seen_command or (
            name in _GLOBAL_WITH_VALUE and i + (0 if "=" in arg else 1) < len(args)
        ):
            head.extend(args[i : i + 2] if takes_value else [arg])
            i += 2 if takes_value else 1
            continue
        elif arg in _GLOBAL_FLAGS:
            head.append(arg)
        else:
            rest.append(arg)
        i += 1
    return head + rest


def _debug_requested(argv: list[str], env: Mapping[str, str]) -> bool:
    return "--debug" in argv or env.get("STOCK_AGENT_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point and the one error boundary: one line per error, no tracebacks unless
    --debug, Ctrl-C exits 130. `env` replaces the process environment (and `.env`) for this
    run, so tests call `main([...], env={...})` in-process. Returns the exit status; as the
    console script (`argv` None) it leaves at once instead (see `exit_now`)."""
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    run: dict[str, Any] = {"env": env}
    code = _run(args, run, debug=_debug_requested(args, os.environ if env is None else env))
    app = run.get("app")
    if app is not None:
        try:
            app.close()  # saves what must be saved (e.g. unsaved turns to the journal)
        except Exception as exc:  # never a traceback on the way out
            code = code or _fail(f"error: while closing: {type(exc).__name__}: {exc}", 1)
    if argv is None:
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """Leave at once: flush what was printed and any LangChain tracers, then end the process
    without the interpreter's teardown (with the model stack loaded, collecting every module's
    objects takes 0.5-1.5 s after the user has already been answered)."""
    if "langchain_core.tracers.langchain" in sys.modules:  # a LangSmith tracer ran: flush it
        try:
            from langchain_core.tracers.langchain import wait_for_all_tracers

            wait_for_all_tracers()
        except Exception:  # tracing is optional; leaving is not
            pass
    import contextlib

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


def _run(args: list[str], run: dict[str, Any], *, debug: bool) -> int:
    try:
        # Without standalone mode click returns the code of `ctx.exit(code)` instead of exiting.
        result = cli.main(args=args, prog_name="stock-agent", standalone_mode=False, obj=run)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # `stock-agent` alone: the help, as click prints it
        return int(exc.exit_code)
    except click.UsageError as exc:
        # One line, like every other error, with where to look instead of the usage block.
        where = exc.ctx.command_path if exc.ctx is not None else "stock-agent"
        return _fail(f"error: {exc.format_message()} (see `{where} --help`)", ExitStatus.USAGE)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        return _fail("interrupted", ExitStatus.INTERRUPTED)
    except StockAgentError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        return _fail(exc.one_line(), exc.exit_code)
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        translated = _translate(exc, run.get("app"))
        if translated is not None:
            return _fail(translated.one_line(), translated.exit_code)
        return _fail(
            f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            ExitStatus.ERROR,
        )
    return result if isinstance(result, int) else ExitStatus.OK


def _notice(line: str) -> None:
    """A one-line notice from the app (e.g. the journal replayed): standard error, sanitized."""
    from stock_agent.sanitize import strip_control_line

    click.echo(strip_control_line(line), err=True)


def _fail(message: str, code: int) -> int:
    # An error can quote data (a file's cell, a server's reply): one line, no control sequences.
    from stock_agent.sanitize import strip_control_line

    click.echo(strip_control_line(message), err=True)
    return int(code)


def _translate(exc: BaseException, app: App | None) -> StockAgentError | None:
    """Errors from libraries that have a clear meaning for the user."""
    if "redis" in sys.modules:
        import redis

        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            from stock_agent.store.connection import unreachable

            where = app.backend.display_url if app is not None else "the configured store"
            return unreachable(where, embedded=app.settings.embedded if app is not None else None)
    return None
