"""The report page (`analyze ... --html PATH.html`): self-contained (nothing fetched when it is
opened), readable on a phone, with the summary, each symbol's chart, signals, alerts, position
sizing and its method, the narration when a model is configured, as-of times and the source.
Opened in headless Chromium where it is installed."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from stock_agent.app import App
from stock_agent.config import Settings
from stock_agent.core.models import Signal
from stock_agent.ui.report_html import ReportInputs, build_report, narration_html
from tests.openai_server import ScriptedOpenAI, text, tool_call

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium; .ci/run does it as root)",
)
DATA_PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stock_agent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(env["STOCK_AGENT_HOME"]).parent,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "script")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def page_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    return " ".join(" ".join(parser.parts).split())


def external_references(markup: str) -> list[str]:
    """Everything in the page that a browser would fetch from elsewhere."""
    found = re.findall(r"""(?:src|href|srcset|action|poster)\s*=\s*["']?([^"'\s>]+)""", markup)
    found += re.findall(r"url\(\s*['\"]?([^'\")]+)", markup)
    found += re.findall(r"@import[^;]+", markup)
    return [ref for ref in found if not ref.startswith(("data:", "#"))]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            # nothing may be fetched: any host name fails to resolve
            "--host-resolver-rules=MAP * ~NOTFOUND",
            *args,
        ],
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def page(cli_env: dict[str, str], tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    ok(run(cli_env, "profile", "set", "alert_threshold", "-5%"))
    ok(run(cli_env, "profile", "set", "portfolio_size", "100000"))
    report = json.loads(ok(run(cli_env, "analyze", "AAPL", "TSLA", "--json")))
    path = tmp_path / "report.html"
    result = run(cli_env, "analyze", "AAPL", "TSLA", "--html", str(path))
    ok(result)
    assert f"report: {path}" in result.stderr
    return path, report


# --------------------------------------------------------------------------- the page


def test_the_page_has_every_part(page: tuple[Path, list[dict[str, object]]]) -> None:
    path, report = page
    markup = path.read_text(encoding="utf-8")
    assert markup.startswith("<!doctype html>")
    text = page_text(markup)
    assert "Summary" in text
    assert "source: offline CSV data" in text and str(Path("examples") / "market") in text
    assert "Data as of 2026-11-20" in text
    for a in report:
        symbol, price = a["symbol"], a["price"]
        assert isinstance(price, float)
        assert f"{symbol} {price:,.2f}" in text
        assert f'id="sym-{symbol}"' in markup
        for signal in a["signals"]:  # type: ignore[attr-defined]
            assert signal["text"] in text
        position = a["position"]
        assert isinstance(position, dict)
        assert f"{position['shares']} shares" in text
        assert f"Method: {position['method']}" in text
    tsla = next(a for a in report if a["symbol"] == "TSLA")
    (alert,) = tsla["alerts"]  # type: ignore[misc]
    assert f"▼ {alert['text']}" in text
    assert "None: 1-day change +0.5% is above the threshold -5%." in text  # AAPL


def test_the_page_embeds_one_chart_per_symbol(
    page: tuple[Path, list[dict[str, object]]],
) -> None:
    path, report = page
    charts = DATA_PNG.findall(path.read_text(encoding="utf-8"))
    assert len(charts) == len(report)
    for data in charts:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "PNG" and image.width >= 1000 and image.height >= 700


def test_the_page_fetches_nothing(page: tuple[Path, list[dict[str, object]]]) -> None:
    path, _ = page
    markup = path.read_text(encoding="utf-8")
    assert external_references(markup) == []
    assert "<script" not in markup.lower() and "<link" not in markup.lower()
    # the check above can fail: a page with a CDN script or a web font would be caught
    assert external_references('<script src="https://cdn.example/x.js"></script>') != []
    assert external_references("<style>@font-face{src:url(https://f.example/a.woff)}</style>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in markup


def test_text_from_data_or_a_model_is_escaped(settings: Settings) -> None:
    with App(settings) as app:
        (a,) = app.analysis.analyze(["AAPL"]).analyses
    hostile = dataclasses.replace(
        a, signals=(Signal("x", "y", '<img src=x onerror="alert(1)"> \x1b[31mred'),)
    )
    narration = "**Up.** <script>alert(1)</script> [click](javascript:alert(1))"
    markup = build_report(
        [hostile], ReportInputs(source="<b>src</b>", generated_at="now", narration=narration)
    )
    assert "<script>" not in markup and "<img src=x" not in markup
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in markup
    assert "\x1b" not in markup
    assert "&lt;b&gt;src&lt;/b&gt;" in markup
    assert "<strong>Up.</strong>" in markup and "&lt;script&gt;" in markup
    assert 'href="javascript:' not in markup
    assert narration_html("a\n\nb") == "<p>a</p>\n<p>b</p>\n"


def test_a_stale_result_is_marked(settings: Settings) -> None:
    with App(settings) as app:
        (a,) = app.analysis.analyze(["AAPL"]).analyses
    if "stale" in {f.name for f in dataclasses.fields(a)}:
        stale = dataclasses.replace(a, stale=True)
    else:  # before the data issue adds the field
        stale = dataclasses.replace(a)
        object.__setattr__(stale, "stale", True)
    inputs = ReportInputs(source="offline CSV data", generated_at="now")
    assert "stale" not in page_text(build_report([a], inputs))
    text = page_text(build_report([stale], inputs))
    assert "the latest data could not be had for AAPL" in text
    assert "stale data" in text


def test_the_narration_is_on_the_page_when_a_model_is_configured(
    model_env: dict[str, str], openai_server: ScriptedOpenAI, tmp_path: Path
) -> None:
    narration = "AAPL is steady.\n\n**TSLA** fell about 6% yesterday."
    openai_server.queue(tool_call("analyze_stocks", {"symbols": ["AAPL", "TSLA"]}), text(narration))
    path = tmp_path / "narrated.html"
    result = run(model_env, "analyze", "AAPL", "TSLA", "--html", str(path))
    assert ok(result).endswith("\n\n" + narration + "\n")  # the tables, then the narration
    markup = path.read_text(encoding="utf-8")
    assert "<p>AAPL is steady.</p>" in markup
    assert "<strong>TSLA</strong> fell about 6% yesterday." in markup
    assert "The agent's reading" in page_text(markup)


def test_a_bad_page_path_is_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run(cli_env, "analyze", "AAPL", "--html", str(tmp_path / "page.htm"))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: the report page path must end in .html")


# --------------------------------------------------------------------------- in a browser


@needs_chromium
def test_chromium_shows_the_page(
    page: tuple[Path, list[dict[str, object]]], tmp_path: Path
) -> None:
    path, report = page
    shot = tmp_path / "phone.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=412,2400", path.as_uri())
    assert shot.exists(), result.stderr.decode(errors="replace")
    image = Image.open(shot).convert("RGB")
    assert image.size == (412, 2400)
    stats = ImageStat.Stat(image.convert("L"))
    assert stats.stddev[0] > 20, "the screenshot is blank"
    # the chart drew: its green and red candles are on screen, not only text on white
    colours = image.getcolors(412 * 2400) or []
    greenish = sum(n for n, (r, g, b) in colours if g > 150 and r < 120 and b < 160)
    reddish = sum(n for n, (r, g, b) in colours if r > 200 and g < 110 and b < 110)
    assert greenish > 50 and reddish > 50

    dom = chromium(tmp_path, "--dump-dom", path.as_uri())
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")
    text = page_text(dom.stdout.decode("utf-8"))
    for a in report:
        price = a["price"]
        assert isinstance(price, float)
        assert f"{a['symbol']} {price:,.2f}" in text


@needs_chromium
def test_on_a_phone_the_page_does_not_scroll_sideways(
    page: tuple[Path, list[dict[str, object]]], tmp_path: Path
) -> None:
    """Tables may scroll inside their own box, the page never does. Headless Chromium lays a
    window out at least 500 pixels wide, so the page goes in a phone-wide frame of a probe
    page (the report has no script of its own) that writes the frame's widths into the DOM
    for `--dump-dom` to read."""
    path, _ = page
    markup = path.read_text(encoding="utf-8")
    for width in (320, 360, 412, 1280):
        probe = tmp_path / f"probe-{width}.html"
        probe.write_text(
            f'<!doctype html><html><body style="margin:0"><iframe style="width:{width}px;'
            f'height:900px;border:0" srcdoc="{html.escape(markup, quote=True)}" '
            "onload=\"document.body.setAttribute('data-width', this.contentWindow.innerWidth "
            "+ ' ' + this.contentDocument.documentElement.scrollWidth)\"></iframe></body></html>",
            encoding="utf-8",
        )
        dom = chromium(tmp_path, "--window-size=1400,1000", "--dump-dom", probe.as_uri())
        found = re.search(r'data-width="(\d+) (\d+)"', dom.stdout.decode("utf-8"))
        assert found, dom.stderr.decode(errors="replace")
        viewport, page_width = int(found.group(1)), int(found.group(2))
        assert viewport == width
        assert page_width <= viewport, f"the page is {page_width}px wide on a {width}px screen"
