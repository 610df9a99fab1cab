"""The agent's tools on the offline sample data, with profiles and the cache on the test server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.tools import BaseTool
from langchain_tests.unit_tests import ToolsUnitTests

from stock_agent.agent import tools as tools_module
from stock_agent.agent.context import AgentContext, agent_context, always_confirm
from stock_agent.agent.tools import ToolDeps, build_tools
from stock_agent.core.models import Fundamentals, NewsItem
from stock_agent.providers.base import ALL_CAPABILITIES
from stock_agent.providers.offline import CsvProvider
from stock_agent.services.analysis import AnalysisService
from stock_agent.services.market import MarketService
from stock_agent.services.profiles import ProfileService
from stock_agent.store import connection
from stock_agent.store.cache import ExecutionCache
from stock_agent.store.keys import KeySpace
from stock_agent.store.profile import ProfileStore
from tests.conftest import MARKET_DATA, free_port

LIMIT = tools_module.MAX_CHARS_PER_SYMBOL


class Ctx:
    """The tools' dependencies plus the user the test's calls run as."""

    def __init__(self, deps: ToolDeps, user_id: str) -> None:
        self.deps = deps
        self.user_id = user_id
        self.service = deps.market
        self.profiles = deps.profiles.profiles


def make_context(client, settings, user_id: str = "alice", provider=None) -> Ctx:
    keys = KeySpace(settings.agent_id)
    cache = ExecutionCache(client, keys, settings.cache_ttls)
    market = MarketService(provider or CsvProvider(settings.data_dir), cache)
    profiles = ProfileStore(client, keys)
    deps = ToolDeps(market, AnalysisService(market, profiles), ProfileService(profiles))
    return Ctx(deps, user_id)


class AsUser:
    """A tool whose direct calls run as one user (the agent passes the user per call)."""

    def __init__(self, tool: BaseTool, user_id: str) -> None:
        self.tool, self.user_id = tool, user_id
        self.name = tool.name
        self.args_schema = tool.args_schema

    def invoke(self, payload: Any, *, confirm: Any = always_confirm) -> Any:
        with agent_context(AgentContext(user_id=self.user_id, confirm=confirm)):
            return unwrap(self.tool.invoke(payload))


def unwrap(result: Any) -> Any:
    """A tool result without its <data> delimiters (checking they are there)."""
    if hasattr(result, "content"):
        result.content = unwrap(result.content)
        return result
    if result.startswith("error: invalid arguments"):
        return result  # the model's own arguments, refused before the tool ran: not data
    head, _, rest = result.partition("\n")
    assert head.startswith('<data source="') and head.endswith('">'), result
    body, _, tail = rest.rpartition("\n")
    assert tail == "</data>", result
    return body


def tools_for(ctx: Ctx) -> dict[str, Any]:
    return {tool.name: AsUser(tool, ctx.user_id) for tool in build_tools(ctx.deps)}


@pytest.fixture
def ctx(redis_client, settings) -> Ctx:
    return make_context(redis_client, settings)


@pytest.fixture
def tools(ctx) -> dict[str, Any]:
    return tools_for(ctx)


def call(tool: Any, **args: Any) -> str:
    """Invoke as the agent does (a tool call) and return the text the model would see."""
    message = tool.invoke({"type": "tool_call", "id": "call_1", "name": tool.name, "args": args})
    assert isinstance(message.content, str)
    return message.content


def test_the_tool_set():
    assert [cls.model_fields["name"].default for cls in tools_module.TOOL_CLASSES] == [
        "get_quote",
        "analyze_stocks",
        "get_company",
        "compare_stocks",
        "update_profile",
        "check_watchlist",
    ]


def test_the_schemas_sent_are_pydantic_s_and_shared_unchanged(ctx):
    """Each tool's schema is made once and shared by every request: what the model is sent is
    what pydantic generates, and converting it for a request (twice) never changes it."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    for tool in build_tools(ctx.deps):
        generated = tool.args_schema.model_json_schema()
        first = convert_to_openai_tool(tool)
        assert convert_to_openai_tool(tool) == first
        assert tool.tool_call_schema == generated  # not changed by the conversions
        assert tool.tool_call_schema is tool.tool_call_schema  # one copy
        assert (
            first["function"]["parameters"]["properties"].keys() == generated["properties"].keys()
        )


