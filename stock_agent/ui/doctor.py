"""`stock-agent doctor`: what is configured, what works, what is missing (secrets never shown);
`doctor --repair`: set damaged stored data aside and rebuild the sessions index.

The store is checked as the app uses it: the server, its eviction policy (a policy that can
evict profiles is a warning), a real read/write/script probe of this user's keys under the
configured ACL, and whether this user's stored data is readable."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING

import click

from stock_agent.errors import StockAgentError

if TYPE_CHECKING:
    from stock_agent.app import App
    from stock_agent.config import Settings

OK, WARN, FAIL = "ok", "warn", "FAIL"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def check_provider_package(model: str) -> tuple[str, str]:
    """A `provider:model` name needs LangChain's package for that provider (langchain-anthropic
    for `anthropic:...`): is it importable? (Nothing is sent.)"""
    import importlib.util

    provider = model.split(":", 1)[0].strip().lower().replace("-", "_")
    module = f"langchain_{provider}"
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return OK, f"provider package {module} is installed (the server is not checked)"
    return (
        FAIL,
        f"provider package {module} is not installed: pip install {module.replace('_', '-')}",
    )


def check_model_server(settings: Settings, timeout: float = 5.0) -> tuple[str, str]:
    """Ask the model server for its model list: is it there, does it take the key, does it
    serve the configured model? (One small request; no tokens are spent.)"""
    if ":" in settings.model and not settings.model.startswith("openai:"):
        return check_provider_package(settings.model)
    import openai

    from stock_agent.agent.model import explain_model_error

    client = openai.OpenAI(
        api_key=settings.openai_api_key or "not-needed",
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=timeout,
    )
    try:
        served = [m.id for m in client.models.list()]
    except openai.NotFoundError:
        return OK, "server reachable (it does not list its models)"
    except openai.OpenAIError as exc:
        explained = explain_model_error(exc, settings)
        return FAIL, str(explained) if explained else type(exc).__name__
    name = settings.model.removeprefix("openai:")
    if served and name not in served:
        return WARN, f"server reachable, but it does not list {name!r}"
    return OK, "server reachable"


def check_data_source(settings: Settings, timeout: float = 5.0) -> tuple[str, str]:
    """Build the configured market data provider and ask it whether it works."""
    from stock_agent.providers import make_provider

    try:
        provider = make_provider(settings)
    except StockAgentError as exc:  # e.g. a data folder that does not exist
        return FAIL, str(exc)
    result = provider.check(timeout)
    if result.ok:
        return OK, result.detail
    return FAIL, f"{result.detail} ({result.fix})" if result.fix else result.detail


def check_store(app: App, user_id: str) -> list[tuple[str, str, str]]:
    """The store's rows: server, eviction, access (ACL probe) and this user's stored data."""
    from stock_agent.store.connection import mask_url
    from stock_agent.ui.text import format_eviction

    s = app.settings
    try:
        # 1 round trip, however many keys exist
        status = app.status(count_keys=False, count_cache=False)
    except StockAgentError as exc:
        where = mask_url(s.redis_url) if s.redis_url else f"embedded under {s.home}"
        return [(FAIL, "store", f"{where}: {exc}")]
    text = f"{status.kind} {status.server} at {status.url}"
    if status.not_permitted:
        text += f"; {', '.join(status.not_permitted)} not permitted (ACL): details unknown"
    rows = [(OK, "store", text)]
    if status.nodes:  # a cluster: which nodes answer (a dead one is a warning: replicas cover)
        from stock_agent.ui.text import format_nodes

        down = not all(n.answers for n in status.nodes)
        rows.append((WARN if down else OK, "nodes", format_nodes(status)))

    # Eviction: a warning, not a failure: everything works today, the fix is the server's
    # setting (which a managed Redis may not let this user change), and `doctor` exits 1
    # only when something needed fails.
    eviction = format_eviction(status)
    if status.warnings:
        rows.append((WARN, "eviction", f"{eviction}; " + "; ".join(status.warnings)))
    elif status.maxmemory_policy is None:
        rows.append((WARN, "eviction", f"{eviction}: cannot tell whether profiles can be evicted"))
    else:
        rows.append((OK, "eviction", eviction))

    try:
        found = app.check_store(user_id)
    except StockAgentError as exc:
        return [*rows, (FAIL, "access", str(exc))]
    return [*rows, (found.access.state, "access", found.access.text),
            (found.data.state, "keys", found.data.text)]  # fmt: skip


def run_repair(app: App, user_id: str | None) -> int:
    """`doctor --repair` for `user_id` (None: every user): one line per change; 0 when the
    data is clean afterwards, 1 when a change failed."""
    report = app.repair_store(user_id)
    for line in report.lines:
        click.echo(line)
    return 0 if report.ok else 1


def run_doctor(app: App, user_id: str) -> int:
    """Print one line per check; return 1 if something needed is missing."""
    s = app.settings
    # Store: needed by every command.
    checks: list[tuple[str, str, str]] = check_store(app, user_id)

    # Model: needed by chat and the narrated analyze; `analyze --no-llm` works without it.
    if ":" in s.model and not s.model.startswith("openai:"):
        state, answer = check_provider_package(s.model)
        checks.append((state, "model", f"{s.model}; {answer}"))
    elif s.model_configured:
        key = "set" if s.openai_api_key else "not set (not needed by most local servers)"
        base = s.openai_base_url or "https://api.openai.com/v1 (default)"
        state, answer = check_model_server(s)
        checks.append((state, "model", f"{s.model} via {base}; OPENAI_API_KEY {key}; {answer}"))
    else:
        checks.append(
            (
                WARN,
                "model",
                "no OPENAI_API_KEY or OPENAI_BASE_URL: chat is unavailable, analyze prints the computed report",
            )
        )

    # Data source: the provider checks itself (one small request at most).
    state, answer = check_data_source(s, timeout=min(5.0, s.timeout))
    checks.append((state, "data", answer))

    checks.append(
        (
            OK,
            "config",
            f"user {user_id}, agent {s.agent_id}, session TTL {s.session_ttl}s, "
            f"history window {s.history_window} messages",
        )
    )
    versions = ", ".join(
        f"{name} {_version(name)}"
        for name in ("langchain", "langchain-core", "langchain-openai", "redis", "yfinance")
    )
    checks.append(
        (
            OK,
            "versions",
            f"stock-agent {_version('stock-agent')}, Python {platform.python_version()}, {versions}",
        )
    )

    width = max(len(name) for _, name, _ in checks)
    for state, name, text in checks:
        colour = {"ok": "green", "warn": "yellow", "FAIL": "red"}[state]
        click.echo(f"{click.style(state.rjust(4), fg=colour)}  {name.ljust(width)}  {text}")
    return 1 if any(state == FAIL for state, _, _ in checks) else 0
