"""`stock-agent models`, `keys` and `config show`: the model server's models, the stored keys
and the effective settings with where each came from (secrets masked, never printed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from stock_agent.config import KNOWN_SETTINGS, SECRET_SETTINGS

if TYPE_CHECKING:
    from stock_agent.config import Settings


def list_models(settings: Settings, timeout: float = 10.0) -> list[str]:
    """The ids the model server lists (OpenAI's `models.list()`), sorted."""
    from stock_agent.errors import ModelNotConfigured, ModelUnavailable

    if not settings.model_configured:
        raise ModelNotConfigured()
    import openai

    from stock_agent.agent.model import explain_model_error

    client = openai.OpenAI(
        api_key=settings.openai_api_key or "not-needed",
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=timeout,
    )
    try:
        return sorted(m.id for m in client.models.list())
    except openai.OpenAIError as exc:
        explained = explain_model_error(exc, settings)
        from stock_agent.sanitize import scrub_secrets

        raise explained or ModelUnavailable(
            f"the model server did not list its models: {scrub_secrets(str(exc))}"
        ) from None


def format_models(models: list[str], default: str) -> str:
    """One model a line, the default marked with `*` (and listed even when not served)."""
    bare = default.removeprefix("openai:")
    lines = [f"{'*' if m == bare else ' '} {m}" for m in models]
    if bare not in models:
        lines.append(f"* {default}  (the default; not listed by the server)")
    return "\n".join(lines)


def mask(name: str, value: str) -> str:
    """A secret as `****` (set, nothing of it shown); a URL without its password."""
    if name == "REDIS_URL":
        from stock_agent.sanitize import scrub_secrets

        return scrub_secrets(value)
    return "****"


def format_config(values: Mapping[str, str], sources: Mapping[str, str]) -> str:
    rows: list[tuple[str, str, str]] = []
    names = list(KNOWN_SETTINGS) + sorted(
        n for n in values if n.startswith("STOCK_AGENT_") and n not in KNOWN_SETTINGS
    )
    for name in names:
        if name in ("STOCK_AGENT_CONFIG_DIR",):
            continue
        if name in values:
            shown = mask(name, values[name]) if name in SECRET_SETTINGS else values[name]
            rows.append((name, shown, sources[name]))
        else:
            default = KNOWN_SETTINGS.get(name)
            rows.append((name, default if default is not None else "(not set)", "default"))
    width = max(len(r[0]) for r in rows)
    value_width = min(max(len(r[1]) for r in rows), 48)
    from stock_agent.sanitize import strip_control_line

    return "\n".join(
        f"{n.ljust(width)}  {strip_control_line(v).ljust(value_width)}  {s}" for n, v, s in rows
    )
