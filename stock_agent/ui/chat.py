"""`stock-agent chat`: the terminal chat loop.

In a terminal: line editing and input history (prompt_toolkit), the answer rendered as
Markdown while it streams, a status line while tools run, slash commands. Ctrl-C stops the
current answer and keeps the chat; Ctrl-D or /exit leaves. On a pipe: one message per line,
plain answers, so it can be scripted.

The chat survives the store: Redis down, restarted, full, or a damaged key is one line, and
the chat goes on (the next turn works as soon as the server does; an embedded server that
stopped is started again). An answer whose save fails is kept and saved later; one still
unsaved at the end goes to the journal, and a piped chat then exits with `ExitStatus.STORE`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TextIO, TypeVar

from stock_agent.errors import ModelNotConfigured, StockAgentError, StoreUnavailable
from stock_agent.sanitize import strip_control, strip_control_line
from stock_agent.store.keys import validate_id
from stock_agent.ui.progress import stop_fetches_on_ctrl_c
from stock_agent.ui.text import plural

if TYPE_CHECKING:
    from rich.console import Console

    from stock_agent.agent.agent import ChatAgent
    from stock_agent.agent.context import ConfirmChange
    from stock_agent.app import App
    from stock_agent.services.profiles import ProfileUpdate
    from stock_agent.ui.stream import StreamRenderer

T = TypeVar("T")

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
    # asked before a profile change the model proposes is saved (None: such changes are refused)
    confirm: ConfirmChange | None = None
    err: TextIO = field(default_factory=lambda: sys.stderr)
    store_down: bool = False  # the last store failure was "does not answer"
    unanswered: int = 0  # messages the store kept from being answered (a piped chat exits 3)

    def say(self, text: str) -> None:
        self.out.write(strip_control(text) + "\n")
        self.out.flush()

    def warn(self, text: str) -> None:
        """One line about the store (on a pipe: standard error, so stdout keeps the answers)."""
        self.err.write(strip_control_line(text) + "\n")
        self.err.flush()


def store_trouble(state: ChatState, exc: BaseException) -> StockAgentError | None:
    """`exc` as a store error with its fix, or None when it is not the store's. Marks the
    store as down when it did not answer."""
    from stock_agent.store.turns import TurnNotSaved

    if isinstance(exc, TurnNotSaved):
        state.store_down = exc.failure.unreachable
        return exc
    if isinstance(exc, StockAgentError):
        if isinstance(exc, StoreUnavailable) or exc.exit_code == StoreUnavailable.exit_code:
            state.store_down = type(exc) is StoreUnavailable
            return exc
        return None
    redis = sys.modules.get("redis")
    if redis is None or not isinstance(exc, redis.RedisError):
        return None
    failure = state.app.turns.explain(exc, state.user_id, state.session_id)
    state.store_down = failure.unreachable
    return failure.error


def store_line(state: ChatState, error: StockAgentError) -> str:
    """The line for a store failure; it says when earlier answers wait to be saved."""
    from stock_agent.store.turns import TurnNotSaved

    line = error.one_line()
    kept = state.app.turns.kept if "turns" in state.app.__dict__ else 0
    if kept and not isinstance(error, TurnNotSaved):
        line += f"; {kept} answer{'s' if kept != 1 else ''} kept, saved once it is back"
    return line


def revive_store(state: ChatState) -> None:
    """Before a turn after the store did not answer: an embedded server that stopped is started
    again (one per data folder, never a second); REDIS_URL's server comes back on its own."""
    if state.store_down and state.app.settings.embedded:
        from stock_agent.store import embedded

        embedded.ensure_running(state.app.settings.home)


def finish_turns(state: ChatState) -> int:
    """At the end of a chat: answers still unsaved go to the journal; how many did."""
    if "turns" not in state.app.__dict__:
        return 0
    return state.app.turns.finish()


