"""The one error boundary, in-process: `main(argv, env)` runs the CLI with an injected
environment (no subprocess, no `.env`), every error becomes one line and an `ExitStatus`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stock_agent.cli import main
from stock_agent.errors import (
    ConfigError,
    DataSourceError,
    DataUnavailable,
    ExitStatus,
    InvalidId,
    InvalidInput,
    InvalidSymbol,
    ModelNotConfigured,
    ModelUnavailable,
    RateLimited,
    StockAgentError,
    StoreUnavailable,
    UnknownSymbol,
)
from tests.conftest import free_port


def test_exit_status_values_are_the_documented_ones():
    assert {s.name: int(s) for s in ExitStatus} == {
        "OK": 0,
        "ERROR": 1,
        "USAGE": 2,
        "STORE": 3,
        "DATA": 4,
        "DATA_SOURCE": 5,
        "MODEL": 6,
        "INTERRUPTED": 130,
    }


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StockAgentError("x"), ExitStatus.ERROR),
        (ConfigError("x"), ExitStatus.USAGE),
        (InvalidInput("x"), ExitStatus.USAGE),
        (InvalidId("x"), ExitStatus.USAGE),
        (InvalidSymbol("x"), ExitStatus.USAGE),
        (StoreUnavailable("x"), ExitStatus.STORE),
        (UnknownSymbol("ZZZZ"), ExitStatus.DATA),
        (DataUnavailable("x"), ExitStatus.DATA),
        (RateLimited(), ExitStatus.DATA_SOURCE),
        (DataSourceError("x"), ExitStatus.DATA_SOURCE),
        (ModelNotConfigured(), ExitStatus.MODEL),
        (ModelUnavailable("x"), ExitStatus.MODEL),
    ],
)
def test_each_error_has_its_exit_status(error: StockAgentError, status: ExitStatus):
    assert error.exit_code is status


def test_in_process_with_an_injected_environment(cli_env: dict[str, str], capsys: Any):
    assert main(["profile", "set", "alert_threshold", "-4%"], env=cli_env) == ExitStatus.OK
    capsys.readouterr()
    assert main(["profile", "show", "--json"], env=cli_env) == ExitStatus.OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["user_id"] == "alice" and shown["alert_threshold"] == -0.04
    # another user through the environment alone
    assert main(["profile", "show", "--json"], env={**cli_env, "STOCK_AGENT_USER": "bob"}) == 0
    assert json.loads(capsys.readouterr().out)["alert_threshold"] is None


def test_analyze_json_in_process(cli_env: dict[str, str], capsys: Any):
    assert main(["analyze", "AAPL", "--json"], env=cli_env) == ExitStatus.OK
    [item] = json.loads(capsys.readouterr().out)
    assert item["symbol"] == "AAPL" and item["as_of"] == "2026-11-20"


@pytest.mark.parametrize(
    ("argv", "status", "start"),
    [
        (["analyze", "ZZZZ"], ExitStatus.DATA, "error: unknown symbol ZZZZ"),
        (["analyze", "not a symbol!"], ExitStatus.USAGE, "error: invalid symbol"),
        (["profile", "set", "alert_threshold", "+5%"], ExitStatus.USAGE, "error: alert_threshold"),
        (["--user", "", "profile", "show"], ExitStatus.USAGE, "error: invalid user id ''"),
        (["profile", "show", "--user", ""], ExitStatus.USAGE, "error: invalid user id ''"),
        (["sessions", "show", ""], ExitStatus.USAGE, "error: invalid session id ''"),
        (["chat", "--session", ""], ExitStatus.USAGE, "error: invalid session id ''"),
        (["bogus"], ExitStatus.USAGE, "error: No such command 'bogus'."),
    ],
)
def test_errors_are_one_line_with_their_status(
    cli_env: dict[str, str], capsys: Any, argv: list[str], status: ExitStatus, start: str
):
    env = {**cli_env, "OPENAI_API_KEY": "sk-test"} if argv[0] == "chat" else cli_env
    assert main(argv, env=env) == status
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), captured.err
    assert "Traceback" not in captured.err + captured.out


def test_an_empty_user_never_falls_back_to_another(cli_env: dict[str, str], redis_client: Any):
    """`profile reset --yes --user ""` once deleted the login user's profile."""
    assert main(["profile", "set", "notes", "keep me"], env=cli_env) == 0
    assert main(["profile", "reset", "--yes", "--user", ""], env=cli_env) == ExitStatus.USAGE
    assert redis_client.hget("agent:memory:test_agent:alice:profile", "notes") == "keep me"


