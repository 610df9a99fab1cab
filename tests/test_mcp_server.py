"""`stock-agent mcp` driven by the MCP SDK's own client: a real server subprocess over stdio
(and one over streamable HTTP), the test Valkey as the shared cache, the offline market data.

The cache is shown from outside: the stats the cache keeps in Redis (what `cache stats`
prints), read by an App of the test's own."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from stock_agent.app import App
from stock_agent.config import Settings
from stock_agent.errors import InvalidInput
from stock_agent.providers.yahoo import YFinanceProvider
from stock_agent.ui.mcp_server import is_loopback, model_schema, parse_http
from tests.conftest import REPO, free_port
from tests.yahoo_facts import FakeYahooWithFacts
from tests.yahoo_http import fresh_yfinance

MARKET_TOOLS = {"quote", "analyze", "compare", "fundamentals", "news"}
WRITE_TOOLS = {"update_profile", "set_symbol_alert", "clear_symbol_alert"}
GUARD = 60  # seconds: a deadlock guard, never a timing assertion


# `python -c ... CACHE_DIR ARGS`: `stock-agent ARGS` whose Yahoo provider asks the fake Yahoo of
# tests/yahoo_facts.py (the real yfinance and provider over Yahoo-shaped answers; no network).
YAHOO_LAUNCHER = (
    "-c",
    "import sys\n"
    "from pathlib import Path\n"
    "from tests.yahoo_facts import use_fake_yahoo\n"
    "use_fake_yahoo(Path(sys.argv.pop(1)))\n"
    "from stock_agent.cli import main\n"
    "main()\n",
)


@contextlib.asynccontextmanager
async def connect(
    env: dict[str, str],
    errlog: Path,
    *args: str,
    launcher: Sequence[str] = ("-m", "stock_agent"),
) -> AsyncIterator[ClientSession]:
    """A client session with a fresh `stock-agent mcp ARGS` server process."""
    params = StdioServerParameters(
        command=sys.executable,
        args=[*launcher, "mcp", *args],
        env=env,
        cwd=str(Path(env["STOCK_AGENT_HOME"]).parent),
    )
    with errlog.open("a") as err:
        async with (
            stdio_client(params, errlog=err) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def run(coro: Any) -> Any:
    async def guarded() -> Any:
        with anyio.fail_after(GUARD):
            return await coro()

    return anyio.run(guarded)


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def analysis_stats(settings: Settings) -> dict[str, Any]:
    with App(settings) as app:
        return app.cache.stats().get("analysis", {"lookups": 0, "hits": 0, "misses": 0})


@pytest.fixture
def errlog(tmp_path: Path) -> Path:
    return tmp_path / "server-stderr.txt"


def no_traceback(errlog: Path) -> None:
    text = errlog.read_text() if errlog.exists() else ""
    assert "Traceback" not in text, text


# --------------------------------------------------------------------------- listing


def test_lists_the_tools_with_schemas_units_and_annotations(
    cli_env: dict[str, str], errlog: Path
) -> None:
    async def main() -> tuple[Any, Any]:
        async with connect(cli_env, errlog) as session:
            return await session.list_tools(), await session.list_resources()

    tools, resources = run(main)
    by_name = {t.name: t for t in tools.tools}
    assert set(by_name) == MARKET_TOOLS | {"get_profile"}  # no writes unless allowed
    for name in MARKET_TOOLS:
        tool = by_name[name]
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.open_world_hint is True
        assert tool.annotations.idempotent_hint is True
        assert tool.description and tool.output_schema["type"] == "object"
    assert by_name["get_profile"].annotations.read_only_hint is True

    analyze = by_name["analyze"]
    symbols = analyze.input_schema["properties"]["symbols"]
    assert symbols["type"] == "array" and symbols["maxItems"] == 10 and symbols["minItems"] == 1
    assert "fractions" in analyze.description and "RSI 0-100" in analyze.description
    assert "ticker" in symbols["description"].lower()
    limit = by_name["news"].input_schema["properties"]["limit"]
    assert "1 to 10" in limit["description"] and limit["default"] == 5
    rank_by = by_name["compare"].input_schema["properties"]["rank_by"]
    assert "lowest first" in rank_by["description"] and "volatility" in rank_by["enum"]
    # the output schema is the typed model's: JSON names ("1d"), nested models, units
    analysis = analyze.output_schema["properties"]["analyses"]["items"]
    assert set(analysis["properties"]["returns"]["properties"]) == {
        "1d", "5d", "1m", "3m", "6m", "1y", "ytd"
    }  # fmt: skip
    assert "fraction" in by_name["quote"].output_schema["description"]

    assert [str(r.uri) for r in resources.resources] == ["profile://alice"]


def test_profile_writes_only_when_allowed(cli_env: dict[str, str], errlog: Path) -> None:
    async def main() -> tuple[set[str], CallToolResult]:
        async with connect(cli_env, errlog, "--allow-profile-writes") as session:
            names = {t.name for t in (await session.list_tools()).tools}
            bad = await session.call_tool("update_profile", {"alert_threshold": "-400%"})
            return names, bad

    names, bad = run(main)
    assert names == MARKET_TOOLS | {"get_profile"} | WRITE_TOOLS
    assert bad.is_error and text_of(bad).startswith("error: alert_threshold must be a drop")


# --------------------------------------------------------------------------- the shared cache


def test_second_call_and_second_server_hit_the_shared_cache(
    cli_env: dict[str, str], settings: Settings, errlog: Path
) -> None:
    timings: dict[str, float] = {}

    async def call(session: ClientSession, label: str) -> CallToolResult:
        started = time.perf_counter()
        result = await session.call_tool("analyze", {"symbols": ["AAPL"]})
        timings[label] = time.perf_counter() - started
        return result

    async def first_server() -> tuple[CallToolResult, dict[str, Any], CallToolResult]:
        async with connect(cli_env, errlog) as session:
            cold = await call(session, "cold")
            after_cold = analysis_stats(settings)
            warm = await call(session, "warm")
            return cold, after_cold, warm

    cold, after_cold, warm = run(first_server)
    assert not cold.is_error and not warm.is_error, text_of(cold) + text_of(warm)
    assert (after_cold["lookups"], after_cold["misses"]) == (1, 1)
    after_warm = analysis_stats(settings)
    assert (after_warm["lookups"], after_warm["hits"], after_warm["misses"]) == (2, 1, 1)
    assert warm.structured_content == cold.structured_content

    async def second_server() -> CallToolResult:
        async with connect(cli_env, errlog) as session:
            return await call(session, "other process")

    other = run(second_server)
    after_other = analysis_stats(settings)
    assert (after_other["lookups"], after_other["hits"], after_other["misses"]) == (3, 2, 1)
    assert other.structured_content == cold.structured_content

    # the structured content is exactly what the Python API gives (the `analyze --json` item),
    # and the terminal's call is a hit too: the terminal and both servers shared one fetch
    with App(settings) as app:
        expected = [a.to_dict() for a in app.analyze(["AAPL"], user_id="alice")]
    after_terminal = analysis_stats(settings)
    assert (after_terminal["lookups"], after_terminal["hits"], after_terminal["misses"]) == (
        4,
        3,
        1,
    )
    assert cold.structured_content["analyses"] == json.loads(json.dumps(expected))
    assert cold.structured_content["errors"] == []
    assert text_of(cold).startswith("AAPL ") and "RSI(14)" in text_of(cold)
    no_traceback(errlog)
    print(
        "\nMCP analyze AAPL: "
        + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timings.items())
        + f"; analysis cache stats {after_other}"
    )


def test_analyze_is_personalised_for_the_server_user(
    cli_env: dict[str, str], settings: Settings, errlog: Path
) -> None:
    with App(settings) as app:
        app.profiles.set_field("alice", "alert_threshold", "-5%")

    async def main() -> CallToolResult:
        async with connect(cli_env, errlog) as session:
            return await session.call_tool("analyze", {"symbols": ["TSLA", "NOPE"]})

    tsla = run(main)
    assert not tsla.is_error
    (analysis,) = tsla.structured_content["analyses"]
    assert [a["kind"] for a in analysis["alerts"]] == ["drop"]
    assert tsla.structured_content["user_id"] == "alice"
    assert tsla.structured_content["errors"][0]["symbol"] == "NOPE"
    # one line per symbol: the analysis (with its alert), then the failure
    analysed, failure = text_of(tsla).splitlines()
    assert analysed.startswith("TSLA ") and "; ALERT: TSLA moved" in analysed
    assert failure.startswith("NOPE: error: unknown symbol NOPE")

    async def as_bob() -> CallToolResult:
        async with connect(cli_env, errlog, "--user", "bob") as session:
            return await session.call_tool("analyze", {"symbols": ["TSLA"]})

    bob = run(as_bob)
    assert bob.structured_content["user_id"] == "bob"
    assert bob.structured_content["analyses"][0]["alerts"] == []  # bob has no threshold


# --------------------------------------------------------------------------- facts and news


@pytest.fixture
def yahoo_env(cli_env: dict[str, str]) -> dict[str, str]:
    """`cli_env` without the offline data (so the Yahoo provider is chosen), with the tests
    importable by the server process."""
    env = {k: v for k, v in cli_env.items() if k != "STOCK_AGENT_DATA_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def test_fundamentals_and_news_succeed_from_yahoo(
    yahoo_env: dict[str, str], settings: Settings, errlog: Path, tmp_path: Path
) -> None:
    launcher = (*YAHOO_LAUNCHER, str(tmp_path / "yfinance-server"))

    async def main() -> tuple[dict[str, Any], list[CallToolResult]]:
        async with connect(yahoo_env, errlog, launcher=launcher) as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            return tools, [
                await session.call_tool("fundamentals", {"symbol": "aapl"}),
                await session.call_tool("news", {"symbol": "AAPL", "limit": 2}),
                await session.call_tool("news", {"symbol": "TSLA"}),
                await session.call_tool("news", {"symbol": "AAPL", "limit": 10}),
            ]

    tools, (facts, news, quiet, every) = run(main)
    for result in (facts, news, quiet, every):
        assert not result.is_error, text_of(result)

    # the documented fields (the output schema's), filled from what Yahoo sent
    f = facts.structured_content
    assert set(f) == set(tools["fundamentals"].output_schema["properties"])
    assert f == {
        "symbol": "AAPL",
        "name": "Apple Inc.",
        "sector": "Technology",
        "industry": "Consumer Electronics",
        "currency": "USD",
        "exchange": "NMS",
        "quote_type": "EQUITY",
        "market_cap": 3.412e12,
        "trailing_pe": 34.27,
        "forward_pe": 28.96,
        "price_to_book": 52.1,
        "dividend_yield": 0.0044,  # Yahoo's 0.44 (percent) as a fraction
        "eps": 6.59,
        "forward_eps": 7.8,
        "revenue": 3.91035e11,
        "profit_margin": 0.2397,
        "beta": 1.24,
        "fifty_two_week_high": 260.1,
        "fifty_two_week_low": 164.08,
        "source": "yfinance",
        "stale": False,
        "fetched_at": f["fetched_at"],
    }
    assert f["fetched_at"].endswith("+00:00")
    assert text_of(facts) == (
        "Apple Inc. (AAPL), Technology: market cap 3.41T, P/E 34.3, dividend yield +0.44%"
    )
    n = news.structured_content
    assert set(n) == set(tools["news"].output_schema["properties"])
    assert n["symbol"] == "AAPL" and n["stale"] is False
    assert n["items"] == [  # newest first, at most the limit, the advert left out
        {
            "title": "Apple unveils a thing",
            "publisher": "Reuters",
            "published": "2026-11-20T14:30:00+00:00",
            "link": "https://finance.yahoo.com/news/apple-thing.html",
        },
        {
            "title": "Markets wrap",
            "publisher": "Yahoo Finance Video",
            "published": "2026-11-19T21:00:00+00:00",
            "link": "https://finance.yahoo.com/video/markets-wrap.html",
        },
    ]
    assert text_of(news).splitlines() == [
        "2 headlines for AAPL, newest first:",
        "- Apple unveils a thing (Reuters, 2026-11-20)",
        "- Markets wrap (Yahoo Finance Video, 2026-11-19)",
    ]
    assert quiet.structured_content["items"] == []
    assert text_of(quiet) == "no recent headlines for TSLA"
    # a headline's own line break is data: it cannot start a line of the summary
    assert every.structured_content["items"][2]["title"] == (
        "Apple suppliers\nramp up\tahead of the holidays"
    )
    assert text_of(every).splitlines()[1:] == [
        "- Apple unveils a thing (Reuters, 2026-11-20)",
        "- Markets wrap (Yahoo Finance Video, 2026-11-19)",
        "- Apple suppliers ramp up ahead of the holidays (Bloomberg, 2026-11-18)",
    ]

    # exactly the models' to_dict(), as the Python API gives them: from the shared cache (a
    # hit each; the test's own fake Yahoo is never asked)
    fresh_yfinance(tmp_path / "yfinance-test")
    yahoo = FakeYahooWithFacts()
    provider = YFinanceProvider(session=yahoo)
    with App(settings.with_overrides(data_dir=None), provider=provider) as app:
        expected_facts = app.market.fundamentals("AAPL").to_dict()
        expected_news = app.market.news("AAPL", 2).to_dict()
        stats = app.cache.stats()
    assert f == json.loads(json.dumps(expected_facts))
    assert n == json.loads(json.dumps(expected_news))
    assert yahoo.requests == []
    counts = {k: (v["lookups"], v["hits"]) for k, v in stats.items()}
    assert counts["fundamentals"] == (2, 1) and counts["news"] == (4, 1), stats
    no_traceback(errlog)


# --------------------------------------------------------------------------- errors


def test_bad_input_is_a_one_line_tool_error_and_the_server_stays_up(
    cli_env: dict[str, str], errlog: Path
) -> None:
    async def main() -> dict[str, CallToolResult]:
        async with connect(cli_env, errlog) as session:
            return {
                "unknown": await session.call_tool("analyze", {"symbols": ["NOPE"]}),
                "invalid": await session.call_tool("quote", {"symbol": "$$$"}),
                "too many": await session.call_tool("analyze", {"symbols": ["AAPL"] * 11}),
                "offline": await session.call_tool("fundamentals", {"symbol": "AAPL"}),
                "limit": await session.call_tool("news", {"symbol": "AAPL", "limit": 50}),
                "rank": await session.call_tool("compare", {"symbols": ["AAPL", "NOPE"]}),
                "after": await session.call_tool("quote", {"symbol": "AAPL"}),
            }

    results = run(main)
    for name in ("unknown", "invalid", "too many", "offline", "limit"):
        result = results[name]
        assert result.is_error, name
        line = text_of(result)
        assert "\n" not in line and line.startswith("error: "), (name, line)
        assert "Traceback" not in line
    assert text_of(results["unknown"]).startswith("error: unknown symbol NOPE")
    assert text_of(results["invalid"]).startswith("error: invalid symbol '$$$'")
    assert "11 symbols given (give 1 to 10 symbols)" in text_of(results["too many"])
    assert "not available offline" in text_of(results["offline"])
    # one bad symbol of two: a result, with the failure named
    rank = results["rank"]
    assert not rank.is_error
    assert rank.structured_content["ranked"][0]["symbol"] == "AAPL"
    assert rank.structured_content["errors"][0]["symbol"] == "NOPE"
    # and the server still answers
    after = results["after"]
    assert not after.is_error and after.structured_content["symbol"] == "AAPL"
    assert after.structured_content["price"] > 0
    no_traceback(errlog)


# --------------------------------------------------------------------------- the profile


def test_profile_is_a_resource_and_a_tool_for_the_server_user_only(
    cli_env: dict[str, str], settings: Settings, errlog: Path
) -> None:
    with App(settings) as app:
        app.profiles.add_symbols("alice", ["TSLA", "AAPL"])
        app.profiles.set_symbol_alert("alice", "NVDA", "-3%")
        app.profiles.add_symbols("bob", ["MSFT"])

    async def main() -> tuple[Any, CallToolResult, BaseException | None, CallToolResult]:
        async with connect(cli_env, errlog) as session:
            resource = await session.read_resource("profile://alice")
            tool = await session.call_tool("get_profile", {})
            other: BaseException | None = None
            try:
                await session.read_resource("profile://bob")
            except MCPError as exc:
                other = exc
            write = await session.call_tool("update_profile", {"notes": "x"})
            return resource, tool, other, write

    resource, tool, other, write = run(main)
    (content,) = resource.contents
    data = json.loads(content.text)
    assert data["user_id"] == "alice"
    assert data["preferred_symbols"] == ["TSLA", "AAPL"]
    assert data["symbol_alerts"] == [{"symbol": "NVDA", "threshold": -0.03}]
    assert tool.structured_content == data
    lines = text_of(tool).splitlines()  # the profile as `profile show` prints it, line by line
    assert lines[0] == "Profile of alice" and lines[-1] == "  symbol alerts      NVDA -3.00%"
    assert any(line.startswith("  preferred_symbols  TSLA, AAPL") for line in lines), lines
    assert other is not None  # bob's profile is not served
    assert "MSFT" not in repr(other)
    assert write.is_error  # no such tool without --allow-profile-writes
    with App(settings) as app:
        assert app.profiles.get("alice").notes is None


def test_profile_writes_are_validated_as_a_whole(
    cli_env: dict[str, str], settings: Settings, errlog: Path, redis_client: Any
) -> None:
    key = "agent:memory:test_agent:alice:profile"

    async def main() -> tuple[CallToolResult, dict[str, str], CallToolResult, CallToolResult]:
        async with connect(cli_env, errlog, "--allow-profile-writes") as session:
            bad = await session.call_tool(
                "update_profile", {"add_symbols": ["NVDA"], "alert_threshold": "-400%"}
            )
            before = redis_client.hgetall(key)
            good = await session.call_tool(
                "update_profile", {"add_symbols": ["nvda"], "alert_threshold": "-4%"}
            )
            alert = await session.call_tool(
                "set_symbol_alert", {"symbol": "TSLA", "threshold": "-8%"}
            )
            return bad, before, good, alert

    bad, before, good, alert = run(main)
    assert bad.is_error and text_of(bad).startswith("error: alert_threshold must be a drop")
    assert before == {}  # nothing was written by the refused change
    assert not good.is_error
    assert good.structured_content["preferred_symbols"] == ["NVDA"]
    assert good.structured_content["alert_threshold"] == -0.04
    assert alert.structured_content["symbol_alerts"] == [{"symbol": "TSLA", "threshold": -0.08}]
    with App(settings) as app:
        stored = app.profiles.get("alice")
    assert stored.threshold_for("TSLA") == -0.08 and stored.threshold_for("NVDA") == -0.04


# --------------------------------------------------------------------------- HTTP


def test_http_is_loopback_unless_remote_is_allowed() -> None:
    assert parse_http("8000", allow_remote=False) == ("127.0.0.1", 8000)
    assert parse_http(":8000", allow_remote=False) == ("127.0.0.1", 8000)
    assert parse_http("localhost:9", allow_remote=False) == ("localhost", 9)
    assert parse_http("[::1]:8000", allow_remote=False) == ("::1", 8000)
    for address in ("0.0.0.0:8000", "192.168.1.5:8000", "example.com:80"):
        with pytest.raises(InvalidInput, match="not a loopback address"):
            parse_http(address, allow_remote=False)
    assert parse_http("0.0.0.0:8000", allow_remote=True) == ("0.0.0.0", 8000)
    for address in ("127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:http", ""):
        with pytest.raises(InvalidInput, match="invalid --http address"):
            parse_http(address, allow_remote=False)
    assert is_loopback("127.0.0.2") and not is_loopback("10.0.0.1")


def test_cli_refuses_a_remote_address_in_one_line(cli_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stock_agent", "mcp", "--http", "0.0.0.0:8765"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=GUARD,
        cwd=Path(cli_env["STOCK_AGENT_HOME"]).parent,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: refusing to serve on 0.0.0.0: not a loopback address, and this server has no "
        "authentication (use 127.0.0.1:8765, or add --allow-remote behind a proxy that "
        "authenticates)"
    ]


def test_streamable_http_serves_the_same_tools(cli_env: dict[str, str], tmp_path: Path) -> None:
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    with (tmp_path / "http-stderr.txt").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stock_agent", "mcp", "--http", f"127.0.0.1:{port}"],
            env=cli_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=Path(cli_env["STOCK_AGENT_HOME"]).parent,
        )
    try:

        async def main() -> tuple[set[str], CallToolResult]:
            url = f"http://127.0.0.1:{port}/mcp"
            while True:  # until the server listens (the guard bounds this)
                try:
                    async with (
                        streamable_http_client(url) as (read, write),
                        ClientSession(read, write) as session,
                    ):
                        await session.initialize()
                        names = {t.name for t in (await session.list_tools()).tools}
                        quote = await session.call_tool("quote", {"symbol": "MSFT"})
                        return names, quote
                except Exception:
                    if proc.poll() is not None:
                        raise
                    await anyio.sleep(0.2)

        names, quote = run(main)
    finally:
        proc.terminate()
        proc.wait(GUARD)
    assert names == MARKET_TOOLS | {"get_profile"}
    assert quote.structured_content["symbol"] == "MSFT"
    assert "Traceback" not in (tmp_path / "http-stderr.txt").read_text()


# --------------------------------------------------------------------------- details


def test_other_commands_never_import_the_sdk(cli_env: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from stock_agent.cli import main\n"
        "assert main(['profile', 'show']) == 0\n"
        "assert main(['watch', '--once']) == 2\n"  # nothing to watch: one line, exit 2
        "loaded = [m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')]\n"
        "print('loaded:', loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=GUARD,
        cwd=Path(cli_env["STOCK_AGENT_HOME"]).parent,
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout


def test_model_schema_follows_the_model_fields() -> None:
    from stock_agent.core.models import Profile, Quote

    quote = model_schema(Quote)
    assert quote["required"] == ["symbol", "price"]
    assert quote["properties"]["change_pct"] == {"type": ["number", "null"]}
    assert quote["properties"]["stale"] == {"type": "boolean"}
    profile = model_schema(Profile)
    assert profile["properties"]["preferred_symbols"] == {
        "type": "array",
        "items": {"type": "string"},
    }
    alerts = profile["properties"]["symbol_alerts"]["items"]
    assert alerts["required"] == ["symbol", "threshold"]