def test_get_quote(tools):
    text = call(tools["get_quote"], symbol="tsla")
    assert json.loads(text) == {
        "symbol": "TSLA",
        "price": 338.23,
        "previous_close": 360.2,
        "change": -21.97,
        "change_pct": -6.1,  # percent for the model, not a fraction
        "currency": "USD",
        "as_of": "2026-11-20",
        "source": "offline",
    }


def test_analyze_stocks_gives_one_compact_line_per_symbol(tools):
    symbols = ["AAPL", "MSFT", "NVDA", "TSLA", "GOOGL", "SPY", "NEWCO", "ZZZZ", "no way!", "aapl"]
    text = call(tools["analyze_stocks"], symbols=symbols)

    lines = text.splitlines()
    assert len(lines) == 10
    assert all(len(line) <= LIMIT for line in lines)
    assert len(text) <= LIMIT * len(symbols)
    assert lines[7].startswith("ZZZZ: error: unknown symbol ZZZZ")
    assert lines[8].startswith("no way!: error: invalid symbol")
    aapl = json.loads(lines[0])
    assert json.loads(lines[9]) == aapl
    assert aapl["symbol"] == "AAPL" and aapl["as_of"] == "2026-11-20"
    assert set(aapl["returns_pct"]) == {"1d", "5d", "1m", "3m", "6m", "1y", "ytd"}
    assert {"rsi_14", "macd", "sma_200", "atr_14", "beta", "volatility_1y_pct"} <= set(
        aapl["indicators"]
    )
    assert aapl["signals"] and all(isinstance(s, str) for s in aapl["signals"])
    assert "alerts" not in aapl and "position" not in aapl  # no profile yet
    newco = json.loads(lines[6])
    assert "only 10 bars of history" in newco["notes"][0]


def test_analyze_stocks_is_personalised_after_the_cache(tools, ctx, redis_client, settings):
    ctx.profiles.set_field("alice", "alert_threshold", "-5%")
    ctx.profiles.set_field("alice", "portfolio_size", "100k")

    alice = [
        json.loads(line)
        for line in call(tools["analyze_stocks"], symbols=["TSLA", "AAPL"]).splitlines()
    ]

    tsla, aapl = alice
    assert tsla["alerts"] == [
        "TSLA moved -6.10% in one day, at or below your alert threshold of -5.00%"
    ]
    assert tsla["position"]["shares"] == 18 and tsla["position"]["stop_price"] == 282.78
    assert "alerts" not in aapl and aapl["position"]["shares"] > 0

    # bob has no profile: same cached analysis, nothing of alice's
    bob_tools = tools_for(make_context(redis_client, settings, "bob"))
    bob = json.loads(call(bob_tools["analyze_stocks"], symbols=["TSLA"]))
    assert "alerts" not in bob and "position" not in bob
    assert ctx.service.cache.stats()["analysis"]["hits"] == 1
    for raw in redis_client.scan_iter(match=KeySpace(settings.agent_id).cache_pattern()):
        cached = json.loads(redis_client.get(raw))["ok"]
        if isinstance(cached, dict) and "alerts" in cached:
            assert cached["alerts"] == [] and cached["position"] is None


def test_analyze_stocks_checks_its_arguments(tools):
    assert call(tools["analyze_stocks"], symbols=[]).startswith("error: invalid arguments: symbols")
    eleven = [f"S{i}" for i in range(11)]
    assert call(tools["analyze_stocks"], symbols=eleven).startswith("error: invalid arguments")


def test_compare_stocks_ranks_by_the_stated_criterion(tools):
    text = call(
        tools["compare_stocks"],
        symbols=["AAPL", "MSFT", "NVDA", "TSLA", "NEWCO", "ZZZZ"],
        rank_by="volatility",
    )
    lines = text.splitlines()
    assert lines[0] == "ranked by annualised volatility, lowest first"
    rows = [json.loads(line.split(" ", 1)[1]) for line in lines[1:6]]
    vols = [row["vol_pct"] for row in rows[:4]]
    assert vols == sorted(vols)
    assert [line.split(" ", 1)[0] for line in lines[1:6]] == ["1.", "2.", "3.", "4.", "-"]
    assert rows[4]["symbol"] == "NEWCO" and "vol_pct" not in rows[4]
    assert lines[6] == "not ranked (no vol_pct): NEWCO"
    assert lines[7].startswith("ZZZZ: error: unknown symbol ZZZZ")
    assert {"ret_1m_pct", "ret_3m_pct", "rsi", "max_dd_pct", "beta", "trend"} <= set(rows[0])
    assert len(text) <= LIMIT * 6


