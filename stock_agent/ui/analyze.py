"""`stock-agent analyze`: the computed report (tables or JSON), or the model's narration."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from stock_agent.core.limits import MAX_SYMBOLS_PER_ANALYZE

if TYPE_CHECKING:
    from pathlib import Path

    from stock_agent.app import App
    from stock_agent.core.models import Analysis, Profile

NARRATION_TOOLS = ("analyze_stocks", "compare_stocks")


def narration_tools(symbols: list[str]) -> tuple[str, ...]:
    """The tools a narrated analysis offers: comparing needs two symbols, so one symbol's
    narration is not sent the comparison's schema."""
    return NARRATION_TOOLS if len(symbols) > 1 else NARRATION_TOOLS[:1]


ENABLE_NARRATION = "note: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server) to have the agent narrate this analysis"


def run_analyze(
    app: App,
    user_id: str,
    symbols: list[str],
    *,
    as_json: bool,
    no_llm: bool,
    chart: Path | None = None,
    html: Path | None = None,
) -> int:
    from stock_agent.services.analysis import choose_symbols

    # Checked before any work: a typo in a path fails at once, in one line.
    if chart is not None or html is not None:
        from stock_agent.ui.charts import check_output_path

        if chart is not None:
            check_output_path(chart, ".png", "chart")
        if html is not None:
            check_output_path(html, ".html", "report page")

    profile = app.profiles.get(user_id)
    chosen = choose_symbols(symbols, profile, limit=MAX_SYMBOLS_PER_ANALYZE)
    narrate = not as_json and not no_llm and app.settings.model_configured

    # Computed first even when the model narrates: a symbol the data source does not know fails
    # here in one line, before the model is asked, and the agent's tool call then reads the
    # analyses back from the cache.
    from stock_agent.ui.progress import FetchProgress

    # A spinner on a terminal while the data is fetched (nothing on a pipe).
    with FetchProgress(chosen) as progress:
        batch = app.analysis.analyze(chosen, profile=profile, listener=progress.on_fetch)
    results, errors = batch.analyses, batch.errors
    if not results and len(errors) == 1:
        raise errors[0]
    narration = None
    if narrate:
        if results:
            narration = _narrate(app, user_id, [r.symbol for r in results], profile)
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
        if results and not app.settings.model_configured:  # only after a report
            click.echo(ENABLE_NARRATION, err=True)
    if results and (chart is not None or html is not None):
        _pictures(app, user_id, results, profile, chart=chart, html=html, narration=narration)
    for error in errors:
        click.echo(error.one_line(), err=True)
    if errors:
        return max(e.exit_code for e in errors)
    return 0


def _narrate(app: App, user_id: str, symbols: list[str], profile: Profile) -> str:
    """Stream the agent's narration; return its text (for the --html page)."""
    from rich.console import Console

    from stock_agent.agent.prompts import analyze_request
    from stock_agent.ui.stream import StreamRenderer

    interactive = sys.stdout.isatty()
    console = Console(highlight=False) if interactive else None
    renderer = StreamRenderer(console, plain=not interactive)
    # The profile is in the system prompt; this job needs only the analysis tools.
    agent = app.agent(only_tools=narration_tools(symbols))
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
    return renderer.text if renderer.text.strip() else (answer or "")


def _pictures(
    app: App,
    user_id: str,
    results: list[Analysis],
    profile: Profile,
    *,
    chart: Path | None,
    html: Path | None,
    narration: str | None,
) -> None:
    """The --chart PNGs and the --html page; each file written is named on stderr, so
    `--json` output stays JSON."""
    from datetime import UTC, datetime

    from stock_agent.ui.charts import chart_paths, draw_charts, source_name
    from stock_agent.ui.report_html import ReportInputs, write_report

    drawn = draw_charts(app.market, results, alert_threshold=profile.alert_threshold)
    if chart is not None:
        paths = chart_paths(chart, [c.symbol for c in drawn])
        for c in drawn:
            paths[c.symbol].write_bytes(c.png)
            click.echo(f"chart: {paths[c.symbol]} ({c.width}x{c.height})", err=True)
    if html is not None:
        source = source_name(app.provider.name)
        if app.settings.data_dir is not None:
            source = f"{source} ({app.settings.data_dir})"
        inputs = ReportInputs(
            source=source,
            generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            alert_threshold=profile.alert_threshold,
            narration=narration,
            user_id=user_id,
        )
        write_report(html, results, inputs, {c.symbol: c.png for c in drawn})
        click.echo(f"report: {html}", err=True)
