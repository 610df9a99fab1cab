"""Changes to a user's profile, validated as a whole before anything is written: a change
with one bad value changes nothing. The chat's `update_profile` tool, the CLI and the MCP
server describe a change as a `ProfileUpdate` and apply it here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stock_agent.core.limits import MAX_NOTES, PROFILE_FIELDS
from stock_agent.core.models import Profile
from stock_agent.core.profile import parse_amount, parse_symbols, parse_threshold
from stock_agent.errors import InvalidInput

if TYPE_CHECKING:
    from stock_agent.store.profile import ProfileStore


@dataclass(frozen=True)
class ProfileUpdate:
    """A change to a profile: symbols to add or remove, fields to set, fields to clear.
    `validated()` returns the same change with every value parsed (or raises InvalidInput)."""

    add_symbols: tuple[str, ...] = ()
    remove_symbols: tuple[str, ...] = ()
    alert_threshold: float | str | None = None
    portfolio_size: float | str | None = None
    notes: str | None = None
    clear: tuple[str, ...] = ()

    def validated(self) -> ProfileUpdate:
        adds = tuple(parse_symbols(list(self.add_symbols))) if self.add_symbols else ()
        removes = tuple(parse_symbols(list(self.remove_symbols))) if self.remove_symbols else ()
        unknown = [f for f in self.clear if f not in PROFILE_FIELDS]
        if unknown:
            raise InvalidInput(
                f"unknown profile field {unknown[0]!r}",
                fix=f"use one of: {', '.join(PROFILE_FIELDS)}",
            )
        cleared = tuple(dict.fromkeys(self.clear))
        threshold = None if self.alert_threshold is None else parse_threshold(self.alert_threshold)
        portfolio = None if self.portfolio_size is None else parse_amount(self.portfolio_size)
        notes = None if self.notes is None else self.notes.strip()
        if notes is not None and len(notes) > MAX_NOTES:
            raise InvalidInput(f"notes are limited to {MAX_NOTES} characters, got {len(notes)}")
        given = {"alert_threshold": threshold, "portfolio_size": portfolio, "notes": notes}
        both = [f for f in cleared if given.get(f) is not None]
        if both:
            raise InvalidInput(
                f"{', '.join(both)} given and cleared at once", fix="do one or the other"
            )
        if not (adds or removes or cleared or any(v is not None for v in given.values())):
            raise InvalidInput("nothing to update", fix="give at least one field to change")
        return ProfileUpdate(adds, removes, threshold, portfolio, notes, cleared)

    def describe(self) -> list[str]:
        """The change in words, one line per part (shown to the user before it is applied)."""
        lines = [f"clear {name}" for name in self.clear]
        if self.add_symbols:
            lines.append("add to watchlist: " + ", ".join(self.add_symbols))
        if self.remove_symbols:
            lines.append("remove from watchlist: " + ", ".join(self.remove_symbols))
        if self.alert_threshold is not None:
            value = self.alert_threshold
            shown = f"{value * 100:+.2f}%" if isinstance(value, float) else str(value)
            lines.append(f"alert threshold: {shown}")
        if self.portfolio_size is not None:
            value = self.portfolio_size
            lines.append(
                f"portfolio size: {value:,.2f}"
                if isinstance(value, float)
                else f"portfolio size: {value}"
            )
        if self.notes is not None:
            lines.append(f"notes: {self.notes}")
        return lines


class ProfileService:
    """Applies validated changes to profiles (the store does the atomic writes)."""

    def __init__(self, profiles: ProfileStore) -> None:
        self.profiles = profiles

    def get(self, user_id: str) -> Profile:
        return self.profiles.get(user_id)

    def update(self, user_id: str, change: ProfileUpdate) -> Profile:
        """Validate the whole change, then apply it; returns the saved profile."""
        change = change.validated()
        store = self.profiles
        for name in change.clear:
            store.set_field(user_id, name, None)
        if change.add_symbols:
            store.add_symbols(user_id, list(change.add_symbols))
        if change.remove_symbols:
            store.remove_symbols(user_id, list(change.remove_symbols))
        for name in ("alert_threshold", "portfolio_size", "notes"):
            value = getattr(change, name)
            if value is not None:
                store.set_field(user_id, name, value)
        return store.get(user_id)

    def set_field(self, user_id: str, name: str, value: str | Sequence[str] | None) -> Profile:
        return self.profiles.set_field(user_id, name, value)