def test_compare_stocks_defaults_to_3_month_return(tools):
    lines = call(tools["compare_stocks"], symbols=["AAPL", "GOOGL", "TSLA"]).splitlines()
    assert lines[0] == "ranked by 3-month return, highest first"
    returns = [json.loads(line.split(" ", 1)[1])["ret_3m_pct"] for line in lines[1:]]
    assert returns == sorted(returns, reverse=True)


def test_compare_stocks_needs_two_symbols(tools):
    assert call(tools["compare_stocks"], symbols=["AAPL"]).startswith("error: invalid arguments")
    assert call(tools["compare_stocks"], symbols=["AAPL", "MSFT"], rank_by="hype").startswith(
        "error: invalid arguments: rank_by"
    )


def test_offline_company_facts_and_news_are_errors_not_exceptions(tools):
    assert call(tools["get_company"], symbol="AAPL") == (
        "error: fundamentals are not available offline (unset STOCK_AGENT_DATA_DIR to use Yahoo Finance)"
    )
    facts, news = call(tools["get_company"], symbol="AAPL", headlines=3).splitlines()
    assert facts.startswith("error: fundamentals are not available offline")
    assert news.startswith("error: news is not available offline")


def test_only_tools_the_data_source_can_answer_are_offered(ctx):
    offline = [t.name for t in build_tools(ctx.deps, CsvProvider.capabilities)]
    assert "get_company" not in offline and "analyze_stocks" in offline
    assert [t.name for t in build_tools(ctx.deps, ALL_CAPABILITIES)] == [
        t.name for t in build_tools(ctx.deps)
    ]


# Each argument's description says what unit or form its value has.
UNITS = {
    ("get_quote", "symbol"): "Ticker",
    ("analyze_stocks", "symbols"): "tickers",
    ("get_company", "symbol"): "Ticker",
    ("get_company", "headlines"): "headlines",
    ("compare_stocks", "symbols"): "tickers",
    ("compare_stocks", "rank_by"): "first",
    ("update_profile", "add_symbols"): "Tickers",
    ("update_profile", "remove_symbols"): "Tickers",
    ("update_profile", "alert_threshold"): "%",
    ("update_profile", "portfolio_size"): "currency",
    ("update_profile", "notes"): "note",
    ("update_profile", "clear"): "Fields",
}


def test_each_tool_description_names_its_arguments_units(ctx):
    from langchain_core.utils.function_calling import convert_to_openai_tool

    seen = set()
    for tool in build_tools(ctx.deps):
        spec = convert_to_openai_tool(tool)["function"]
        for name, prop in spec["parameters"].get("properties", {}).items():
            assert UNITS[(tool.name, name)] in prop["description"], (tool.name, name)
            seen.add((tool.name, name))
        # results in percent say so in the tool's description
        if tool.name in ("get_quote", "analyze_stocks", "compare_stocks", "check_watchlist"):
            assert "percent" in spec["description"], tool.name
    assert seen == set(UNITS)


def test_fundamentals_and_news_are_compact(redis_client, settings):
    class Live(CsvProvider):
        name = "fake-live"
        capabilities = ALL_CAPABILITIES

        def fundamentals(self, symbol):
            return Fundamentals(
                symbol=symbol,
                name="Apple Inc.",
                industry="x" * 5000,  # a long text is clipped
                market_cap=3.1e12,
                trailing_pe=31.234567,
                dividend_yield=0.0044,
                profit_margin=0.2431,
                beta=None,
            )

        def news(self, symbol, limit=5):
            return [
                NewsItem(
                    title=f"Headline {i} " + "y" * 300,
                    publisher="Wire",
                    link="https://e.x/" + "z" * 200,
                )
                for i in range(limit)
            ]

    ctx = make_context(redis_client, settings, provider=Live(MARKET_DATA))
    tools = tools_for(ctx)

    facts = json.loads(call(tools["get_company"], symbol="AAPL"))
    assert facts["market_cap"] == "3.10T"
    assert facts["trailing_pe"] == 31.23
    assert facts["dividend_yield_pct"] == 0.44 and facts["profit_margin_pct"] == 24.31
    assert "beta" not in facts and len(facts["industry"]) <= 300

    text = call(tools["get_company"], symbol="AAPL", headlines=10).splitlines()[1]
    assert len(text) <= LIMIT
    news = json.loads(text)
    assert news["news"][0]["publisher"] == "Wire" and "link" not in news["news"][0]
    assert 1 < len(news["news"]) < 10 and news["more_not_shown"]
    two = call(tools["get_company"], symbol="AAPL", headlines=2).splitlines()[1]
    assert json.loads(two)["news"][1]["title"].startswith("Headline 1")


