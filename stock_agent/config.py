"""Settings from the environment and a `.env` file, built in one place and passed down.

The environment wins over `.env`. Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from stock_agent.errors import ConfigError

DEFAULT_AGENT_ID = "stock_analyzer"
DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_SESSION_TTL = 1800
DEFAULT_HISTORY_WINDOW = 20
# Seconds one market-data call may take in all (retries, waits, every request); at most a day.
DEFAULT_TIMEOUT = 20.0
MAX_TIMEOUT = 86_400.0

_ID_CHARS = re.compile(r"[^A-Za-z0-9_.@-]")


@dataclass(frozen=True)
class CacheTTLs:
    """Seconds each kind of tool result stays in the execution cache."""

    quote: int = 60
    bars: int = 900  # daily bars and the analysis computed from them
    fundamentals: int = 86_400
    news: int = 900
    unknown_symbol: int = 300  # a symbol Yahoo does not know, so it is not asked again and again

    def for_kind(self, kind: str) -> int:
        return int(getattr(self, kind))


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults a new user gets."""

    redis_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    model: str = DEFAULT_MODEL
    user_id: str = "default"
    agent_id: str = DEFAULT_AGENT_ID
    session_ttl: int = DEFAULT_SESSION_TTL
    history_window: int = DEFAULT_HISTORY_WINDOW
    home: Path = field(default_factory=lambda: default_home())
    data_dir: Path | None = None
    benchmark_symbol: str = "SPY"
    redis_max_connections: int = 32
    cache_ttls: CacheTTLs = field(default_factory=CacheTTLs)
    timeout: float = DEFAULT_TIMEOUT  # seconds per market-data call, everything included

    @property
    def embedded(self) -> bool:
        """True when no REDIS_URL is set and the app runs its own Valkey."""
        return not self.redis_url

    @property
    def model_configured(self) -> bool:
        """A model is usable with an API key, or with a base URL (local servers need no key)."""
        return bool(self.openai_api_key or self.openai_base_url)

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("stock-agent", appauthor=False))


def default_user() -> str:
    try:
        name = getpass.getuser()
    except Exception:  # no login name in some containers
        return "default"
    name = _ID_CHARS.sub("_", name)[:64]
    return name or "default"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name} must be a whole number, got {raw!r}", fix=f"set {name} to e.g. {default}"
        ) from None
    if value < minimum:
        raise ConfigError(
            f"{name} must be at least {minimum}, got {value}", fix=f"set {name} to e.g. {default}"
        )
    return value


def parse_timeout(raw: str | float, name: str = "STOCK_AGENT_TIMEOUT") -> float:
    """Seconds for a market-data call: a number above 0 and at most a day."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be a number of seconds, got {raw!r}", fix=f"set {name} to e.g. 20"
        ) from None
    if not 0 < value <= MAX_TIMEOUT:  # also refuses NaN
        raise ConfigError(
            f"{name} must be above 0 and at most {MAX_TIMEOUT:g} seconds, got {raw!r}",
            fix=f"set {name} to e.g. 20",
        )
    return value


def load_settings(env: Mapping[str, str] | None = None, dotenv: bool = True) -> Settings:
    """Build settings from `env` (default: the process environment) plus `.env` in the working directory."""
    if env is None:
        merged: dict[str, str] = {}
        if dotenv:
            from dotenv import dotenv_values

            dotenv_file = Path.cwd() / ".env"
            if dotenv_file.is_file():
                merged.update(
                    {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None}
                )
        merged.update(os.environ)  # the environment wins
        env = merged

    def text(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    home = text("STOCK_AGENT_HOME")
    data_dir = text("STOCK_AGENT_DATA_DIR")
    ttls = CacheTTLs(
        quote=_int(env, "STOCK_AGENT_CACHE_TTL_QUOTE", CacheTTLs.quote),
        bars=_int(env, "STOCK_AGENT_CACHE_TTL_BARS", CacheTTLs.bars),
        fundamentals=_int(env, "STOCK_AGENT_CACHE_TTL_FUNDAMENTALS", CacheTTLs.fundamentals),
        news=_int(env, "STOCK_AGENT_CACHE_TTL_NEWS", CacheTTLs.news),
    )
    raw_timeout = text("STOCK_AGENT_TIMEOUT")
    return Settings(
        redis_url=text("REDIS_URL"),
        openai_api_key=text("OPENAI_API_KEY"),
        openai_base_url=text("OPENAI_BASE_URL"),
        model=text("STOCK_AGENT_MODEL") or DEFAULT_MODEL,
        user_id=text("STOCK_AGENT_USER") or default_user(),
        agent_id=text("STOCK_AGENT_AGENT_ID") or DEFAULT_AGENT_ID,
        session_ttl=_int(env, "STOCK_AGENT_SESSION_TTL", DEFAULT_SESSION_TTL),
        history_window=_int(env, "STOCK_AGENT_HISTORY_WINDOW", DEFAULT_HISTORY_WINDOW, minimum=2),
        home=Path(home).expanduser() if home else default_home(),
        data_dir=Path(data_dir).expanduser() if data_dir else None,
        benchmark_symbol=text("STOCK_AGENT_BENCHMARK") or "SPY",
        redis_max_connections=_int(env, "STOCK_AGENT_REDIS_MAX_CONNECTIONS", 32),
        cache_ttls=ttls,
        timeout=parse_timeout(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT,
    )
