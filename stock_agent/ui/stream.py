"""Show an answer while it streams: Markdown that re-renders as tokens arrive, a "thinking ..."
spinner until the model's first token (and again after each tool), and a status line while
tools run (which tool, which symbol, cached or fetched). On a pipe, plain text only."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from langchain_core.callbacks import BaseCallbackHandler

from stock_agent.sanitize import split_incomplete, strip_control

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.spinner import Spinner

    from stock_agent.services.market import FetchEvent

THINKING = "thinking ..."


def describe_tool_call(name: str, args: dict[str, Any]) -> str:
    symbols = args.get("symbols") or ([args["symbol"]] if args.get("symbol") else [])
    what = ", ".join(str(s).upper() for s in symbols)
    return f"{name}({what})" if what else name


@contextmanager
def ctrl_c_held() -> Iterator[list[int]]:
    """Within the block Ctrl-C is held back (the list gets one entry per Ctrl-C), so a frame the
    main thread writes is never cut: a KeyboardInterrupt in the middle of rich's write leaves
    its buffer full, and the next print writes the whole frame again (a stopped answer showed
    twice). Outside the main thread, where no signal handler runs, it changes nothing."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _local_modes(*, set_: str = "", clear: str = "") -> Iterator[None]:
    """Standard input's terminal with the local modes named in `set_` set and those in `clear`
    cleared (termios names, e.g. "ECHO") within the block, then as it was. Off a terminal
    (a pipe, a captured stream, no termios) it changes nothing."""
    saved: list[Any] | None = None
    try:
        import termios

        fd = sys.stdin.fileno()
        if os.isatty(fd):
            saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError, AttributeError):
        pass
    if saved is None:
        yield
        return
    changed = list(saved)
    for name in set_.split():
        changed[3] |= getattr(termios, name)
    for name in clear.split():
        changed[3] &= ~getattr(termios, name)
    termios.tcsetattr(fd, termios.TCSANOW, changed)  # not TCSAFLUSH: keep what was typed
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            termios.tcsetattr(fd, termios.TCSANOW, saved)


def keys_not_echoed() -> contextlib.AbstractContextManager[None]:
    """While a live display is drawn: typed keys are not echoed (an echoed `^C`, or text typed
    ahead, moves the cursor under the display; its last redraw then starts a line too low and
    leaves a copy of the answer's first lines above it). Nothing typed is lost: the next prompt
    reads it. Ctrl-C still interrupts."""
    return _local_modes(clear="ECHO")


def keys_echoed() -> contextlib.AbstractContextManager[None]:
    """Echo again meanwhile (to ask the user something in the middle of an answer)."""
    return _local_modes(set_="ECHO")


