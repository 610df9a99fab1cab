"""`stock-agent analyze`: the computed report (tables or JSON), or the model's narration."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from stock_agent.core.limits import MAX_SYMBOLS_PER_ANALYZE
from stock_agent.ui.console import make_console

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
    fmt: str | None = None,
    output: Path | None = None,
    narrate_only: bool = False,
) -> int:
    """Analyse and print: `fmt` table (default), json (also `as_json`), csv or md, to stdout or
    to `output`. With a model, a table on stdout is followed by the model's narration
    (`narrate_only`: the narration alone)."""
    from stock_agent.services.analysis import choose_symbols
    from stock_agent.ui.export import format_from_path

    if fmt is None:
        fmt = "json" if as_json else (format_from_path(str(output)) if output else None) or "table"
    elif as_json and fmt != "json":
        from stock_agent.errors import InvalidInput

        raise InvalidInput(f"--json and --format {fmt} disagree", fix="give one of them")

    # Checked before any work: a typo in a path fails at once, in one line.
    if chart is not None or html is not None:
        from stock_agent.ui.charts import check_output_path

        if chart is not None:
            check_output_path(chart, ".png", "chart")
        if html is not None:
            check_output_path(html, ".html", "report page")

    profile = app.profiles.get(user_id)
    chosen = choose_symbols(symbols, profile, limit=MAX_SYMBOLS_PER_ANALYZE)
    narrate = fmt == "table" and output is None and not no_llm and app.settings.model_configured

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
    if fmt != "table":
        _export(results, fmt, output)
    elif output is not None:
        _write_tables(app, results, output)
    else:
        if results and not (narrate and narrate_only):
            from stock_agent.ui.render import fetch_closes, print_report

            console = make_console(highlight=False)
            print_report(console, results, fetch_closes(app.market, [r.symbol for r in results]))
            if narrate:
                click.echo()
        if narrate and results:
            narration = _narrate(app, user_id, [r.symbol for r in results], profile)
        if results and not app.settings.model_configured:  # only after a report
            click.echo(ENABLE_NARRATION, err=True)
    if results and (chart is not None or html is not None):
        _pictures(app, user_id, results, profile, chart=chart, html=html, narration=narration)
    for error in errors:
        click.echo(error.one_line(), err=True)
    if errors:
        return max(e.exit_code for e in errors)
    return 0


def _export(results: list[Analysis], fmt: str, output: Path | None) -> None:
    """JSON, CSV or Markdown on stdout, or written to `output` (named on stderr)."""
    from stock_agent.ui.export import to_csv, to_markdown

    if fmt == "json":
        text = (
            json.dumps(
                [r.to_dict() for r in results], indent=2, ensure_ascii=False, allow_nan=False
            )
            + "\n"
        )
    else:
        text = to_csv(results) if fmt == "csv" else to_markdown(results)
    if output is None:
        click.echo(text, nl=False)
        return
    _write(output, text)


def _write_tables(app: App, results: list[Analysis], output: Path) -> None:
    """The tables as plain text in a file (no colours, 100 columns)."""
    import io

    from rich.console import Console

    from stock_agent.ui.render import fetch_closes, print_report

    buffer = io.StringIO()
    console = Console(file=buffer, width=100, color_system=None, highlight=False)
    if results:
        print_report(console, results, fetch_closes(app.market, [r.symbol for r in results]))
    _write(output, buffer.getvalue())


def _write(output: Path, text: str) -> None:
    from stock_agent.errors import InvalidInput

    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"cannot write {output}: {exc.strerror or exc}", fix="choose a writable --output path"
        ) from None
    click.echo(f"written: {output}", err=True)


def _narrate(app: App, user_id: str, symbols: list[str], profile: Profile) -> str:
    """Stream the agent's narration; return its text (for the --html page)."""
    from stock_agent.agent.prompts import analyze_request
    from stock_agent.ui.stream import StreamRenderer

    interactive = sys.stdout.isatty()
    console = make_console(highlight=False) if interactive else None
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
            click.echo(f"chart: {paths[c.symbol]} ({c.width}×{c.height})", err=True)
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
