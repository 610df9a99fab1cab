"""`stock-agent chat`: the terminal chat loop.

In a terminal: line editing, input history and Tab completion of slash commands
(prompt_toolkit), a "thinking ..." spinner until the model writes, the answer rendered as
Markdown while it streams, a status line while tools run, a dim label and a blank line around
each turn. Ctrl-C stops the current answer and keeps the chat; Ctrl-D or /exit leaves. On a
pipe: one message per line, plain answers, so it can be scripted.

The chat survives the store: Redis down, restarted, full, or a damaged key is one line, and
the chat goes on (the next turn works as soon as the server does; an embedded server that
stopped is started again). An answer whose save fails is kept and saved later; one still
unsaved at the end goes to the journal, and a piped chat then exits with `ExitStatus.STORE`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TextIO, TypeVar

from stock_agent.errors import (
    InvalidId,
    InvalidInput,
    ModelNotConfigured,
    ModelUnavailable,
    StockAgentError,
    StoreUnavailable,
)
from stock_agent.sanitize import strip_control, strip_control_line
from stock_agent.store.keys import validate_id
from stock_agent.ui.progress import stop_fetches_on_ctrl_c
from stock_agent.ui.text import plural

if TYPE_CHECKING:
    from types import FrameType

    from prompt_toolkit.completion import CompleteEvent, Completer, Completion
    from prompt_toolkit.document import Document
    from rich.console import Console

    from stock_agent.agent.agent import ChatAgent
    from stock_agent.agent.context import ConfirmChange
    from stock_agent.app import App
    from stock_agent.services.market import FetchEvent
    from stock_agent.services.profiles import ProfileUpdate
    from stock_agent.ui.stream import StreamRenderer

T = TypeVar("T")

HELP = """\
Slash commands:
  /help       this help
  /profile    your saved profile (the agent updates it when you state a preference)
  /history    the messages of this session
  /sessions   your live sessions (* marks this one)
  /new        start a new session
  /clear      forget this session's messages
  /resume ID  switch to the live session ID
  /retry      ask your last message again (after Ctrl-C, an error, or for another answer)
  /model [NAME]  the model, or switch to NAME for the rest of this chat
  /export [PATH]  write this session to PATH: Markdown, or JSON if it ends in .json
              (default session-ID.md)
  /chart SYMBOL [PATH]  draw SYMBOL's last year to a PNG (default chart-SYMBOL.png)
  /exit       leave (Ctrl-D works too)
