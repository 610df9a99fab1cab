"""The public Python API, as the README shows it: `from stock_agent import App`, a context
manager built from an environment, typed analyses whose `to_dict()` is the `analyze --json`
item, and one agent for any user."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import stock_agent
from stock_agent import App
from stock_agent.core.models import Analysis
from stock_agent.errors import InvalidId, UnknownSymbol
from tests.conftest import REPO
from tests.openai_server import text, tool_call


def test_the_package_exports_app_and_is_typed():
    assert stock_agent.App is App
    assert "App" in stock_agent.__all__
    assert (REPO / "stock_agent" / "py.typed").is_file()


def test_analyze_gives_typed_analyses_equal_to_the_json_output(cli_env: dict[str, str]):
    with App.from_env(env=cli_env) as app:
        app.profiles.set_field("ana", "portfolio_size", "100k")
        batch = app.analyze(["AAPL", "MSFT"], user_id="ana")
        analyses = list(batch)
        assert [a.symbol for a in analyses] == ["AAPL", "MSFT"]
        assert all(isinstance(a, Analysis) for a in analyses)
        assert analyses[0].position is not None  # personalised for ana
        assert analyses[0].to_dict()["price"] == analyses[0].price
    # the same dicts as the CLI prints (the profile is the CLI's user's: give it the same one)
    out = subprocess.run(
        [sys.executable, "-m", "stock_agent", "--user", "ana", "analyze", "AAPL", "MSFT", "--json"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO.parent,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [a.to_dict() for a in analyses]
    assert not app.backend.connected  # leaving the block closed the connection


def test_analyze_reports_failures_beside_the_results(cli_env: dict[str, str]):
    with App.from_env(env=cli_env) as app:
        batch = app.analyze(["AAPL", "ZZZZ"])
        assert [a.symbol for a in batch] == ["AAPL"]
        [error] = batch.errors
        assert isinstance(error, UnknownSymbol) and error.symbol == "ZZZZ"
        with pytest.raises(InvalidId):
            app.analyze(["AAPL"], user_id="")


def test_from_env_takes_overrides(cli_env: dict[str, str], short_tmp):
    with App.from_env(env=cli_env, user_id="zoe") as app:
        assert app.settings.user_id == "zoe"
        assert app.settings.data_dir is not None


def test_one_agent_answers_any_user(cli_env: dict[str, str], openai_server: Any):
    env = {
        **cli_env,
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": openai_server.api_key,
        "STOCK_AGENT_MODEL": "test-model",
    }
    openai_server.queue(
        tool_call("get_quote", {"symbol": "AAPL"}),
        text("AAPL trades at 225.87."),
        text("Hello Bo."),
    )
    with App.from_env(env=env) as app:
        agent = app.agent()
        assert agent.ask("How is AAPL?", user_id="ana", session_id="s1") == "AAPL trades at 225.87."
        assert agent.ask("Hi", user_id="bo", session_id="s1") == "Hello Bo."
        assert [s.session_id for s in app.sessions.list("ana")] == ["s1"]
        assert [s.messages for s in app.sessions.list("bo")] == [2]