def test_a_bug_in_a_tool_comes_back_as_text(redis_client, settings):
    class Broken(CsvProvider):
        def quote(self, symbol):
            raise RuntimeError("boom")

    ctx = make_context(redis_client, settings, provider=Broken(MARKET_DATA))
    tool = tools_for(ctx)["get_quote"]
    assert call(tool, symbol="AAPL") == "error: RuntimeError: boom"
    assert tool.invoke({"symbol": "AAPL"}) == "error: RuntimeError: boom"


def test_profile_tools(tools, ctx):
    saved = call(
        tools["update_profile"],
        add_symbols=["aapl", "TSLA"],
        alert_threshold="-5%",
        portfolio_size="250k",
        notes="long term, no leverage",
    )
    expected = {
        "preferred_symbols": ["AAPL", "TSLA"],
        "alert_threshold_pct": -5.0,
        "portfolio_size": 250000.0,
        "notes": "long term, no leverage",
    }
    assert saved == "saved: " + json.dumps(expected, separators=(",", ":"))

    call(tools["update_profile"], remove_symbols=["TSLA"], clear=["notes"], alert_threshold=-0.03)
    profile = ctx.profiles.get("alice")
    assert profile.preferred_symbols == ["AAPL"]
    assert profile.notes is None and profile.alert_threshold == -0.03


def test_update_profile_needs_the_users_yes(tools, ctx, redis_client):
    key = ctx.profiles.keys.profile("alice")
    asked = []

    def decline(change):
        asked.append(change.describe())
        return False

    declined = tools["update_profile"].invoke(
        {
            "type": "tool_call",
            "id": "c1",
            "name": "update_profile",
            "args": {"add_symbols": ["aapl"], "notes": "x"},
        },
        confirm=decline,
    )
    assert declined.content == "not saved: the user declined this change"
    assert asked == [["add to watchlist: AAPL", "notes: x"]]  # validated before asking
    refused = tools["update_profile"].invoke(
        {"type": "tool_call", "id": "c2", "name": "update_profile", "args": {"notes": "x"}},
        confirm=None,
    )
    assert refused.content.startswith("not saved: profile changes need the user's confirmation")
    bad = tools["update_profile"].invoke(
        {
            "type": "tool_call",
            "id": "c3",
            "name": "update_profile",
            "args": {"portfolio_size": "-3"},
        },
        confirm=lambda change: asked.append("asked") or True,
    )
    assert bad.content.startswith("error: ") and asked[-1] != "asked"  # never asked
    assert redis_client.exists(key) == 0


def test_update_profile_bad_input_changes_nothing(tools, ctx, redis_client):
    call(tools["update_profile"], add_symbols=["AAPL"], portfolio_size=100000)
    before = redis_client.hgetall(ctx.profiles.keys.profile("alice"))

    bad = [
        {"add_symbols": ["MSFT"], "alert_threshold": "+5%"},
        {"add_symbols": ["MSFT"], "portfolio_size": "-3"},
        {"add_symbols": ["MS FT!"]},
        {"notes": "x", "clear": ["notes"]},
        {},
    ]
    for args in bad:
        text = call(tools["update_profile"], **args)
        assert text.startswith("error: "), args
        assert "\n" not in text
    assert redis_client.hgetall(ctx.profiles.keys.profile("alice")) == before


def test_a_note_from_the_model_stays_short(tools, ctx, redis_client):
    """The model's notes enter every later system prompt: one longer than
    MAX_NOTES_FROM_MODEL is refused before the user is asked, and nothing changes."""
    from stock_agent.core.limits import MAX_NOTES_FROM_MODEL

    asked: list[object] = []
    tool = tools["update_profile"]
    text = tool.invoke(
        {"notes": "x" * (MAX_NOTES_FROM_MODEL + 1)}, confirm=lambda c: asked.append(c) or True
    )
    assert text.startswith("error: invalid arguments"), text
    assert asked == []
    assert redis_client.hgetall(ctx.profiles.keys.profile("alice")) == {}
    text = tool.invoke(
        {"notes": "x" * MAX_NOTES_FROM_MODEL}, confirm=lambda c: asked.append(c) or True
    )
    assert not text.startswith("error"), text
    assert len(asked) == 1 and ctx.profiles.get("alice").notes == "x" * MAX_NOTES_FROM_MODEL