Tab completes a command. Ctrl-C stops an answer and keeps the chat."""

# What Tab completes, in the order shown (aliases such as /quit still work, unlisted).
COMMANDS = (
    "/help", "/profile", "/history", "/sessions", "/new", "/clear", "/chart", "/retry",
    "/model", "/resume", "/export", "/exit",
)  # fmt: skip
ANSWER_LABEL = "stock-agent"  # the dim line above each answer in a terminal
# How a turn ended: answered (and saved), answered but not saved yet, stopped by Ctrl-C, failed.
Outcome = Literal["answered", "unsaved", "stopped", "failed"]


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
    model: str = ""  # the model of the next turn ("": the settings'); /model changes it
    last_sent: str | None = None  # the last message sent in this chat (/retry sends it again)
    # what the last turn used (tools, tokens, cost), for the end-of-turn line
    last_usage: str | None = None

    def __post_init__(self) -> None:
        self.model = self.model or self.app.settings.model

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


@contextmanager
def ctrl_c_stops_fetches() -> Iterator[None]:
    """`stop_fetches_on_ctrl_c` (one Ctrl-C also stops a running fetch), with its handler never
    run inside itself: a Ctrl-C that comes while the last one is being handled is dropped. The
    handler sets a `threading.Event`, whose lock is not reentrant, so a nested call waited for
    itself forever: two quick Ctrl-Cs froze the chat."""
    with stop_fetches_on_ctrl_c():
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        inner = signal.getsignal(signal.SIGINT)
        busy = False

        def one_at_a_time(signum: int, frame: FrameType | None) -> None:
            nonlocal busy
            if busy or not callable(inner):
                return
            busy = True
            try:
                inner(signum, frame)
            finally:
                busy = False

        signal.signal(signal.SIGINT, one_at_a_time)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, inner)


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


class CommandError(InvalidInput):
    """A slash command that cannot run as typed (a bad id, an unwritable path): one line, and
    nothing changed. On a pipe it goes to standard error and the chat goes on."""


@dataclass(frozen=True)
class SendAgain:
    """What /retry asks for: send `text` as the next message."""

    text: str


def slash_command(state: ChatState, line: str) -> bool | SendAgain:
    """Run a slash command: False when the chat should end, `SendAgain` for a message to send
    now (/retry), True otherwise."""
    from stock_agent.store.sessions import new_session_id
    from stock_agent.ui.text import format_messages, format_profile

    app = state.app
    command, *args = line.split(None, 1)
    command, rest = command.lower(), args[0].strip() if args else ""
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
        state.say(sessions_text(state))
    elif command == "/new":
        state.session_id = new_session_id()
        state.say(f"new session {state.session_id}")
    elif command == "/clear":
        app.sessions.clear(state.user_id, state.session_id)
        state.say(f"session {state.session_id} cleared")
    elif command == "/resume":
        state.say(resume(state, rest))
    elif command == "/retry":
        text = retry_text(state)
        if text is None:
            state.say("nothing to retry")
        else:
            return SendAgain(text)
    elif command == "/model":
        state.say(switch_model(state, rest))
    elif command == "/export":
        state.say(export_session(state, rest))
    elif command == "/chart":
        from stock_agent.ui.charts import chart_command

        state.say(chart_command(app, state.user_id, line))
    else:
        state.say(f"unknown command {command}; /help lists them")
    return True


def sessions_text(state: ChatState) -> str:
    """/sessions: the live sessions, this one starred; a session with no messages yet (just
    made by /new or /clear) is not in the index, so it gets a line of its own."""
    from stock_agent.ui.text import format_sessions

    sessions = state.app.sessions.list(state.user_id)
    current = state.session_id
    if any(s.session_id == current for s in sessions):
        text = format_sessions(state.user_id, sessions)
        return text.replace(f"\n{current} ", f"\n{current}*", 1)
    extra = f"{current}* (this session, no messages yet)"
    if not sessions:
        return f"Sessions of {state.user_id}, newest first\n{extra}"
    title, header, *rows = format_sessions(state.user_id, sessions).split("\n")
    return "\n".join([title, header, extra, *rows])  # the newest: it was made in this chat


def resume(state: ChatState, session_id: str) -> str:
    """/resume ID: switch to the live session ID (nothing changes if it is not one)."""
    if not session_id:
        raise CommandError("which session?", fix="usage: /resume ID; /sessions lists them")
    try:
        validate_id(session_id, "session id")
    except InvalidId as exc:
        raise CommandError(exc.message, fix=exc.fix) from None
    count = state.app.sessions.count_messages(state.user_id, session_id)
    if not count:
        return f"no live session {session_id}; /sessions lists them"
    state.session_id = session_id
    return f"resumed session {session_id} ({plural(count, 'message', 'messages')})"


def retry_text(state: ChatState) -> str | None:
    """/retry: the last message sent in this chat, else the session's last message from the
    user, else None."""
    if state.last_sent is not None:
        return state.last_sent
    for message in reversed(state.app.sessions.raw_messages(state.user_id, state.session_id)):
        if message.get("type") == "human":
            text = message_text(message).strip()
            if text:
                return text
    return None


def switch_model(state: ChatState, name: str) -> str:
    """/model [NAME]: the model of this chat, or NAME from the next message on (its agent is
    built then, so the prompt never waits for it)."""
    if not name:
        return f"model {state.model}"
    if len(name) > 200 or " " in name or strip_control_line(name) != name:
        raise CommandError(f"invalid model name {name[:80]!r}", fix="usage: /model NAME")
    state.model = name
    return f"model {name} for the rest of this chat"


def agent_for(app: App, model: str) -> ChatAgent:
    """The agent of `model` (built on first use, then kept by the App). A model that cannot be
    built is one error line with the fix."""
    try:
        return app.agent(model=model)
    except StockAgentError:
        raise
    except Exception as exc:  # e.g. init_chat_model's "unknown provider"
        fix = (
            "/model NAME picks another"
            if model != app.settings.model
            else "check STOCK_AGENT_MODEL or --model"
        )
        raise ModelUnavailable(f"cannot use model {model!r}: {exc}", fix=fix) from exc


# Stored message types as /export names them (the Markdown shows only "you" and the agent).
_EXPORT_ROLE = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_MARKDOWN_NAME = {"human": "you", "ai": "stock-agent"}


def message_text(message: dict[str, Any]) -> str:
    """A stored message's text (content blocks joined), as stored: not sanitized."""
    content = (message.get("data") or {}).get("content", "")
    if isinstance(content, list):
        return " ".join(
            str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in content
        ).strip()
    return str(content)


