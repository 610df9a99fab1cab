"""What `stock-agent store status` reports: which store, where, memory used, keys by kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stock_agent.store.connection import mask_url, resolve_url

if TYPE_CHECKING:
    from stock_agent.app import App


def store_status(app: App) -> dict[str, Any]:
    settings = app.settings
    url = resolve_url(settings)
    client = app.client
    info = client.info()
    kinds = {"messages": 0, "sessions": 0, "profile": 0, "cache": 0, "other": 0}
    # An admin command, not a request path: SCAN (never KEYS) over this agent's prefix only.
    for key in client.scan_iter(match=app.keys.agent_pattern(), count=500):
        kinds[app.keys.kind_of(key)] += 1
    return {
        "kind": "embedded" if settings.embedded else "external",
        "url": mask_url(url),
        "home": str(settings.home) if settings.embedded else None,
        "server": f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info.get('redis_version', '?')}",
        "used_memory": info.get("used_memory_human"),
        "append_only": bool(info.get("aof_enabled")),
        "maxmemory_policy": client.config_get("maxmemory-policy").get("maxmemory-policy")
        if settings.embedded
        else None,
        "agent_id": settings.agent_id,
        "keys": kinds,
        "total_keys": sum(
            v.get("keys", 0) for k, v in info.items() if k.startswith("db") and isinstance(v, dict)
        ),
    }
