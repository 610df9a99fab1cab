"""`stock-agent` run as a user runs it: a real subprocess against the test Valkey, the offline
market data and, where a model is needed, the scripted OpenAI-compatible server."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MARKET_DATA, free_port
from tests.openai_server import ScriptedOpenAI, error, text, tool_call

PROFILE_KEY = "agent:memory:test_agent:alice:profile"
RETURN_KEYS = {"1d", "5d", "1m", "3m", "6m", "1y", "ytd"}
HEAVY = ("langchain", "langchain_core", "langchain_openai", "openai", "pandas", "yfinance", "rich")
EMPTY_PROFILE_TEXT = """\
Profile of alice
  preferred_symbols  none
  alert_threshold    not set
  portfolio_size     not set
  notes              none
"""


def run(
    env: dict[str, str], *args: str, stdin: str = "", cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`stock-agent ARGS` in a fresh process, outside the repository (no stray `.env`)."""
    return subprocess.run(
        [sys.executable, "-m", "stock_agent", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or Path(env["STOCK_AGENT_HOME"]).parent,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with `code` and told the user in exactly one line, no traceback."""
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def snapshot(client: Any) -> dict[bytes, bytes]:
    """Every key and its serialized value: proof that a refused command changed nothing."""
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


def csv_closes(symbol: str) -> tuple[str, list[float]]:
    """(last date, closes) straight from the offline data file."""
    with (MARKET_DATA / f"{symbol}.csv").open() as f:
        rows = list(csv.DictReader(f))
    return rows[-1]["Date"], [float(r["Close"]) for r in rows]


# --------------------------------------------------------------------------- help and start-up


def test_help_lists_every_command(cli_env: dict[str, str]) -> None:
    out = ok(run(cli_env, "--help"))
    assert out.startswith("Usage: stock-agent [OPTIONS] [COMMAND] [ARGS]...")
    for command in ("analyze", "cache", "chat", "doctor", "profile", "sessions", "store"):
        assert f"\n  {command} " in out
    assert ok(run(cli_env, "-h")) == out
    assert ok(run(cli_env)) == out  # plain `stock-agent` is the help, exit 0


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["profile"], ["show", "set", "add-symbol", "remove-symbol", "reset"]),
        (["sessions"], ["list", "show", "clear"]),
        (["cache"], ["stats", "clear"]),
        (["store"], ["status", "stop"]),
        (["chat"], ["--session", "--new", "--user"]),
        (["analyze"], ["--json", "--no-llm", "--user"]),
        (["doctor"], ["--user"]),
        (["profile", "set"], ["alert_threshold", "portfolio_size", "-5%"]),
    ],
)
def test_each_help(cli_env: dict[str, str], args: list[str], mentions: list[str]) -> None:
    out = ok(run(cli_env, *args, "--help"))
    assert out.startswith(f"Usage: stock-agent {' '.join(args)} ")
    for word in mentions:
        assert word in out


def test_version(cli_env: dict[str, str]) -> None:
    from stock_agent import __version__

    assert ok(run(cli_env, "--version")) == f"stock-agent, version {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["profile", "--help"],
        ["profile", "show"],
        ["profile", "show", "--json"],
        ["profile", "set", "alert_threshold", "-5%"],
    ],
)
def test_light_commands_do_not_import_the_heavy_stack(
    cli_env: dict[str, str], args: list[str]
) -> None:
    probe = (
        "import sys\n"
        "from stock_agent.cli import main\n"
        f"code = main({args!r})\n"
        "loaded = sorted(m for m in {heavy!r} if m in sys.modules)\n"
        "print('EXIT', code, 'LOADED', ','.join(loaded), file=sys.stderr)\n"
    ).replace("{heavy!r}", repr(HEAVY))
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(cli_env["STOCK_AGENT_HOME"]).parent,
    )
    assert result.stderr.splitlines()[-1] == "EXIT 0 LOADED ", result.stderr


# --------------------------------------------------------------------------- profile


def test_profile_show_empty(cli_env: dict[str, str]) -> None:
    assert ok(run(cli_env, "profile", "show")) == EMPTY_PROFILE_TEXT
    shown = json.loads(ok(run(cli_env, "profile", "show", "--json")))
    assert shown == {
        "user_id": "alice",
        "preferred_symbols": [],
        "alert_threshold": None,
        "portfolio_size": None,
        "notes": None,
        "updated_at": None,
        "symbol_alerts": [],
        "currency": None,
    }


def test_profile_set_each_field(cli_env: dict[str, str]) -> None:
    out = ok(run(cli_env, "profile", "set", "alert_threshold", "-5%"))
    assert "  alert_threshold    -5.00%  (alert on a 1-day drop of 5% or more)\n" in out
    ok(run(cli_env, "profile", "set", "portfolio_size", "250k"))
    ok(run(cli_env, "profile", "set", "notes", "long-term", "investor,", "dividends"))
    ok(run(cli_env, "profile", "set", "preferred_symbols", "nvda", "TSLA", "nvda"))

    text_out = ok(run(cli_env, "profile", "show"))
    lines = text_out.splitlines()
    assert lines[:5] == [
        "Profile of alice",
        "  preferred_symbols  NVDA, TSLA",
        "  alert_threshold    -5.00%  (alert on a 1-day drop of 5% or more)",
        "  portfolio_size     250,000.00 USD",
        "  notes              long-term investor, dividends",
    ]
    assert len(lines) == 6 and lines[5].startswith("  updated            20")

    shown = json.loads(ok(run(cli_env, "profile", "show", "--json")))
    assert isinstance(shown.pop("updated_at"), float)
    assert shown == {
        "user_id": "alice",
        "preferred_symbols": ["NVDA", "TSLA"],
        "alert_threshold": -0.05,
        "portfolio_size": 250000.0,
        "notes": "long-term investor, dividends",
        "symbol_alerts": [],
        "currency": None,
    }

    # The other spelling of a threshold, and `none` to clear a field.
    ok(run(cli_env, "profile", "set", "alert_threshold", "-0.03"))
    ok(run(cli_env, "profile", "set", "portfolio_size", "none"))
    shown = json.loads(ok(run(cli_env, "profile", "show", "--json")))
    assert shown["alert_threshold"] == -0.03
    assert shown["portfolio_size"] is None


def test_profile_add_and_remove_symbols(cli_env: dict[str, str]) -> None:
    assert ok(run(cli_env, "profile", "add-symbol", "aapl", "MSFT")) == (
        "preferred symbols: AAPL, MSFT\n"
    )
    assert ok(run(cli_env, "profile", "add-symbol", "MSFT", "brk-b")) == (
        "preferred symbols: AAPL, MSFT, BRK-B\n"
    )
    assert ok(run(cli_env, "profile", "remove-symbol", "aapl")) == (
        "preferred symbols: MSFT, BRK-B\n"
    )
    assert ok(run(cli_env, "profile", "remove-symbol", "MSFT", "BRK-B")) == (
        "preferred symbols: none\n"
    )


def test_profile_reset(cli_env: dict[str, str], redis_client: Any) -> None:
    ok(run(cli_env, "profile", "add-symbol", "AAPL"))
    assert redis_client.exists(PROFILE_KEY)
    assert ok(run(cli_env, "profile", "reset", "--yes")) == "profile of alice deleted\n"
    assert not redis_client.exists(PROFILE_KEY)
    assert ok(run(cli_env, "profile", "reset", "--yes")) == "profile of alice was already empty\n"
    assert ok(run(cli_env, "profile", "show")) == EMPTY_PROFILE_TEXT


def test_user_option_on_group_and_command(cli_env: dict[str, str]) -> None:
    ok(run(cli_env, "--user", "bob", "profile", "add-symbol", "NVDA"))
    ok(run(cli_env, "profile", "add-symbol", "TSLA", "--user", "carol@example.com"))
    env_dave = {**cli_env, "STOCK_AGENT_USER": "dave"}
    ok(run(env_dave, "profile", "add-symbol", "MSFT"))

    def symbols(*args: str, env: dict[str, str] = cli_env) -> list[str]:
        return json.loads(ok(run(env, *args, "profile", "show", "--json")))["preferred_symbols"]

    assert symbols("--user", "bob") == ["NVDA"]
    assert symbols("--user", "carol@example.com") == ["TSLA"]
    assert symbols(env=env_dave) == ["MSFT"]
    assert symbols() == []  # alice, from STOCK_AGENT_USER, untouched
    # The command's --user wins over the group's.
    out = ok(run(cli_env, "--user", "bob", "profile", "show", "--user", "dave"))
    assert out.startswith("Profile of dave\n")


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["profile", "set", "alert_threshold", "5"], "alert_threshold"),
        (["profile", "set", "alert_threshold", "-150%"], "alert_threshold"),
        (["profile", "set", "portfolio_size", "abc"], "portfolio_size"),
        (["profile", "set", "preferred_symbols", "AAPL", "A*B"], "A*B"),
        (["profile", "add-symbol", "A*B"], "A*B"),
        (["profile", "add-symbol", "MSFT", "A*B"], "A*B"),
        (["profile", "remove-symbol", "A?B"], "A?B"),
        (["--user", "bad*id", "profile", "show"], "bad*id"),
        (["profile", "add-symbol", "NVDA", "--user", "bad*id"], "bad*id"),
        (["profile", "reset", "--user", "*"], "'*'"),
    ],
)
def test_profile_bad_input_changes_nothing(
    cli_env: dict[str, str], redis_client: Any, args: list[str], mentions: str
) -> None:
    ok(run(cli_env, "profile", "set", "alert_threshold", "-3%"))
    ok(run(cli_env, "profile", "add-symbol", "AAPL"))
    before = snapshot(redis_client)

    line = one_error_line(run(cli_env, *args), 2)
    assert mentions in line
    assert snapshot(redis_client) == before


# --------------------------------------------------------------------------- analyze, no model


def analyze_json(env: dict[str, str], *symbols: str) -> list[dict[str, Any]]:
    result = run(env, "analyze", *symbols, "--json")
    assert result.stderr == ""
    return json.loads(ok(result))


def test_analyze_json_has_the_stable_fields(cli_env: dict[str, str]) -> None:
    report = analyze_json(cli_env, "AAPL", "tsla")
    assert [a["symbol"] for a in report] == ["AAPL", "TSLA"]
    for a in report:
        last_date, closes = csv_closes(a["symbol"])
        assert a["as_of"] == last_date
        assert a["price"] == pytest.approx(closes[-1])
        assert set(a["returns"]) == RETURN_KEYS
        assert a["returns"]["1d"] == pytest.approx(closes[-1] / closes[-2] - 1, abs=1e-5)
        assert a["returns"]["5d"] == pytest.approx(closes[-1] / closes[-6] - 1, abs=1e-5)
        for name in ("sma_20", "sma_50", "sma_200", "rsi_14", "macd", "bb_upper", "atr_14"):
            assert isinstance(a["indicators"][name], float), name
        assert a["indicators"]["sma_20"] == pytest.approx(sum(closes[-20:]) / 20, rel=1e-4)
        assert a["high_52w"] >= a["price"] >= a["low_52w"]
        assert isinstance(a["signals"], list) and a["signals"]
        assert a["alerts"] == []  # no threshold in the profile


@pytest.mark.parametrize("columns", ["100", "72"])
def test_analyze_text_report(cli_env: dict[str, str], columns: str) -> None:
    report = analyze_json(cli_env, "AAPL", "TSLA")
    result = run({**cli_env, "COLUMNS": columns}, "analyze", "AAPL", "TSLA")
    out = ok(result)
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0] == "Summary"
    assert lines[1].split()[:5] == ["Symbol", "Price", "Last", "3", "months"]
    assert max(len(line) for line in out.splitlines()) <= int(columns)
    for a in report:
        assert f"{a['symbol']}  {a['price']:,.2f}  as of {a['as_of']}" in out
        for value in a["returns"].values():
            assert f"{value * 100:+.1f}%" in out
        for signal in a["signals"]:
            assert signal["text"] in out
    assert "…" not in out  # no number cut short
    # The note on how to get the narrated version: one line, on stderr, not mixed with the report.
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("note: ")
    assert "OPENAI_API_KEY" in result.stderr and "OPENAI_BASE_URL" in result.stderr


def test_analyze_uses_the_profile_symbols(cli_env: dict[str, str]) -> None:
    ok(run(cli_env, "profile", "add-symbol", "MSFT", "NVDA"))
    assert [a["symbol"] for a in analyze_json(cli_env)] == ["MSFT", "NVDA"]


def test_analyze_without_symbols_and_empty_profile(cli_env: dict[str, str]) -> None:
    line = one_error_line(run(cli_env, "analyze"), 2)
    assert line.startswith("error: no symbols to analyze")
    assert "stock-agent profile add-symbol" in line


def test_analyze_alert_when_the_threshold_is_crossed(cli_env: dict[str, str]) -> None:
    _, closes = csv_closes("TSLA")
    drop = closes[-1] / closes[-2] - 1
    assert -0.1 < drop < -0.05  # the sample data ends with a ~-6% day for TSLA

    ok(run(cli_env, "profile", "set", "alert_threshold", "-5%"))
    aapl, tsla = analyze_json(cli_env, "AAPL", "TSLA")
    assert aapl["alerts"] == []
    assert len(tsla["alerts"]) == 1
    alert = tsla["alerts"][0]
    assert alert["threshold"] == -0.05
    assert alert["change_1d"] == pytest.approx(drop, abs=1e-5)
    assert "TSLA" in alert["text"] and f"{drop * 100:.2f}%" in alert["text"]
    assert alert["text"] in ok(run(cli_env, "analyze", "TSLA"))

    ok(run(cli_env, "profile", "set", "alert_threshold", "-10%"))
    assert analyze_json(cli_env, "TSLA")[0]["alerts"] == []


def test_analyze_unknown_symbol(cli_env: dict[str, str]) -> None:
    result = run(cli_env, "analyze", "ZZZZ")
    line = one_error_line(result, 4)
    assert line.startswith("error: unknown symbol ZZZZ")
    assert result.stdout == ""


def test_analyze_unknown_symbol_among_known_ones(cli_env: dict[str, str]) -> None:
    """The known symbols are reported, the unknown one named on stderr, and the exit code says so."""
    result = run(cli_env, "analyze", "AAPL", "ZZZZ", "--json")
    assert result.returncode == 4, result.stderr
    assert [a["symbol"] for a in json.loads(result.stdout)] == ["AAPL"]
    assert result.stderr.startswith("error: unknown symbol ZZZZ")
    assert result.stderr.count("\n") == 1


def test_analyze_invalid_symbol(cli_env: dict[str, str]) -> None:
    line = one_error_line(run(cli_env, "analyze", "AAPL", "A*B"), 2)
    assert "'A*B'" in line


# --------------------------------------------------------------------------- analyze, with a model


def test_analyze_narrated_by_the_model(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    narration = "AAPL is steady.\n\n**TSLA** fell about 6% yesterday, past your alert threshold."
    openai_server.queue(
        tool_call("analyze_stocks", {"symbols": ["AAPL", "TSLA"]}),
        text(narration),
    )
    ok(run(model_env, "profile", "set", "alert_threshold", "-5%"))
    result = run(model_env, "analyze", "AAPL", "TSLA", "--narrate-only")
    assert ok(result) == narration + "\n"
    assert result.stderr == ""

    assert openai_server.rejected == []
    first, second = openai_server.requests
    assert first["model"] == "test-model"
    assert first["stream"] is True
    assert first["messages"][0]["role"] == "system"
    assert "alert threshold: -5.0%" in first["messages"][0]["content"]
    assert first["messages"][-1]["role"] == "user"
    assert "AAPL, TSLA" in first["messages"][-1]["content"]
    assert "analyze_stocks" in {t["function"]["name"] for t in first["tools"]}

    call, result_message = second["messages"][-2:]
    assert call["role"] == "assistant"
    assert call["tool_calls"][0]["function"]["name"] == "analyze_stocks"
    assert result_message["role"] == "tool"
    assert result_message["tool_call_id"] == call["tool_calls"][0]["id"]
    tool_output = result_message["content"]
    for a in analyze_json(model_env, "AAPL", "TSLA"):
        assert a["symbol"] in tool_output
        assert str(a["price"]) in tool_output
    assert "threshold" in tool_output  # the alert from the profile reached the model


def test_analyze_unknown_symbol_with_a_model(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    line = one_error_line(run(model_env, "analyze", "ZZZZ"), 4)
    assert line.startswith("error: unknown symbol ZZZZ")
    assert openai_server.requests == []  # the model is not asked about nothing

    openai_server.queue(tool_call("analyze_stocks", {"symbols": ["AAPL"]}), text("AAPL is fine."))
    result = run(model_env, "analyze", "AAPL", "ZZZZ", "--narrate-only")
    assert result.returncode == 4
    assert result.stdout == "AAPL is fine.\n"
    assert result.stderr.startswith("error: unknown symbol ZZZZ") and result.stderr.count("\n") == 1
    request = openai_server.requests[0]["messages"][-1]["content"]
    assert "AAPL" in request and "ZZZZ" not in request


def test_analyze_no_llm_and_json_ignore_the_model(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    result = run(model_env, "analyze", "AAPL", "--no-llm")
    assert "AAPL  " in ok(result)
    assert result.stderr == ""  # a model is configured: no note about enabling one
    assert [a["symbol"] for a in analyze_json(model_env, "AAPL")] == ["AAPL"]
    assert openai_server.requests == []


# --------------------------------------------------------------------------- errors


def test_chat_without_a_model(cli_env: dict[str, str]) -> None:
    result = run(cli_env, "chat", stdin="hello\n")
    line = one_error_line(result, 6)
    assert "OPENAI_API_KEY" in line and "OPENAI_BASE_URL" in line
    assert "analyze" in line
    assert result.stdout == ""


def test_debug_shows_the_traceback(cli_env: dict[str, str]) -> None:
    result = run(cli_env, "--debug", "chat", stdin="hello\n")
    assert result.returncode == 6
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: no model configured")


def test_model_server_unreachable(cli_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    env = {**cli_env, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "k", "STOCK_AGENT_MODEL": "m"}
    line = one_error_line(run(env, "analyze", "AAPL"), 6)
    assert line.startswith(f"error: cannot reach the model server at {url}")
    assert "OPENAI_BASE_URL" in line and "--no-llm" in line


def test_model_server_refuses_the_key(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    secret = "sk-wrong-Zq8pX2vLm4"
    result = run({**model_env, "OPENAI_API_KEY": secret}, "analyze", "AAPL")
    line = one_error_line(result, 6)
    assert "refused the API key" in line and "OPENAI_API_KEY" in line
    assert openai_server.rejected and openai_server.rejected[0].status == 401
    for fragment in (secret, secret[-6:], "Zq8p"):
        assert fragment not in result.stdout + result.stderr


def test_model_server_rate_limiting(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    # The openai client retries a 429 twice by itself before giving up.
    openai_server.queue(*[error(429, "Rate limit reached for requests")] * 3)
    line = one_error_line(run(model_env, "analyze", "AAPL"), 6)
    assert "rate limit" in line


@pytest.mark.parametrize(
    "args",
    [
        ["profile", "show"],
        ["analyze", "AAPL"],
        ["sessions", "list"],
        ["cache", "stats"],
        ["store", "status"],
    ],
)
def test_redis_unreachable(cli_env: dict[str, str], args: list[str]) -> None:
    port = free_port()
    env = {**cli_env, "REDIS_URL": f"redis://:s3cret@127.0.0.1:{port}/0"}
    result = run(env, *args)
    line = one_error_line(result, 3)
    assert f"redis://:***@127.0.0.1:{port}/0" in line
    assert "docker compose up -d redis" in line and "unset REDIS_URL" in line
    assert "s3cret" not in result.stdout + result.stderr

    debug = run(env, "--debug", *args)
    assert debug.returncode == 3
    assert "Traceback" in debug.stderr
    assert "s3cret" not in debug.stdout + debug.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["profile", "set", "colour", "red"],
            "error: Invalid value for 'FIELD': 'colour' is not one of 'preferred_symbols', "
            "'alert_threshold', 'portfolio_size', 'notes', 'currency'. (see `stock-agent profile set --help`)",
        ),
        (
            ["analyze", "AAPL", "--bogus"],
            "error: No such option '--bogus'. Did you mean '--user'? "
            "(see `stock-agent analyze --help`)",
        ),
        (
            ["sessions", "show"],
            "error: Missing argument 'ID'. (see `stock-agent sessions show --help`)",
        ),
        (["bogus"], "error: No such command 'bogus'. (see `stock-agent --help`)"),
    ],
)
def test_usage_errors_are_one_line(cli_env: dict[str, str], args: list[str], line: str) -> None:
    result = run(cli_env, *args)
    assert one_error_line(result, 2) == line
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("env", "args", "start"),
    [
        (
            {"STOCK_AGENT_SESSION_TTL": "abc"},
            ["profile", "show"],
            "error: STOCK_AGENT_SESSION_TTL must be a whole number, got 'abc'",
        ),
        (
            {"STOCK_AGENT_DATA_DIR": "/nonexistent/market"},
            ["analyze", "AAPL"],
            "error: offline data folder /nonexistent/market does not exist",
        ),
    ],
)
def test_bad_configuration(
    cli_env: dict[str, str], env: dict[str, str], args: list[str], start: str
) -> None:
    assert one_error_line(run({**cli_env, **env}, *args), 2).startswith(start)


def test_redis_refusing_the_credentials(cli_env: dict[str, str], valkey: Any) -> None:
    env = {**cli_env, "REDIS_URL": f"redis://bob:s3cret@127.0.0.1:{valkey.port}/0"}
    result = run(env, "profile", "show")
    line = one_error_line(result, 3)
    assert f"redis://bob:***@127.0.0.1:{valkey.port}/0" in line
    assert "refused the credentials" in line and "REDIS_URL" in line
    assert "s3cret" not in result.stdout + result.stderr


def test_redis_url_with_a_database_the_server_lacks(cli_env: dict[str, str], valkey: Any) -> None:
    url = f"redis://127.0.0.1:{valkey.port}/99"
    result = run({**cli_env, "REDIS_URL": url}, "profile", "show")
    line = one_error_line(result, 2 if result.returncode == 2 else 3)  # a setting or the store
    assert url in line and "REDIS_URL" in line


# --------------------------------------------------------------------------- sessions


def chat_two_turns(env: dict[str, str], server: ScriptedOpenAI, *args: str) -> None:
    server.queue(text("Answer one."), text("Answer two."))
    out = ok(run(env, "chat", *args, stdin="first question\nsecond question\n"))
    assert out == "Answer one.\nAnswer two.\n"


def test_sessions_list_show_clear(
    model_env: dict[str, str], openai_server: ScriptedOpenAI, redis_client: Any
) -> None:
    assert ok(run(model_env, "sessions", "list")) == (
        "No live sessions for alice. Start one with `stock-agent chat`.\n"
    )
    assert json.loads(ok(run(model_env, "sessions", "list", "--json"))) == []

    chat_two_turns(model_env, openai_server, "--session", "s-1")
    listed = json.loads(ok(run(model_env, "sessions", "list", "--json")))
    assert [(s["session_id"], s["messages"]) for s in listed] == [("s-1", 4)]
    assert 0 < listed[0]["expires_in"] <= 1800
    lines = ok(run(model_env, "sessions", "list")).splitlines()
    assert lines[0] == "Sessions of alice, newest first"
    assert lines[1].split() == [
        "SESSION", "MESSAGES", "LAST", "ACTIVITY", "EXPIRES", "IN", "TOKENS", "IN/OUT", "COST"
    ]  # fmt: skip
    assert lines[2].split()[:2] == ["s-1", "4"] and len(lines) == 3
    assert lines[2].split()[-1] == "unpriced"  # test-model has no price: never $0

    # Showing a session does not extend its life.
    key = "agent:memory:test_agent:alice:s-1:messages"
    redis_client.expire(key, 100)
    assert ok(run(model_env, "sessions", "show", "s-1")) == (
        "you> first question\n\nagent> Answer one.\n\nyou> second question\n\nagent> Answer two.\n"
    )
    assert 0 < redis_client.ttl(key) <= 100
    shown = json.loads(ok(run(model_env, "sessions", "show", "s-1", "--json")))
    assert [{k: m[k] for k in ("type", "content")} for m in shown] == [
        {"type": "human", "content": "first question"},
        {"type": "ai", "content": "Answer one."},
        {"type": "human", "content": "second question"},
        {"type": "ai", "content": "Answer two."},
    ]
    assert [m["usage"]["model"] for m in shown if "usage" in m] == ["test-model", "test-model"]

    # Another user sees none of it.
    assert json.loads(ok(run(model_env, "sessions", "list", "--json", "--user", "bob"))) == []
    one_error_line(run(model_env, "sessions", "show", "s-1", "--user", "bob"), 2)
    one_error_line(run(model_env, "sessions", "clear", "s-1", "--user", "bob"), 2)

    assert ok(run(model_env, "sessions", "clear", "s-1")) == "session s-1 deleted\n"
    assert not redis_client.exists(key)
    assert json.loads(ok(run(model_env, "sessions", "list", "--json"))) == []
    line = one_error_line(run(model_env, "sessions", "clear", "s-1"), 2)
    assert line == "error: no session 's-1' for user alice (see `stock-agent sessions list`)"
    assert openai_server.rejected == []


@pytest.mark.parametrize("command", ["show", "clear"])
def test_sessions_invalid_id(cli_env: dict[str, str], redis_client: Any, command: str) -> None:
    ok(run(cli_env, "profile", "add-symbol", "AAPL"))
    before = snapshot(redis_client)
    line = one_error_line(run(cli_env, "sessions", command, "*"), 2)
    assert "invalid session id '*'" in line
    assert snapshot(redis_client) == before


# --------------------------------------------------------------------------- cache, store, doctor


def test_cache_stats_and_clear(cli_env: dict[str, str], redis_client: Any) -> None:
    assert ok(run(cli_env, "cache", "stats")) == (
        "Cached results: 0\nNo lookups yet.\n"
        "TTLs: quote 60s, bars/analysis 900s, fundamentals 86400s, news 900s\n"
    )
    ok(run(cli_env, "analyze", "AAPL", "--json"))
    first = json.loads(ok(run(cli_env, "cache", "stats", "--json")))
    assert first["entries"] > 0
    assert sum(t["misses"] for t in first["tools"].values()) > 0
    assert first["ttl_seconds"]["bars"] == 900

    ok(run(cli_env, "analyze", "AAPL", "--json"))
    second = json.loads(ok(run(cli_env, "cache", "stats", "--json")))
    assert second["entries"] == first["entries"]
    assert sum(t["hits"] for t in second["tools"].values()) > 0
    assert "HIT RATE" in ok(run(cli_env, "cache", "stats"))

    ok(run(cli_env, "profile", "add-symbol", "AAPL"))
    assert ok(run(cli_env, "cache", "clear")) == (
        f"cache cleared: {second['entries']} entries removed\n"
    )
    assert json.loads(ok(run(cli_env, "cache", "stats", "--json")))["entries"] == 0
    assert redis_client.exists(PROFILE_KEY)  # profiles are not part of the cache


def test_store_status(cli_env: dict[str, str], valkey: Any) -> None:
    ok(run(cli_env, "profile", "add-symbol", "AAPL"))
    status = json.loads(ok(run(cli_env, "store", "status", "--json", "--scan")))
    assert status["kind"] == "external"
    assert status["url"] == valkey.url
    assert status["agent_id"] == "test_agent"
    assert status["keys"]["profile"] == 1
    out = ok(run(cli_env, "store", "status", "--scan"))
    assert out.splitlines()[0].startswith("store ")
    assert "external" in out and valkey.url in out
    assert "1 profiles" in out
    # without --scan nothing reads the keyspace; the cache counts itself, as `cache stats` does
    ok(run(cli_env, "analyze", "AAPL", "--json"))
    quick = json.loads(ok(run(cli_env, "store", "status", "--json")))
    stats = json.loads(ok(run(cli_env, "cache", "stats", "--json")))
    assert quick["keys"] == {} and quick["cache_entries"] == stats["entries"] > 0


def test_embedded_store_status_stop_and_restart(cli_env: dict[str, str], short_tmp: Path) -> None:
    """Without REDIS_URL the app runs its own Valkey under STOCK_AGENT_HOME; data outlives it."""
    home = short_tmp / "emb"
    env = {k: v for k, v in cli_env.items() if k != "REDIS_URL"}
    env["STOCK_AGENT_HOME"] = str(home)
    try:
        ok(run(env, "profile", "add-symbol", "AAPL"))
        status = json.loads(ok(run(env, "store", "status", "--json", "--scan")))
        assert status["kind"] == "embedded"
        assert status["url"] == f"unix://{home}/valkey.sock"
        assert status["append_only"] is True
        assert status["keys"]["profile"] == 1
        assert ok(run(env, "store", "stop")) == f"embedded store stopped ({home})\n"
        assert ok(run(env, "store", "stop")) == f"embedded store was not running ({home})\n"
        # The next command starts it again, with the profile still there.
        shown = json.loads(ok(run(env, "profile", "show", "--json")))
        assert shown["preferred_symbols"] == ["AAPL"]
    finally:
        run(env, "store", "stop")


def test_store_stop_with_an_external_store(cli_env: dict[str, str]) -> None:
    line = one_error_line(run(cli_env, "store", "stop"), 1)
    assert "REDIS_URL is set" in line


def doctor_lines(out: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in out.splitlines():
        state, name, detail = line.split(None, 2)
        rows[name] = (state, detail)
    return rows


def test_doctor_when_all_is_well(
    model_env: dict[str, str], valkey: Any, openai_server: ScriptedOpenAI
) -> None:
    secret = "sk-doctor-Hq93kLmN"
    openai_server.api_key = secret  # the server takes this key, and lists test-model
    result = run({**model_env, "OPENAI_API_KEY": secret}, "doctor")
    rows = doctor_lines(ok(result))
    assert set(rows) == {
        "store", "eviction", "access", "keys", "model", "data", "config", "versions",
    }  # fmt: skip
    assert all(state == "ok" for state, _ in rows.values()), rows
    assert valkey.url in rows["store"][1]
    assert "test-model" in rows["model"][1] and "OPENAI_API_KEY set" in rows["model"][1]
    assert rows["model"][1].endswith("server reachable")
    assert [r.path for r in openai_server.records] == ["/v1/models"]  # no tokens spent
    assert "AAPL" in rows["data"][1] and "TSLA" in rows["data"][1]
    assert "user alice" in rows["config"][1]
    assert secret not in result.stdout + result.stderr and "Hq93" not in result.stdout


def test_doctor_fails_when_the_model_server_refuses_the_key(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    secret = "sk-wrong-Zx81QpRt"
    result = run({**model_env, "OPENAI_API_KEY": secret}, "doctor")
    assert result.returncode == 1, result.stdout
    rows = doctor_lines(result.stdout)
    assert rows["model"][0] == "FAIL" and "refused the API key" in rows["model"][1]
    assert secret not in result.stdout + result.stderr and "Zx81" not in result.stdout


def test_doctor_fails_when_the_model_server_is_unreachable(cli_env: dict[str, str]) -> None:
    env = {
        **cli_env,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "OPENAI_API_KEY": "k",
    }
    result = run(env, "doctor")
    assert result.returncode == 1, result.stdout
    rows = doctor_lines(result.stdout)
    assert rows["model"][0] == "FAIL" and "cannot reach the model server" in rows["model"][1]


def test_doctor_warns_when_the_server_does_not_serve_the_model(model_env: dict[str, str]) -> None:
    result = run({**model_env, "STOCK_AGENT_MODEL": "gpt-nonexistent"}, "doctor")
    rows = doctor_lines(ok(result))
    assert rows["model"][0] == "warn"
    assert "does not list 'gpt-nonexistent'" in rows["model"][1]


def test_doctor_without_a_model_warns_but_passes(cli_env: dict[str, str]) -> None:
    rows = doctor_lines(ok(run(cli_env, "doctor")))
    assert rows["model"][0] == "warn"
    assert "analyze" in rows["model"][1]


def test_doctor_fails_on_an_empty_data_dir(cli_env: dict[str, str], short_tmp: Path) -> None:
    empty = short_tmp / "no-data"
    empty.mkdir()
    result = run({**cli_env, "STOCK_AGENT_DATA_DIR": str(empty)}, "doctor")
    assert result.returncode == 1, result.stdout
    rows = doctor_lines(result.stdout)
    assert rows["data"][0] == "FAIL" and str(empty) in rows["data"][1]
    assert rows["store"][0] == "ok"


def test_doctor_fails_when_redis_is_unreachable(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "REDIS_URL": f"redis://:s3cret@127.0.0.1:{free_port()}/0"}
    result = run(env, "doctor")
    assert result.returncode != 0
    assert "FAIL" in result.stdout and "***" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_cached_analyze_json_imports_no_numpy_pandas_or_langchain(
    cli_env: dict[str, str],
) -> None:
    """The second `analyze AAPL MSFT --json` is answered from the cache: a fresh process that
    never loads the analysis stack (numpy, pandas) nor the model stack (LangChain)."""
    unwanted = ("numpy", "pandas", "langchain", "langchain_core", "langgraph")
    probe = (
        "import sys\n"
        "from stock_agent.cli import main\n"
        "code = main(['analyze', 'AAPL', 'MSFT', '--json'])\n"
        f"loaded = sorted(m for m in {unwanted!r} if m in sys.modules)\n"
        "print('EXIT', code, 'LOADED', ','.join(loaded), file=sys.stderr)\n"
    )

    def probed() -> tuple[str, list[str]]:
        result = subprocess.run(
            [sys.executable, "-c", probe],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(cli_env["STOCK_AGENT_HOME"]).parent,
        )
        symbols = [item["symbol"] for item in json.loads(result.stdout)]
        return result.stderr.splitlines()[-1], symbols

    first, symbols = probed()  # computes: fills the cache
    assert first == "EXIT 0 LOADED numpy,pandas", first
    assert symbols == ["AAPL", "MSFT"]
    second, symbols = probed()
    assert second == "EXIT 0 LOADED ", second
    assert symbols == ["AAPL", "MSFT"]
