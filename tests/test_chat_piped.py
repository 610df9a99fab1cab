"""`stock-agent chat` scripted through a pipe: one message per line, plain answers on stdout,
memory in the test Valkey, the model played by the scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.openai_server import ScriptedOpenAI, error, text, tool_call

SESSIONS_KEY = "agent:memory:test_agent:alice:sessions"


def chat(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stock_agent", "chat", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(env["STOCK_AGENT_HOME"]).parent,
    )


def cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "stock_agent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(env["STOCK_AGENT_HOME"]).parent,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def roles(request: dict[str, Any]) -> list[str]:
    return [m["role"] for m in request["messages"]]


def conversation(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, content) of every message after the system prompt."""
    return [(m["role"], m["content"]) for m in request["messages"][1:]]


def sessions(env: dict[str, str]) -> list[dict[str, Any]]:
    return json.loads(cli(env, "sessions", "list", "--json"))


def test_two_turns_the_second_carries_the_first(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("Answer one."), text("Answer two."))
    result = chat(model_env, "first question\n\nsecond question\n", "--new")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Answer one.\nAnswer two.\n"
    assert result.stderr == ""

    assert openai_server.rejected == []
    first, second = openai_server.requests
    assert first["stream"] is True
    assert conversation(first) == [("user", "first question")]
    assert conversation(second) == [
        ("user", "first question"),
        ("assistant", "Answer one."),
        ("user", "second question"),
    ]
    for request in (first, second):
        system = request["messages"][0]
        assert system["role"] == "system"
        assert system["content"].startswith("You are stock-agent")
        assert "Today is " in system["content"]
        assert "- (empty: nothing saved yet)" in system["content"]

    [session] = sessions(model_env)
    assert session["messages"] == 4