def session_export(
    user_id: str, session_id: str, messages: list[dict[str, Any]], *, json_format: bool
) -> str:
    """The text of /export: Markdown (a title, then each turn as "you" / "stock-agent"
    blocks; tool and system messages left out), or JSON with every message. The text is kept
    as stored: a file is not a terminal."""
    import datetime as dt
    import json

    if json_format:
        document = {
            "user_id": user_id,
            "session_id": session_id,
            "exported_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "messages": [
                {"role": _EXPORT_ROLE.get(str(m.get("type")), str(m.get("type"))), "content": t}
                for m in messages
                if (t := message_text(m))
            ],
        }
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    parts = [f"# stock-agent session {session_id}", f"User: {user_id}"]
    for m in messages:
        name = _MARKDOWN_NAME.get(str(m.get("type")))
        text = message_text(m).strip()
        if name and text:
            parts += [f"**{name}**", text]
    return "\n\n".join(parts) + "\n"


def export_session(state: ChatState, path_text: str) -> str:
    """/export [PATH]: write this session to PATH (default `session-ID.md`); the line to show."""
    messages = state.app.sessions.raw_messages(state.user_id, state.session_id)
    if not messages:
        return "nothing to export: this session has no messages yet"
    path = Path(path_text or f"session-{state.session_id}.md").expanduser()
    text = session_export(
        state.user_id,
        state.session_id,
        messages,
        json_format=path.suffix.lower() == ".json",
    )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    return f"exported {plural(len(messages), 'message', 'messages')} to {path.resolve()}"


def complete_slash(state: ChatState, before_cursor: str) -> tuple[str, list[str]]:
    """Tab completion: (the word being completed, its candidates). Commands when the line is
    one word starting with "/"; after `/resume `, the ids of the live sessions."""
    if not before_cursor.startswith("/"):
        return "", []
    command, space, rest = before_cursor.partition(" ")
    if not space:
        return command, [c for c in COMMANDS if c.startswith(command.lower())]
    if command.lower() != "/resume" or " " in rest:
        return rest, []
    try:
        ids = [s.session_id for s in state.app.sessions.list(state.user_id)]
    except Exception:  # the store does not answer: no candidates, no error under the prompt
        return rest, []
    return rest, [i for i in ids if i.startswith(rest)]


