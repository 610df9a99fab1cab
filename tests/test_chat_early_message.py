"""A message typed before the model stack has loaded waits for it and is not lost (issue 11):
the chat's prompt comes first, the stack loads in the background. Here its load is held
until the test opens a gate (a sitecustomize in the chat's process wraps the agent build), so
the message is certainly sent before the stack is ready."""

from __future__ import annotations

import os
from pathlib import Path

from tests.openai_server import ScriptedOpenAI, text
from tests.test_chat_pty import Chat

SITECUSTOMIZE = """
import os, time
import stock_agent.app as app_module

_build = app_module.App._build_agent

def _held(self, *args, **kwargs):
    gate = os.environ["CHAT_TEST_GATE"]
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _build(self, *args, **kwargs)

app_module.App._build_agent = _held
"""


def test_a_message_sent_before_the_stack_is_ready_waits_and_is_answered(
    pty_env: dict[str, str], openai_server: ScriptedOpenAI, short_tmp: Path
) -> None:
    hook = short_tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    gate = short_tmp / "gate"
    env = {
        **pty_env,
        "CHAT_TEST_GATE": str(gate),
        "PYTHONPATH": os.pathsep.join([str(hook), *filter(None, [pty_env.get("PYTHONPATH")])]),
    }
    openai_server.queue(text("Here is your answer."))
    chat = Chat(env, "--new")
    try:
        chat.prompt()
        chat.say("a question typed at once")
        chat.expect_exact("loading the model")  # it waits, and says so
        assert openai_server.requests == []  # the stack is still held: nothing could be sent
        gate.touch()
        chat.expect_exact("Here is your answer.")
        chat.prompt()
        assert chat.leave_with_ctrl_d() == 0
    finally:
        chat.kill()
    [request] = openai_server.requests
    assert request["messages"][-1] == {"role": "user", "content": "a question typed at once"}
