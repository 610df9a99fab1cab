"""`stock-agent analyze`: the computed report (tables or JSON), or the model's narration."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from stock_agent.errors import InvalidInput, StockAgentError

if TYPE_CHECKING:
    from stock_agent.app import App
    from stock_agent.store.profile import Profile

NARRATION_TOOLS = ("analyze_stocks", "compare_stocks")
ENABLE_NARRATION = "note: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server) to have the agent narrate this analysis"


def resolve_symbols(symbols: list[str], profile: Profile) -> list[str]:
    from stock_agent.store.profile import parse_symbols

    chosen = parse_symbols(symbols) if symbols else list(profile.preferred_symbols)
    if not chosen:
        raise InvalidInput(
            "no symbols to analyse",
            fix="name some (`stock-agent analyze AAPL MSFT`) or save them (`stock-agent profile add-symbol AAPL`)",
        )
    if len(chosen) > 20:
        raise InvalidInput(f"too many symbols ({len(chosen)})", fix="analyse at most 20 at a time")
    return chosen


def computed_analyses(
    app: App, symbols: list[str], profile: Profile
) -> tuple[list[dict[str, Any]], list[StockAgentError]]:
    """Each symbol's analysis personalised with the profile, and the errors of those that failed."""
    from stock_agent.market.analysis import apply_profile

    service = app.market()
    results, errors = [], []
    for item in service.analyses(symbols):
        if isinstance(item, StockAgentError):
            errors.append(item)
        else:
            results.append(
                apply_profile(
                    item,
                    alert_threshold=profile.alert_threshold,
                    portfolio_size=profile.portfolio_size,
                )
            )
    return results, errors


def run_analyze(app: App, user_id: str, symbols: list[str], *, as_json: bool, no_llm: bool) -> int:
    profile = app.profiles.get(user_id)
    chosen = resolve_symbols(symbols, profile)
    narrate = not as_json and not no_llm and app.settings.model_configured

    # Computed first even when the model narrates: a symbol the data source does not know fails
    # here in one line, before the model is asked, and the agent's tool call then reads the
    # analyses back from the cache.
    results, errors = computed_analyses(app, chosen, profile)
    if not results and len(errors) == 1:
        raise errors[0]
    if narrate:
        if results:
            _narrate(app, user_id, [r["symbol"] for r in results], profile)
    elif as_json:
        click.echo(json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False))
    else:
        from rich.console import Console

        from stock_agent.ui.render import print_report

        console = Console(highlight=False)
        if results:
            print_report(console, results)
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
    agent = app.chat_agent(user_id, listener=renderer.on_fetch, only_tools=NARRATION_TOOLS)
    with renderer:
        answer = agent.run_once(analyze_request(symbols), profile=profile, callbacks=[renderer])
    if not renderer.text.strip() and answer:  # a model that did not stream
        click.echo(answer)