class StreamRenderer(BaseCallbackHandler):
    """A LangChain callback handler that renders one turn. Use as a context manager per turn."""

    raise_error = False

    def __init__(
        self, console: Console | None = None, *, plain: bool = False, out: TextIO | None = None
    ) -> None:
        self.plain = plain or console is None
        self.console = console
        self.out = out or sys.stdout
        self.text = ""
        self.status = ""
        # The model is working and nothing shows it yet (before its first token, after a tool):
        # a spinner says so. Never on a pipe, never in the final render.
        self.thinking = False
        self._held = ""  # the start of a control sequence still arriving
        self._live: Live | None = None
        self._spinner: Spinner | None = None
        self._modes = contextlib.ExitStack()  # the terminal's modes while it is drawn
        self._lock = threading.Lock()

    # -- lifecycle
    def __enter__(self) -> StreamRenderer:
        self.text, self.status, self._held = "", "", ""
        self.thinking = not self.plain
        if not self.plain:
            from rich.live import Live
            from rich.spinner import Spinner
            from rich.text import Text

            self._spinner = Spinner("dots", Text(THINKING, style="dim"), style="dim")
            self._modes.enter_context(keys_not_echoed())
            with ctrl_c_held() as held:
                try:
                    self._live = Live(
                        self._renderable(),
                        console=self.console,
                        refresh_per_second=12,
                        transient=False,
                    )
                    self._live.__enter__()
                except BaseException:
                    self._live = None
                    self._modes.close()
                    raise
            if held:  # Ctrl-C while the first frame was drawn: now, to the handler in place
                try:
                    signal.raise_signal(signal.SIGINT)
                except BaseException:
                    self.__exit__(None, None, None)
                    raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.status = ""
        self.thinking = False
        held, self._held = self._held, ""
        if held:  # a sequence that never completed: what strip_control leaves of it
            self._write(strip_control(held))
        if self._live is not None:
            live, self._live = self._live, None
            # The final frame is written whole; a Ctrl-C meanwhile is dropped: the answer is
            # complete, or already stopped.
            with ctrl_c_held():
                try:
                    live.update(self._renderable(), refresh=True)
                    live.__exit__(None, None, None)
                finally:
                    self._modes.close()
        elif self.plain:
            if self.text and not self.text.endswith("\n"):
                self.out.write("\n")
            self.out.flush()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the live display (e.g. to ask the user something, with the keys echoed), then
        carry on."""
        live = self._live
        if live is not None:
            live.stop()
        try:
            with keys_echoed():
                yield
        finally:
            if live is not None:
                live.start()

    def _renderable(self) -> Any:
        from rich.console import Group
        from rich.markdown import Markdown
        from rich.text import Text

        parts: list[Any] = []
        if self.text:
            parts.append(Markdown(self.text))
        if self.status:
            parts.append(Text(f"⋯ {self.status}", style="dim"))
        if self.thinking and self._spinner is not None:
            parts.append(self._spinner)
        return Group(*parts)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._renderable())

    def set_status(self, status: str) -> None:
        with self._lock:
            self.status = status
            if status:
                self.thinking = False
            if self.plain:
                if status and sys.stderr.isatty():
                    sys.stderr.write(f"  ⋯ {status}\n")
            else:
                self._refresh()

    # -- LangChain callbacks
    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        if not isinstance(token, str):  # content blocks from some providers
            token = "".join(
                b.get("text", "") if isinstance(b, dict) else str(b) for b in token or []
            )
        with self._lock:
            # What the model writes is printed; terminal control sequences in it are not, even
            # when one arrives split across tokens (its start is held until it is complete).
            ready, self._held = split_incomplete(self._held + token)
            self._write(strip_control(ready))

    def _write(self, token: str) -> None:
        if not token:
            return
        self.text += token
        self.status = ""
        self.thinking = False
        if self.plain:
            self.out.write(token)
            self.out.flush()
        else:
            self._refresh()

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, **kwargs: Any) -> None:
        name = (serialized or {}).get("name") or kwargs.get("name") or "tool"
        args: dict[str, Any] = {}
        inputs = kwargs.get("inputs")
        if isinstance(inputs, dict):
            args = inputs
        else:
            try:
                parsed = json.loads(input_str)
                args = parsed if isinstance(parsed, dict) else {}
            except (TypeError, ValueError):
                args = {}
        with self._lock:
            # Text the model wrote before calling a tool ends its paragraph, on a pipe too.
            if self.text and not self.text.endswith("\n"):
                self.text += "\n\n"
                if self.plain:
                    self.out.write("\n\n")
        self.set_status(f"running {describe_tool_call(name, args)}")

    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        self._think_again()

    def on_tool_error(self, error: BaseException, **kwargs: Any) -> None:
        self._think_again()

    def _think_again(self) -> None:
        """A tool is done and the model works on its result: the spinner again (below the last
        status line, which stays until the model writes)."""
        if not self.plain:
            with self._lock:
                self.thinking = True
                self._refresh()

    def on_fetch(self, event: FetchEvent) -> None:
        """MarketService listener: one line per symbol fetched or served from the cache."""
        if event.error:
            how = "error"
        elif getattr(event, "stale", False):
            how = "stale (the source failed; last good result)"
        else:
            how = "cached" if event.cached else f"fetched in {event.seconds:.1f}s"
        self.set_status(f"{event.tool} {event.symbol}: {how}")
