"""What the terminal shows while market data is fetched, and how one Ctrl-C stops the fetch.

`FetchProgress(symbols)`: a spinner on standard error when it is a terminal, naming the symbols
still being fetched and the seconds so far ("fetching AAPL, MSFT · 3.2 s"); nothing on a pipe,
and nothing for a run that ends within a quarter of a second (cache hits do not flash). Pass
its `on_fetch` as the MarketService listener; each symbol leaves the line when it is done.

`stop_fetches_on_ctrl_c()`: while it is active, the first Ctrl-C stops every fetch in flight in
every thread (`providers.base.interrupt_fetches`) and raises KeyboardInterrupt in the main
thread at once, so a command or a chat turn that waits on a dead network stops within a
fraction of a second instead of at its deadline. The chat wraps each turn in it.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.live import Live

    from stock_agent.services.market import FetchEvent

__all__ = ["FetchProgress", "stop_fetches_on_ctrl_c"]

# A run that ends sooner than this shows nothing.
SHOW_AFTER = 0.25


@contextmanager
def stop_fetches_on_ctrl_c() -> Iterator[None]:
    """Within the block, Ctrl-C interrupts every fetch at once, then raises KeyboardInterrupt.

    Fetches are allowed again on entry (a previous interruption is over); they are not allowed
    again on exit, so helper threads of an interrupted block still stop promptly. Outside the
    main thread (where signals cannot be caught) it changes nothing.
    """
    from stock_agent.providers.base import interrupt_fetches, resume_fetches

    resume_fetches()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
        interrupt_fetches()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class FetchProgress:
    """A spinner for the symbols being fetched (see the module docstring). A context manager;
    `on_fetch(event)` marks a symbol done. `stream` defaults to standard error; `enabled` to
    whether it is a terminal (and TERM is not "dumb")."""

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = _is_terminal(self.stream)
        self.enabled = enabled
        self.pending = list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
        self.done: dict[str, str] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._live: Live | None = None
        self._spinner: Any = None

    def __enter__(self) -> FetchProgress:
        self._started = time.monotonic()
        if self.enabled and self.pending:
            from rich.console import Console
            from rich.live import Live
            from rich.spinner import Spinner

            self._spinner = Spinner("dots", style="cyan")
            console = Console(file=self.stream, highlight=False)
            self._live = Live(
                _Rendered(self),
                console=console,
                transient=True,
                refresh_per_second=10,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def on_fetch(self, event: FetchEvent) -> None:
        """MarketService listener: the event's symbol is done (fetched, cached, stale, failed)."""
        how = (
            "failed"
            if event.error
            else "stale"
            if event.stale
            else "cached"
            if event.cached
            else "fetched"
        )
        with self._lock:
            self.done[event.symbol] = how
            if event.symbol in self.pending:
                self.pending.remove(event.symbol)

    def line(self) -> str:
        """The spinner's text now ("" while nothing is shown)."""
        elapsed = time.monotonic() - self._started
        with self._lock:
            pending = list(self.pending)
        if not pending or elapsed < SHOW_AFTER:
            return ""
        shown = ", ".join(pending[:6]) + (
            f" and {len(pending) - 6} more" if len(pending) > 6 else ""
        )
        return f"fetching {shown} · {elapsed:.1f} s (Ctrl-C stops)"


class _Rendered:
    """The spinner's renderable: worked out at each refresh, so the seconds keep counting."""

    def __init__(self, progress: FetchProgress) -> None:
        self.progress = progress

    def __rich__(self) -> Any:
        from rich.console import Group

        text = self.progress.line()
        spinner = self.progress._spinner
        if not text or spinner is None:
            return Group()
        spinner.update(text=text)
        return spinner


def _is_terminal(stream: TextIO) -> bool:
    """A terminal that can redraw a line (rich decides "dumb"); rich is imported only then."""
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    from rich.console import Console

    console = Console(file=stream)
    return console.is_terminal and not console.is_dumb_terminal
