"""`stock-agent analyze`: the computed report (tables or JSON), or the model's narration."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from stock_agent.core.limits import MAX_SYMBOLS_PER_ANALYZE

if TYPE_CHECKING:
    from stock_agent.app import App
    from stock_agent.core.models import Profile

NARRATION_TOOLS = ("analyze_stocks", "compare_stocks")
ENABLE_NARRATION = "note: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server) to have the agent narrate this analysis"


def run_analyze(app: App, user_id: str, symbols: list[str], *, as_json: bool, no_llm: bool) -> int:
    from stock_agent.services.analysis import choose_symbols

    profile = app.profiles.get(user_id)
    chosen = choose_symbols(symbols, profile, limit=MAX_SYMBOLS_PER_ANALYZE)
    narrate = not as_json and not no_llm and app.settings.model_configured

    # Computed first even when the model narrates: a symbol the data source does not know fails
    # here in one line, before the model is asked, and the agent's tool call then reads the
    # analyses back from the cache.
    batch = app.analysis.analyze(chosen, profile=profile)
    results, errors = batch.analyses, batch.errors
    if not results and len(errors) == 1:
        raise errors[0]
    if narrate:
        if results:
            _narrate(app, user_id, [r.symbol for r in results], profile)
    elif as_json:
        click.echo(
            json.dumps(
                [r.to_dict() for r in results], indent=2, ensure_ascii=False, allow_nan=False
            )
        )
    else:
        from rich.console import Console

        from stock_agent.ui.render import fetch_closes, print_report

        console = Console(highlight=False)
        if results:
            print_report(console, results, fetch_closes(app.market, [r.symbol for r in results]))
        if not app.settings.model_configured:
            click.echo(ENABLE_NARRATION, err=True)
    for error in errors:
        click.echo(error.one_line(), err=True)
    if errors:
        return max(e.exit_code for e in errors)
    return 0


def _narrate(app: App, user_id: str, symbols: list[str], profile: Profile) -> None:
    from rich.console import Console

    from stock_agent.agent.prompts import analyze_request
    from stock_agent.ui.stream import StreamRenderer

    interactive = sys.stdout.isatty()
    console = Console(highlight=False) if interactive else None
    renderer = StreamRenderer(console, plain=not interactive)
    # The profile is in the system prompt; this job needs only the analysis tools.
    agent = app.agent(only_tools=NARRATION_TOOLS)
    with renderer:
        answer = agent.run_once(
            analyze_request(symbols),
            profile=profile,
            user_id=user_id,
            callbacks=[renderer],
            on_fetch=renderer.on_fetch,
        )
    if not renderer.text.strip() and answer:  # a model that did not stream
        click.echo(answer)
