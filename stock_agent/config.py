"""Settings from the environment and a `.env` file, built in one place and passed down.

The environment wins over `.env`, which wins over the user's keys (`stock-agent keys set`) and
the user's `config.env` defaults, both in the user config dir (platformdirs; or
STOCK_AGENT_CONFIG_DIR). Nothing else in the package reads `os.environ`.
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
    prompts_dir: Path | None = None  # a folder whose NAME.md files replace the shipped prompts
    # STOCK_AGENT_PRICES as given (`model=in/out,...` dollars per million tokens), read by
    # core.usage.parse_prices when a turn is priced
    prices: str | None = None

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


# --------------------------------------------------------------------------- user config

# What `keys set NAME` stores, as the setting it provides.
KEY_SETTINGS = {"openai": "OPENAI_API_KEY"}
SECRET_SETTINGS = ("OPENAI_API_KEY", "REDIS_URL")  # a URL may carry a password
# Every setting `config show` lists, with the default a new user gets (None: unset).
KNOWN_SETTINGS: dict[str, str | None] = {
    "REDIS_URL": None,
    "OPENAI_API_KEY": None,
    "OPENAI_BASE_URL": None,
    "STOCK_AGENT_MODEL": DEFAULT_MODEL,
    "STOCK_AGENT_USER": None,
    "STOCK_AGENT_AGENT_ID": DEFAULT_AGENT_ID,
    "STOCK_AGENT_SESSION_TTL": str(DEFAULT_SESSION_TTL),
    "STOCK_AGENT_HISTORY_WINDOW": str(DEFAULT_HISTORY_WINDOW),
    "STOCK_AGENT_HOME": None,
    "STOCK_AGENT_DATA_DIR": None,
    "STOCK_AGENT_BENCHMARK": "SPY",
    "STOCK_AGENT_TIMEOUT": f"{DEFAULT_TIMEOUT:g}",
    "STOCK_AGENT_CACHE_TTL_QUOTE": str(CacheTTLs.quote),
    "STOCK_AGENT_CACHE_TTL_BARS": str(CacheTTLs.bars),
    "STOCK_AGENT_CACHE_TTL_FUNDAMENTALS": str(CacheTTLs.fundamentals),
    "STOCK_AGENT_CACHE_TTL_NEWS": str(CacheTTLs.news),
    "STOCK_AGENT_REDIS_MAX_CONNECTIONS": "32",
    "STOCK_AGENT_PROMPTS_DIR": None,
    "STOCK_AGENT_PRICES": None,
}


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The user config dir: STOCK_AGENT_CONFIG_DIR, else platformdirs' (~/.config/stock-agent)."""
    chosen = (os.environ if env is None else env).get("STOCK_AGENT_CONFIG_DIR", "").strip()
    if chosen:
        return Path(chosen).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("stock-agent", appauthor=False))


def keys_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / "keys.json"


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / "config.env"


def read_keys(path: Path) -> dict[str, str]:
    """The stored keys by name (`openai`); an unreadable or damaged file reads as none."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and v}


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by its owner only (0600), replacing the file in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def store_key(path: Path, name: str, value: str) -> None:
    """Store (or with an empty `value`, remove) the key `name` in the keys file, mode 0600."""
    import json

    if name not in KEY_SETTINGS:
        raise ConfigError(f"unknown key {name!r}", fix=f"use one of: {', '.join(KEY_SETTINGS)}")
    keys = read_keys(path)
    if value:
        keys[name] = value
    else:
        keys.pop(name, None)
    _write_private(path, json.dumps(keys, indent=2) + "\n")


def read_user_config(path: Path) -> dict[str, str]:
    """The `NAME=value` defaults of the user's config.env (only settings this program knows)."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {
        k: v
        for k, v in dotenv_values(path).items()
        if v is not None and (k in KNOWN_SETTINGS or k.startswith("STOCK_AGENT_"))
    }


def set_user_default(path: Path, name: str, value: str) -> None:
    """Set `name=value` in the user's config.env, keeping its other lines."""
    if not name.startswith("STOCK_AGENT_") and name not in KNOWN_SETTINGS:
        raise ConfigError(f"unknown setting {name!r}", fix="see `stock-agent config show`")
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{name} must be one line")
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept = [line for line in lines if line.split("=", 1)[0].strip() != name]
    _write_private(path, "\n".join([*kept, f"{name}={value}"]) + "\n")


def resolve_env(
    env: Mapping[str, str] | None = None, dotenv: bool = True
) -> tuple[dict[str, str], dict[str, str]]:
    """The settings' raw values and where each came from: `environment`, `.env`, `keys.json`
    or `config.env`, the first that has it. An injected `env` replaces the process
    environment and `.env` (tests); the user's files are still read."""
    layers: list[tuple[str, Mapping[str, str]]] = []
    if env is None:
        layers.append(("environment", os.environ))
        dotenv_file = Path.cwd() / ".env"
        if dotenv and dotenv_file.is_file():
            from dotenv import dotenv_values

            found = {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None}
            layers.append((".env", found))
    else:
        layers.append(("environment", env))
    keys = read_keys(keys_path(env))
    layers.append(("keys.json", {KEY_SETTINGS[k]: v for k, v in keys.items() if k in KEY_SETTINGS}))
    layers.append(("config.env", read_user_config(user_config_path(env))))
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for name, value in layer.items():
            if name not in values and value.strip():
                values[name] = value
                sources[name] = source
    return values, sources


def load_settings(env: Mapping[str, str] | None = None, dotenv: bool = True) -> Settings:
    """Build settings from `env` (default: the process environment) plus `.env` in the working
    directory, then the user's keys and config.env (see `resolve_env`)."""
    env, _ = resolve_env(env, dotenv)

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
        prompts_dir=Path(prompts).expanduser()
        if (prompts := text("STOCK_AGENT_PROMPTS_DIR"))
        else None,
        prices=text("STOCK_AGENT_PRICES") or None,
    )