def test_update_profile_cannot_write_an_arbitrary_field(tools, ctx, redis_client):
    key = ctx.profiles.keys.profile("alice")
    for args in ({"updated_at": "0"}, {"is_admin": True}, {"clear": ["updated_at"]}):
        text = call(tools["update_profile"], **args)
        assert text.startswith("error: invalid arguments"), text
    assert redis_client.hgetall(key) == {}
    schema = tools["update_profile"].args_schema.model_json_schema()
    assert set(schema["properties"]) == {
        "add_symbols",
        "remove_symbols",
        "alert_threshold",
        "portfolio_size",
        "notes",
        "clear",
    }
    # not in the schema sent (it costs every request) but enforced: see the refusals above
    assert tools["update_profile"].args_schema.model_config["extra"] == "forbid"


def test_check_watchlist(tools, ctx):
    empty = call(tools["check_watchlist"])
    assert "watchlist is empty" in empty and "update_profile(add_symbols=" in empty

    ctx.profiles.add_symbols("alice", ["TSLA", "AAPL", "ZZZZ"])
    no_threshold = call(tools["check_watchlist"]).splitlines()
    assert no_threshold[0].startswith("no alert threshold set")
    assert no_threshold[1] == "TSLA: 338.23 (-6.10% 1d) ok"

    ctx.profiles.set_field("alice", "alert_threshold", "-5%")
    lines = call(tools["check_watchlist"]).splitlines()
    assert lines[0] == "alert threshold: -5.0% 1-day change"
    assert lines[1] == (
        "TSLA: 338.23 (-6.10% 1d) ALERT: TSLA moved -6.10% in one day, "
        "at or below your alert threshold of -5.00%"
    )
    assert lines[2].startswith("AAPL: 225.87 (") and lines[2].endswith(") ok")
    assert lines[3].startswith("ZZZZ: error: unknown symbol ZZZZ")


def test_tools_still_answer_when_redis_is_down(settings):
    client = connection.make_client(f"redis://127.0.0.1:{free_port()}/0")
    try:
        ctx = make_context(client, settings)
        tools = tools_for(ctx)
        result = json.loads(call(tools["analyze_stocks"], symbols=["AAPL"]))
        assert result["symbol"] == "AAPL"
        assert any("profile unavailable" in note for note in result["notes"])
        assert call(tools["update_profile"], notes="x").startswith("error: ")
    finally:
        client.close()


# -- LangChain's standard tool tests ---------------------------------------------------------


class _OfflineTool:
    """Builds each tool from its class with a context on the test server and offline data."""

    tool_class: type[BaseTool]
    example: dict[str, Any] = {}

    @pytest.fixture(autouse=True)
    def _context(self, redis_client, settings) -> None:
        self._ctx = make_context(redis_client, settings)

    @property
    def tool_constructor(self) -> type[BaseTool]:
        return self.tool_class

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"deps": self._ctx.deps}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return self.example


class TestGetQuoteStandard(_OfflineTool, ToolsUnitTests):
    tool_class = tools_module.GetQuoteTool
    example = {"symbol": "AAPL"}


class TestAnalyzeStocksStandard(_OfflineTool, ToolsUnitTests):
    tool_class = tools_module.AnalyzeStocksTool
    example = {"symbols": ["AAPL", "MSFT"]}


class TestGetCompanyStandard(_OfflineTool, ToolsUnitTests):
    tool_class = tools_module.GetCompanyTool
    example = {"symbol": "AAPL", "headlines": 3}


class TestCompareStocksStandard(_OfflineTool, ToolsUnitTests):
    tool_class = tools_module.CompareStocksTool
    example = {"symbols": ["AAPL", "MSFT"], "rank_by": "volatility"}


class TestUpdateProfileStandard(_OfflineTool, ToolsUnitTests):
    tool_class = tools_module.UpdateProfileTool
    example = {"add_symbols": ["AAPL"], "alert_threshold": "-5%", "portfolio_size": 100000}


class TestCheckWatchlistStandard(_OfflineTool, ToolsUnitTests):
    tool_class = tools_module.CheckWatchlistTool
    example: dict[str, Any] = {}