class InBackground(Generic[T]):
    """Run `build` in a daemon thread; `result()` waits for it (showing a status line when it
    is not ready yet) and raises what it raised. Nothing typed meanwhile is lost."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="load-model-stack", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._build()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc
        finally:
            self._done.set()

    def result(self, console: Console | None = None) -> T:
        if not self._thread.is_alive() and not self._done.is_set():
            self._thread.start()
        if not self._done.is_set() and console is not None:
            with console.status("loading the model ...", spinner="dots"):
                self._done.wait()
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def terminal_confirm(renderer: StreamRenderer, console: Console) -> ConfirmChange:
    """Show a proposed profile change and ask y/N on the terminal (the answer's live display
    pauses meanwhile). Anything but yes keeps the profile as it is."""

    def confirm(change: ProfileUpdate) -> bool:
        from rich.text import Text

        with renderer.paused():
            console.print(Text("The agent wants to change your profile:", style="bold"))
            for line in change.describe():
                console.print(Text(f"  {strip_control_line(line)}"))
            try:
                answer = console.input(Text("Save this change? [y/N] ", style="bold"))
            except (EOFError, KeyboardInterrupt):
                answer = ""
        return answer.strip().lower() in ("y", "yes")

    return confirm


def announced_confirm(state: ChatState) -> ConfirmChange:
    """`--allow-profile-writes` on a pipe: no one to ask, so say what is saved, and save it."""

    def confirm(change: ProfileUpdate) -> bool:
        state.say("profile change: " + "; ".join(change.describe()))
        return True

    return confirm


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
    """One turn; the answer is shown even when its save fails (`TurnNotSaved` is raised after)."""
    from stock_agent.store.turns import TurnNotSaved

    revive_store(state)
    try:
        with renderer:
            answer = agent.ask(
                text,
                user_id=state.user_id,
                session_id=state.session_id,
                callbacks=[renderer],
                on_fetch=renderer.on_fetch,
                confirm=state.confirm,
            )
    except TurnNotSaved as exc:
        if not renderer.text.strip() and exc.answer:
            state.say(exc.answer)
        raise
    state.store_down = False
    if not renderer.text.strip() and answer:
        state.say(answer)
    return answer


def run_chat(
    app: App,
    user_id: str,
    *,
    session_id: str | None = None,
    new: bool = False,
    allow_profile_writes: bool = False,
) -> None:
    if not app.settings.model_configured and ":" not in app.settings.model:
        raise ModelNotConfigured()
    session, resumed = choose_session(app, user_id, session_id, new)
    state = ChatState(app, user_id, session)
    if sys.stdin.isatty():
        _interactive(state, resumed)
    else:
        if allow_profile_writes:
            state.confirm = announced_confirm(state)
        _piped(state)


def _piped(state: ChatState) -> None:
    from stock_agent.store.turns import TurnsJournaled

    _piped_lines(state)
    journaled = finish_turns(state)
    turns = state.app.turns if journaled else None
    if turns is not None:
        reason = turns.last_failure.summary if turns.last_failure else None
        raise TurnsJournaled(journaled, turns.journal.path, reason)
    if state.unanswered:
        n = state.unanswered
        raise StoreUnavailable(
            f"{n} message{'s' if n != 1 else ''} not answered: the store failed",
            fix="see the lines above; send them again once it works",
        )


def _piped_lines(state: ChatState) -> None:
    """Each line a message or a slash command; a store failure is one line on stderr, and the
    chat goes on with the next line."""
    from stock_agent.store.turns import TurnNotSaved
    from stock_agent.ui.stream import StreamRenderer

    renderer = StreamRenderer(None, plain=True, out=state.out)
    agent = state.app.agent()
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not slash_command(state, line):
                    return
                continue
            with stop_fetches_on_ctrl_c():  # one Ctrl-C also stops a running fetch
                ask(agent, state, line, renderer)
        except Exception as exc:
            trouble = store_trouble(state, exc)
            if trouble is None:
                raise
            if not isinstance(trouble, TurnNotSaved) and not line.startswith("/"):
                state.unanswered += 1
            state.warn(store_line(state, trouble))


def _interactive(state: ChatState, resumed: bool) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    from stock_agent.store.turns import TurnNotSaved
    from stock_agent.ui.console import make_console

    app = state.app
    console = make_console(highlight=False)

    def load() -> tuple[ChatAgent, StreamRenderer]:
        # The model stack (LangChain, the OpenAI client) takes a second or more to import: it
        # loads while the user types, and the first message waits for it.
        from stock_agent.ui.stream import StreamRenderer

        return app.agent(), StreamRenderer(console)

    stack = InBackground(load)
    history: Any
    try:
        app.settings.home.mkdir(parents=True, exist_ok=True)
        history = FileHistory(str(app.settings.home / "chat_input_history"))
    except OSError:
        history = InMemoryHistory()
    prompt: PromptSession[str] = PromptSession(history=history)

    how = "new"
    if resumed:
        try:
            count = app.sessions.count_messages(state.user_id, state.session_id)
            how = f"resumed ({plural(count, 'message', 'messages')})" if count else "new"
        except Exception as exc:  # e.g. a damaged key: say so, and keep the chat (/new works)
            trouble = store_trouble(state, exc)
            if trouble is None:
                raise
            how = "resumed"
            _print_line(console, store_line(state, trouble), "red")
    console.print(
        f"[bold]stock-agent[/] · user [cyan]{state.user_id}[/] · session [cyan]{state.session_id}[/] {how} "
        f"· model {app.settings.model} · /help for commands, Ctrl-D to leave"
    )
    stack.start()  # after the banner: the prompt appears at once, the stack loads meanwhile
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
            except Exception as exc:
                trouble = exc if isinstance(exc, StockAgentError) else store_trouble(state, exc)
                if trouble is None:
                    raise
                _print_line(console, store_line(state, trouble), "red")
            continue
        try:
            agent, renderer = stack.result(console)
            state.confirm = terminal_confirm(renderer, console)
            with stop_fetches_on_ctrl_c():  # one Ctrl-C also stops a running fetch
                ask(agent, state, line, renderer)
        except KeyboardInterrupt:
            console.print("[dim](stopped; this exchange was not saved)[/]")
        except Exception as exc:
            trouble = store_trouble(state, exc)
            if trouble is None and isinstance(exc, StockAgentError):
                trouble = exc  # the model's and the data's errors: one line too
            if trouble is None:
                raise
            style = "yellow" if isinstance(trouble, TurnNotSaved) else "red"
            _print_line(console, store_line(state, trouble), style)
    journaled = finish_turns(state)
    if journaled:
        path = app.turns.journal.path
        _print_line(
            console,
            f"{journaled} unsaved answer{'s' if journaled != 1 else ''} kept in the journal "
            f"{path}; the next stock-agent command that reaches Redis saves them",
            "yellow",
        )
    console.print("bye")


def _print_line(console: Console, line: str, style: str) -> None:
    """One line of text (never markup: it may quote a server's reply), in `style`."""
    from rich.text import Text

    console.print(Text(strip_control_line(line), style=style))