def ask(agent: ChatAgent, state: ChatState, text: str, renderer: StreamRenderer) -> str:
    """One turn; the answer is shown even when its save fails (`TurnNotSaved` is raised after)."""
    from stock_agent.store.turns import TurnNotSaved
    from stock_agent.ui.turn_usage import TurnUsageCollector

    revive_store(state)
    used = TurnUsageCollector()
    state.last_usage = None

    def on_fetch(event: FetchEvent) -> None:
        renderer.on_fetch(event)
        used.on_fetch(event)

    try:
        with renderer:
            answer = agent.ask(
                text,
                user_id=state.user_id,
                session_id=state.session_id,
                callbacks=[renderer, used],
                on_fetch=on_fetch,
                confirm=state.confirm,
                on_usage=used.on_usage,
            )
    except TurnNotSaved as exc:
        if not renderer.text.strip() and exc.answer:
            state.say(exc.answer)
        raise
    finally:
        state.last_usage = used.line()
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
    agent_for(state.app, state.model)  # the model stack loads before the first line is read
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                step = slash_command(state, line)
                if step is False:
                    return
                if not isinstance(step, SendAgain):
                    continue
                line = step.text
            state.last_sent = line
            with ctrl_c_stops_fetches():
                ask(agent_for(state.app, state.model), state, line, renderer)
            _end_of_turn(state, "answered")
        except CommandError as exc:
            state.warn(exc.one_line())
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
    from rich.text import Text

    from stock_agent.ui.console import make_console

    app = state.app
    console = make_console(highlight=False)

    def load() -> StreamRenderer:
        # The model stack (LangChain, the OpenAI client) takes a second or more to import: it
        # loads while the user types, and the first message waits for it.
        from stock_agent.ui.stream import StreamRenderer

        renderer = StreamRenderer(console)
        with contextlib.suppress(StockAgentError):  # said by the first message that uses it
            agent_for(app, app.settings.model)
        return renderer

    stack = InBackground(load)
    history: Any
    try:
        app.settings.home.mkdir(parents=True, exist_ok=True)
        history = FileHistory(str(app.settings.home / "chat_input_history"))
    except OSError:
        history = InMemoryHistory()
    # Tab completes; completing while typing would query the store on each key after /resume.
    prompt: PromptSession[str] = PromptSession(
        history=history, completer=_slash_completer(state), complete_while_typing=False
    )

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
        f"· model {state.model} · /help for commands, Ctrl-D to leave"
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
                step = slash_command(state, line)
            except Exception as exc:
                trouble = exc if isinstance(exc, StockAgentError) else store_trouble(state, exc)
                if trouble is None:
                    raise
                _print_line(console, store_line(state, trouble), "red")
                continue
            if step is False:
                break
            if not isinstance(step, SendAgain):
                continue
            line = step.text
            console.print(Text(f"asking again: {strip_control_line(line)}", style="dim"))
        _interactive_turn(state, console, stack, line)
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


def _interactive_turn(
    state: ChatState,
    console: Console,
    stack: InBackground[StreamRenderer],
    text: str,
) -> None:
    """One message in a terminal: the label, the answer (or one line saying why there is none),
    then the end of the turn."""
    from stock_agent.store.turns import TurnNotSaved

    state.last_sent = text
    label = ANSWER_LABEL
    if state.model != state.app.settings.model:
        label += f" · {state.model}"
    _print_line(console, label, "dim")
    outcome: Outcome = "failed"
    try:
        renderer = stack.result(console)
        agent = agent_for(state.app, state.model)  # after /model: built now, at its first message
        state.confirm = terminal_confirm(renderer, console)
        with ctrl_c_stops_fetches():
            ask(agent, state, text, renderer)
        outcome = "answered"
    except KeyboardInterrupt:
        outcome = "stopped"
    except Exception as exc:
        trouble = store_trouble(state, exc)
        if trouble is None and isinstance(exc, StockAgentError):
            trouble = exc  # the model's and the data's errors: one line too
        if trouble is None:
            raise
        unsaved = isinstance(trouble, TurnNotSaved)
        outcome = "unsaved" if unsaved else "failed"
        _print_line(console, store_line(state, trouble), "yellow" if unsaved else "red")
    _end_of_turn(state, outcome, console)


def _end_of_turn(state: ChatState, outcome: Outcome, console: Console | None = None) -> None:
    """What follows every turn, in one place. In a terminal: the dim line of what an answered
    turn used (tools, tokens, cost), or the notice of a stopped answer, then a blank line
    before the next prompt. On a pipe (no
    console): nothing, so stdout keeps exactly the answers."""
    if console is None:
        return
    from stock_agent.ui.stream import ctrl_c_held

    with ctrl_c_held():  # a second Ctrl-C now has nothing left to stop
        if outcome == "stopped":
            console.print("[dim](stopped; this exchange was not saved)[/]")
        elif state.last_usage:
            _print_line(console, state.last_usage, "dim")
        console.print()


def _slash_completer(state: ChatState) -> Completer:
    """`complete_slash` as a prompt_toolkit completer."""
    from prompt_toolkit.completion import Completer, Completion

    class SlashCompleter(Completer):
        def get_completions(
            self, document: Document, complete_event: CompleteEvent
        ) -> Iterator[Completion]:
            word, candidates = complete_slash(state, document.text_before_cursor)
            for candidate in candidates:
                yield Completion(candidate, start_position=-len(word))

    return SlashCompleter()


def _print_line(console: Console, line: str, style: str) -> None:
    """One line of text (never markup: it may quote a server's reply), in `style`."""
    from rich.text import Text

    console.print(Text(strip_control_line(line), style=style))
