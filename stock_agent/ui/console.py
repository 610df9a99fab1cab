"""The terminal's colour choice for this run (`--color auto|always|never`, `--no-color`), in
one place: every rich console the front ends make takes its options from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console

ColorMode = Literal["auto", "always", "never"]
COLOR_MODES: tuple[ColorMode, ...] = ("auto", "always", "never")

_mode: list[ColorMode] = ["auto"]  # set once per run by the CLI


def set_color_mode(mode: ColorMode) -> None:
    _mode[0] = mode


def color_mode() -> ColorMode:
    return _mode[0]


def console_options() -> dict[str, Any]:
    """Keyword arguments for `rich.console.Console`: `never` drops every style, `always`
    styles even on a pipe; `auto` leaves it to rich (a terminal, and NO_COLOR unset)."""
    if _mode[0] == "never":
        return {"color_system": None, "no_color": True}
    if _mode[0] == "always":
        return {"force_terminal": True}
    return {}


def make_console(**options: Any) -> Console:
    from rich.console import Console

    return Console(**{**options, **console_options()})
