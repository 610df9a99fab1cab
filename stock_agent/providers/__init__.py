"""Where market data comes from: a registry of providers, one chosen from the settings.

A provider is one module: a class that follows `base.MarketDataProvider`, and a call to
`register(name, factory)` when the module is imported. The built-ins (`offline.py`,
`yahoo.py`) register themselves that way; they are imported on the first lookup, and import
pandas and yfinance only when they fetch data, so neither importing this package nor building
a provider pays for them.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from stock_agent import errors
from stock_agent.providers.base import MarketDataProvider, ProviderCheck

if TYPE_CHECKING:
    from stock_agent.config import Settings

__all__ = [
    "MarketDataProvider",
    "ProviderCheck",
    "ProviderFactory",
    "make_provider",
    "names",
    "register",
    "selected_name",
    "unregister",
]

ProviderFactory = Callable[["Settings"], MarketDataProvider]

_BUILTIN_MODULES = ("stock_agent.providers.offline", "stock_agent.providers.yahoo")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_factories: dict[str, ProviderFactory] = {}
_builtins_loaded = False


def register(name: str, factory: ProviderFactory, *, replace: bool = False) -> None:
    """Make `factory(settings)` the way to build the provider called `name` (lower-case
    letters, digits, `_ . -`). A name already taken needs `replace=True`."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid provider name {name!r}: lower-case letters, digits, _ . -")
    if not callable(factory):
        raise TypeError(f"the factory of provider {name!r} is not callable")
    if name in _factories and not replace and _factories[name] is not factory:
        raise ValueError(f"a provider named {name!r} is already registered")
    _factories[name] = factory


def unregister(name: str) -> None:
    """Forget the provider called `name` (a no-op when there is none)."""
    _factories.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered provider names, built-ins first."""
    _load_builtins()
    return tuple(_factories)


def selected_name(settings: Settings) -> str:
    """The provider the settings ask for: "offline" when a data folder is set, else
    "yfinance"."""
    return "offline" if settings.data_dir else "yfinance"


def make_provider(settings: Settings, name: str | None = None) -> MarketDataProvider:
    """The provider called `name`, or the one the settings select, built from the settings."""
    _load_builtins()
    chosen = selected_name(settings) if name is None else name
    factory = _factories.get(chosen)
    if factory is None:
        raise errors.ConfigError(
            f"unknown market data provider {chosen!r}", fix=f"use one of: {', '.join(_factories)}"
        )
    return factory(settings)


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)  # each registers itself
        _builtins_loaded = True
