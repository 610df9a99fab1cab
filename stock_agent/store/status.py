"""What `stock-agent store status` and `doctor` report: which store, where, server, memory,
eviction policy, and this agent's keys by kind. Reads only; never imports the app."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stock_agent.store.backend import StoreBackend


@dataclass(frozen=True)
class StoreStatus:
    kind: str
    url: str
    home: str | None
    server: str
    used_memory: str | None
    append_only: bool
    maxmemory_policy: str | None
    agent_id: str
    keys: dict[str, int] = field(default_factory=dict)
    total_keys: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_status(backend: StoreBackend) -> StoreStatus:
    settings, keys, client = backend.settings, backend.keys, backend.client
    info: dict[str, Any] = client.info()
    kinds = {"messages": 0, "sessions": 0, "profile": 0, "cache": 0, "other": 0}
    # An admin command, not a request path: SCAN (never KEYS) over this agent's prefix only.
    for key in client.scan_iter(match=keys.agent_pattern(), count=500):
        kinds[keys.kind_of(key)] += 1
    policy = None
    if backend.kind == "embedded":
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    return StoreStatus(
        kind="embedded" if backend.kind == "embedded" else "external",
        url=backend.display_url,
        home=str(settings.home) if settings.embedded else None,
        server=f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info.get('redis_version', '?')}",
        used_memory=info.get("used_memory_human"),
        append_only=bool(info.get("aof_enabled")),
        maxmemory_policy=policy,
        agent_id=settings.agent_id,
        keys=kinds,
        total_keys=sum(
            v.get("keys", 0) for k, v in info.items() if k.startswith("db") and isinstance(v, dict)
        ),
    )
