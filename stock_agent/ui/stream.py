"""Show an answer while it streams: Markdown that re-renders as tokens arrive, and a status
line while tools run (which tool, which symbol, cached or fetched). On a pipe, plain text."""

from __future__ import annotations

import json
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

    from stock_agent.services.market import FetchEvent


def describe_tool_call(name: str, args: dict[str, Any]) -> str:
    symbols = args.get("symbols") or ([args["symbol"]] if args.get("symbol") else [])
    what = ", ".join(str(s).upper() for s in symbols)
    return f"{name}({what})" if what else name


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
        self._held = ""  # the start of a control sequence still arriving
        self._live: Live | None = None
        self._lock = threading.Lock()

    # -- lifecycle
    def __enter__(self) -> StreamRenderer:
        self.text, self.status, self._held = "", "", ""
        if not self.plain:
            from rich.live import Live

            self._live = Live(
                self._renderable(), console=self.console, refresh_per_second=12, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status = ""
        held, self._held = self._held, ""
        if held:  # a sequence that never completed: what strip_control leaves of it
            self._write(strip_control(held))
        if self._live is not None:
            self._live.update(self._renderable(), refresh=True)
            self._live.__exit__(None, None, None)
            self._live = None
        elif self.plain:
            if self.text and not self.text.endswith("\n"):
                self.out.write("\n")
            self.out.flush()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the live display (e.g. to ask the user something), then carry on."""
        live = self._live
        if live is not None:
            live.stop()
        try:
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
        return Group(*parts)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._renderable())

    def set_status(self, status: str) -> None:
        with self._lock:
            self.status = status
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

    def on_fetch(self, event: FetchEvent) -> None:
        """MarketService listener: one line per symbol fetched or served from the cache."""
        if event.error:
            how = "error"
        elif getattr(event, "stale", False):
            how = "stale (the source failed; last good result)"
        else:
            how = "cached" if event.cached else f"fetched in {event.seconds:.1f}s"
        self.set_status(f"{event.tool} {event.symbol}: {how}")