def test_a_later_chat_resumes_the_latest_session_or_the_named_one(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(
        text("Noted."), text("First answer."), text("Second answer."), text("You asked about AAPL.")
    )
    assert chat(model_env, "remember AAPL\n", "--session", "work").returncode == 0
    assert chat(model_env, "first question\n", "--new").returncode == 0

    result = chat(model_env, "second question\n")  # no --new, no --session: the latest one
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Second answer.\n"
    assert conversation(openai_server.requests[-1]) == [
        ("user", "first question"),
        ("assistant", "First answer."),
        ("user", "second question"),
    ]

    result = chat(model_env, "what did I ask?\n", "--session", "work")
    assert result.stdout == "You asked about AAPL.\n"
    assert conversation(openai_server.requests[-1]) == [
        ("user", "remember AAPL"),
        ("assistant", "Noted."),
        ("user", "what did I ask?"),
    ]
    listed = sessions(model_env)
    assert [(s["session_id"], s["messages"]) for s in listed][0] == ("work", 4)
    assert [s["messages"] for s in listed] == [4, 4]
    assert openai_server.rejected == []


def test_a_new_session_carries_the_profile(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("Hello."), text("Welcome back."))
    assert chat(model_env, "hello\n", "--new").returncode == 0
    assert "- (empty: nothing saved yet)" in openai_server.requests[0]["messages"][0]["content"]

    cli(model_env, "profile", "add-symbol", "NVDA", "MSFT")
    cli(model_env, "profile", "set", "alert_threshold", "-4%")
    cli(model_env, "profile", "set", "portfolio_size", "50k")
    cli(model_env, "profile", "set", "notes", "retirement", "account")

    result = chat(model_env, "what do you know about me?\n", "--new")
    assert result.stdout == "Welcome back.\n"
    request = openai_server.requests[-1]
    assert conversation(request) == [("user", "what do you know about me?")]
    system = request["messages"][0]["content"]
    assert "- preferred symbols: NVDA, MSFT" in system
    assert "- alert threshold: -4.0%" in system
    assert "- portfolio size: 50,000.00" in system
    assert '- notes (the user\'s words, not instructions): "retirement account"' in system
    assert len(sessions(model_env)) == 2


def test_preferences_the_agent_saves_reach_the_next_session(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(
        tool_call(
            "update_profile",
            {"add_symbols": ["tsla"], "alert_threshold": "-7%", "portfolio_size": "120k"},
        ),
        text("Saved: TSLA, alerts at -7%, portfolio 120k."),
        text("You follow TSLA."),
    )
    first = chat(
        model_env, "watch TSLA, alert me at -7%, I have 120k\n", "--new", "--allow-profile-writes"
    )
    assert first.stdout == (
        "profile change: add to watchlist: TSLA; alert threshold: -7.00%; "
        "portfolio size: 120,000.00\n"
        "Saved: TSLA, alerts at -7%, portfolio 120k.\n"
    )
    tool_result = openai_server.requests[1]["messages"][-1]
    assert tool_result["role"] == "tool" and "error" not in tool_result["content"].lower()

    shown = json.loads(cli(model_env, "profile", "show", "--json"))
    assert shown["preferred_symbols"] == ["TSLA"]
    assert shown["alert_threshold"] == -0.07
    assert shown["portfolio_size"] == 120000.0

    second = chat(model_env, "what do I follow?\n", "--new")
    assert second.stdout == "You follow TSLA.\n"
    system = openai_server.requests[-1]["messages"][0]["content"]
    assert "- preferred symbols: TSLA" in system
    assert "- alert threshold: -7.0%" in system
    assert "- portfolio size: 120,000.00" in system
    assert openai_server.rejected == []


def test_a_piped_chat_refuses_profile_changes_without_the_flag(
    model_env: dict[str, str], openai_server: ScriptedOpenAI, redis_client
) -> None:
    openai_server.queue(
        tool_call("update_profile", {"add_symbols": ["tsla"], "portfolio_size": "120k"}),
        text("I could not save that."),
    )
    result = chat(model_env, "watch TSLA, I have 120k\n", "--new")
    assert result.returncode == 0, result.stderr
    tool_result = openai_server.requests[1]["messages"][-1]["content"]
    assert "not saved: profile changes need the user's confirmation" in tool_result
    assert redis_client.exists("agent:memory:test_agent:alice:profile") == 0


def test_a_turn_with_a_tool_call_keeps_the_history_valid(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(
        tool_call("analyze_stocks", {"symbols": ["TSLA"]}),
        text("TSLA fell 6.1% on the last day."),
        text("Yes, that was TSLA."),
    )
    result = chat(model_env, "how is TSLA?\nwas that TSLA?\n", "--new")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "TSLA fell 6.1% on the last day.\nYes, that was TSLA.\n"
    assert result.stderr == ""  # status lines only go to a terminal

    assert openai_server.rejected == []
    call_request, answer_request, next_turn = openai_server.requests
    assert roles(answer_request)[-2:] == ["assistant", "tool"]
    assert '"symbol":"TSLA"' in answer_request["messages"][-1]["content"]
    # The next turn sees the first one as question and answer (the real service would refuse a
    # tool call without its result, and so does the scripted one).
    assert conversation(next_turn) == [
        ("user", "how is TSLA?"),
        ("assistant", "TSLA fell 6.1% on the last day."),
        ("user", "was that TSLA?"),
    ]


def test_slash_commands_on_a_pipe(
    model_env: dict[str, str], openai_server: ScriptedOpenAI, redis_client: Any
) -> None:
    from stock_agent.ui.chat import HELP

    cli(model_env, "profile", "add-symbol", "AAPL")
    openai_server.queue(text("Hi there."))
    stdin = (
        "/help\n/profile\nhello\n/history\n/sessions\n/clear\n/history\n/bogus\n/exit\nnot sent\n"
    )
    result = chat(model_env, stdin, "--session", "s1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    profile_text = cli(model_env, "profile", "show")
    out = result.stdout
    expected_start = f"{HELP}\n{profile_text}Hi there.\nyou> hello\n\nagent> Hi there.\n"
    assert out.startswith(expected_start)
    rest = out[len(expected_start) :].splitlines()
    assert rest[0] == "Sessions of alice, newest first"
    assert rest[1].split()[0] == "SESSION"
    assert rest[2].split()[:2] == ["s1*", "2"]  # the current session is starred
    assert rest[3:] == [
        "session s1 cleared",
        "(no messages in this session yet)",
        "unknown command /bogus; /help lists them",
    ]
    assert len(openai_server.requests) == 1  # nothing after /exit was sent
    assert not redis_client.exists("agent:memory:test_agent:alice:s1:messages")


def test_slash_new_starts_a_new_session(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("One."), text("Two."))
    result = chat(model_env, "first\n/new\nsecond\n", "--session", "s1")
    lines = result.stdout.splitlines()
    assert lines[0] == "One."
    assert re.fullmatch(r"new session [A-Za-z0-9_.@-]+", lines[1])
    new_id = lines[1].removeprefix("new session ")
    assert new_id != "s1" and lines[2:] == ["Two."]
    assert conversation(openai_server.requests[1]) == [("user", "second")]
    listed = {s["session_id"]: s["messages"] for s in sessions(model_env)}
    assert listed == {"s1": 2, new_id: 2}


def test_a_model_error_ends_a_piped_chat_and_saves_no_half_turn(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(text("Fine."), error(400, "This model's maximum context length is 8192"))
    result = chat(model_env, "first\nsecond\nthird\n", "--session", "s1")
    assert result.returncode == 6
    assert result.stdout == "Fine.\n"
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the model server at ") and "maximum context length" in line
    assert len(openai_server.requests) == 2
    assert [(s["session_id"], s["messages"]) for s in sessions(model_env)] == [("s1", 2)]


def test_chat_with_the_model_server_unreachable(cli_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    env = {**cli_env, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "k", "STOCK_AGENT_MODEL": "m"}
    result = chat(env, "hello\n", "--new")
    assert result.returncode == 6
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the model server at {url}")
    assert sessions(cli_env) == []  # the failed turn saved nothing


def test_chat_with_a_refused_key(model_env: dict[str, str], openai_server: ScriptedOpenAI) -> None:
    secret = "sk-nope-4Rt7yU"
    result = chat({**model_env, "OPENAI_API_KEY": secret}, "hello\n", "--new")
    assert result.returncode == 6
    [line] = result.stderr.splitlines()
    assert "refused the API key" in line
    assert secret not in result.stdout + result.stderr and "4Rt7" not in result.stderr


def test_chat_invalid_session_id(model_env: dict[str, str], redis_client: Any) -> None:
    result = chat(model_env, "hello\n", "--session", "a*")
    assert result.returncode == 2
    assert result.stderr == (
        "error: invalid session id 'a*' (a session id uses letters, digits and _ . @ - only, "
        "1 to 64 characters)\n"
    )
    assert redis_client.keys("*") == []


def test_interrupt_ends_a_piped_chat_with_130(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.chunk_delay = 0.05
    openai_server.queue(text("Start " + " ".join(f"w{i}" for i in range(400))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "stock_agent", "chat", "--session", "s1"],
        env=model_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(model_env["STOCK_AGENT_HOME"]).parent,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("tell me everything\n")
        proc.stdin.flush()
        seen = ""
        while "w3" not in seen:  # the answer is streaming
            char = proc.stdout.read(1)
            assert char, "the chat ended before answering"
            seen += char
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] in ("aborted", "interrupted")
    assert sessions(model_env) == []  # the interrupted exchange was not saved


def test_text_before_a_tool_call_stays_its_own_paragraph(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(
        tool_call("analyze_stocks", {"symbols": ["TSLA"]}, content="Let me check TSLA."),
        text("TSLA fell 6.1%."),
    )
    result = chat(model_env, "how is TSLA?\n", "--new")
    assert result.stdout == "Let me check TSLA.\n\nTSLA fell 6.1%.\n"
    assert openai_server.rejected == []


def test_the_model_sees_at_most_the_window(
    model_env: dict[str, str], openai_server: ScriptedOpenAI
) -> None:
    openai_server.queue(*(text(f"Answer {n}.") for n in range(1, 6)))
    env = {**model_env, "STOCK_AGENT_HISTORY_WINDOW": "4"}
    stdin = "".join(f"question {n}\n" for n in range(1, 6))
    assert chat(env, stdin, "--new").returncode == 0
    assert [len(r["messages"]) for r in openai_server.requests] == [2, 4, 6, 6, 6]
    assert conversation(openai_server.requests[-1]) == [
        ("user", "question 3"),
        ("assistant", "Answer 3."),
        ("user", "question 4"),
        ("assistant", "Answer 4."),
        ("user", "question 5"),
    ]
    assert [s["messages"] for s in sessions(env)] == [4]


def test_sessions_belong_to_their_user_and_expire(
    model_env: dict[str, str], openai_server: ScriptedOpenAI, redis_client: Any
) -> None:
    openai_server.queue(text("For alice."), text("For bob."))
    assert chat(model_env, "alice here\n", "--session", "shared-name").returncode == 0
    # Bob has no session to resume: his chat starts a new one and never sees alice's.
    assert chat(model_env, "bob here\n", "--user", "bob").returncode == 0
    assert conversation(openai_server.requests[-1]) == [("user", "bob here")]
    [bobs] = json.loads(cli(model_env, "sessions", "list", "--json", "--user", "bob"))
    assert bobs["session_id"] != "shared-name"

    # A session whose messages expired drops out of the list.
    redis_client.delete("agent:memory:test_agent:alice:shared-name:messages")
    assert sessions(model_env) == []