def test_a_store_that_is_down_is_one_line_and_status_3(cli_env: dict[str, str], capsys: Any):
    env = {**cli_env, "REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"}
    assert main(["profile", "show"], env=env) == ExitStatus.STORE
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach Redis at redis://:***@127.0.0.1:")
    assert "hunter2" not in err and len(err.splitlines()) == 1


def test_bad_configuration_is_a_usage_error(cli_env: dict[str, str], capsys: Any):
    env = {**cli_env, "STOCK_AGENT_SESSION_TTL": "soon"}
    assert main(["profile", "show"], env=env) == ExitStatus.USAGE
    assert "STOCK_AGENT_SESSION_TTL must be a whole number" in capsys.readouterr().err


def test_debug_shows_the_traceback_in_process(cli_env: dict[str, str], capsys: Any):
    assert main(["--debug", "analyze", "ZZZZ"], env=cli_env) == ExitStatus.DATA
    assert "Traceback" in capsys.readouterr().err


def test_the_injected_environment_is_the_only_one(cli_env: dict[str, str], monkeypatch, capsys):
    """Nothing reads os.environ behind the injected env's back."""
    monkeypatch.setenv("STOCK_AGENT_USER", "from-os-environ")
    assert main(["profile", "show", "--json"], env=cli_env) == 0
    assert json.loads(capsys.readouterr().out)["user_id"] == "alice"


# --------------------------------------------------------------------------- leaving at once


class _Recorded:
    """A stream that notes its flushes in a shared log (and can fail as a closed pipe does)."""

    def __init__(self, name: str, events: list[Any], fails: bool = False) -> None:
        self.name, self.events, self.fails = name, events, fails

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        self.events.append(("flush", self.name))
        if self.fails:
            raise BrokenPipeError("the reader has gone")


def recording_the_way_out(monkeypatch: pytest.MonkeyPatch, stdout_fails: bool = False) -> list[Any]:
    """`os._exit` and the output streams note what happens, in order, instead of ending the
    test run. (Called in the test itself: pytest puts its own streams back between a fixture's
    set-up and the test.)"""
    import os
    import sys

    events: list[Any] = []
    monkeypatch.setattr(os, "_exit", lambda code: events.append(("_exit", code)))
    monkeypatch.setattr(sys, "stdout", _Recorded("stdout", events, fails=stdout_fails))
    monkeypatch.setattr(sys, "stderr", _Recorded("stderr", events))
    return events


def test_exit_now_flushes_the_tracers_then_the_streams_then_exits(monkeypatch):
    from langchain_core.tracers import langchain as tracers

    from stock_agent.cli import exit_now

    leaving = recording_the_way_out(monkeypatch)
    monkeypatch.setattr(tracers, "wait_for_all_tracers", lambda: leaving.append(("tracers",)))
    exit_now(ExitStatus.DATA_SOURCE)
    assert leaving == [("tracers",), ("flush", "stdout"), ("flush", "stderr"), ("_exit", 5)]


def test_exit_now_leaves_even_when_tracing_and_the_pipe_fail(monkeypatch):
    from langchain_core.tracers import langchain as tracers

    from stock_agent.cli import exit_now

    leaving = recording_the_way_out(monkeypatch, stdout_fails=True)

    def broken() -> None:
        leaving.append(("tracers",))
        raise RuntimeError("LangSmith is down")

    monkeypatch.setattr(tracers, "wait_for_all_tracers", broken)
    exit_now(ExitStatus.INTERRUPTED)
    assert leaving == [("tracers",), ("flush", "stdout"), ("flush", "stderr"), ("_exit", 130)]


def test_exit_now_does_not_load_langchain_to_flush_it(monkeypatch):
    """Without a tracer module loaded there is nothing to flush: leaving imports nothing."""
    import sys

    from stock_agent.cli import exit_now

    leaving = recording_the_way_out(monkeypatch)
    monkeypatch.delitem(sys.modules, "langchain_core.tracers.langchain", raising=False)
    exit_now(ExitStatus.OK)
    assert "langchain_core.tracers.langchain" not in sys.modules
    assert leaving == [("flush", "stdout"), ("flush", "stderr"), ("_exit", 0)]
