"""`stock-agent chat`: the terminal chat loop.

In a terminal: line editing and input history (prompt_toolkit), the answer rendered as
Markdown while it streams, a status line while tools run, slash commands. Ctrl-C stops the
current answer and keeps the chat; Ctrl-D or /exit leaves. On a pipe: one message per line,
plain answers, so it can be scripted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from stock_agent.errors import ModelNotConfigured, StockAgentError
from stock_agent.store.keys import validate_id

if TYPE_CHECKING:
    from stock_agent.agent.agent import ChatAgent
    from stock_agent.app import App
    from stock_agent.ui.stream import StreamRenderer

HELP = """\
Slash commands:
  /help       this help
  /profile    your saved profile (the agent updates it when you state a preference)
  /history    the messages of this session
  /sessions   your live sessions
  /new        start a new session
  /clear      forget this session's messages
  /chart SYMBOL [PATH]  draw SYMBOL's last year to a PNG (default chart-SYMBOL.png)
  /exit       leave (Ctrl-D works too)
Ctrl-C stops an answer and keeps the chat."""


@dataclass
class ChatState:
    app: App
    user_id: str
    session_id: str
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def choose_session(app: App, user_id: str, session_id: str | None, new: bool) -> tuple[str, bool]:
    """(session id, resumed?). Without --session: the latest live session, else a new one."""
    from stock_agent.store.sessions import new_session_id

    if session_id is not None:
        return validate_id(session_id, "session id"), True
    if not new:
        latest = app.sessions.latest(user_id)
        if latest:
            return latest, True
    return new_session_id(), False


def slash_command(state: ChatState, line: str) -> bool:
    """Run a slash command; return False when the chat should end."""
    from stock_agent.store.sessions import new_session_id
    from stock_agent.ui.text import format_messages, format_profile, format_sessions

    app = state.app
    command = line.split()[0].lower()
    if command in ("/exit", "/quit", "/q"):
        return False
    if command in ("/help", "/?"):
        state.say(HELP)
    elif command == "/profile":
        state.say(format_profile(state.user_id, app.profiles.get(state.user_id)))
    elif command == "/history":
        messages = app.sessions.raw_messages(state.user_id, state.session_id)
        state.say(format_messages(messages) if messages else "(no messages in this session yet)")
    elif command == "/sessions":
        sessions = app.sessions.list(state.user_id)
        text = format_sessions(state.user_id, sessions)
        state.say(
            text.replace(f"\n{state.session_id} ", f"\n{state.session_id}*", 1)
            if sessions
            else text
        )
    elif command == "/new":
        state.session_id = new_session_id()
        state.say(f"new session {state.session_id}")
    elif command == "/clear":
        app.sessions.clear(state.user_id, state.session_id)
        state.say(f"session {state.session_id} cleared")
    elif command == "/chart":
        from stock_agent.ui.charts import chart_command

        state.say(chart_command(app, state.user_id, line))
    else:
        state.say(f"unknown command {command}; /help lists them")
    return True


def ask(agent: ChatAgent, state: ChatState, text: str, renderer: StreamRenderer) -> str:
    with renderer:
        answer = agent.ask(
            text,
            user_id=state.user_id,
            session_id=state.session_id,
            callbacks=[renderer],
            on_fetch=renderer.on_fetch,
        )
    if not renderer.text.strip() and answer:
        state.say(answer)
    return answer


def run_chat(app: App, user_id: str, *, session_id: str | None = None, new: bool = False) -> None:
    if not app.settings.model_configured and ":" not in app.settings.model:
        raise ModelNotConfigured()
    session, resumed = choose_session(app, user_id, session_id, new)
    state = ChatState(app, user_id, session)
    if sys.stdin.isatty():
        _interactive(state, resumed)
    else:
        _piped(state)


def _piped(state: ChatState) -> None:
    from stock_agent.ui.stream import StreamRenderer

    renderer = StreamRenderer(None, plain=True, out=state.out)
    agent = state.app.agent()
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not slash_command(state, line):
                return
            continue
        ask(agent, state, line, renderer)


def _interactive(state: ChatState, resumed: bool) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    from rich.console import Console

    from stock_agent.ui.stream import StreamRenderer

    app = state.app
    console = Console(highlight=False)
    renderer = StreamRenderer(console)
    agent = app.agent()
    history: Any
    try:
        app.settings.home.mkdir(parents=True, exist_ok=True)
        history = FileHistory(str(app.settings.home / "chat_input_history"))
    except OSError:
        history = InMemoryHistory()
    prompt: PromptSession[str] = PromptSession(history=history)

    how = "new"
    if resumed:
        count = app.sessions.count_messages(state.user_id, state.session_id)
        how = f"resumed ({count} messages)" if count else "new"
    console.print(
        f"[bold]stock-agent[/] · user [cyan]{state.user_id}[/] · session [cyan]{state.session_id}[/] {how} "
        f"· model {app.settings.model} · /help for commands, Ctrl-D to leave"
    )
    while True:
        try:
            line = prompt.prompt("you> ").strip()
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            break
        if not line:
            continue
        if line.startswith("/"):
            try:
                if not slash_command(state, line):
                    break
            except StockAgentError as exc:
                console.print(f"[red]{exc.one_line()}[/]")
            continue
        try:
            ask(agent, state, line, renderer)
        except KeyboardInterrupt:
            console.print("[dim](stopped; this exchange was not saved)[/]")
        except StockAgentError as exc:
            console.print(f"[red]{exc.one_line()}[/]")
    console.print("bye")
