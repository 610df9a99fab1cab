"""What `stock-agent store status` and `doctor` report: which store, where, server, memory,
eviction policy, and this agent's keys by kind. Reads only; never imports the app.

The policy and the limit come from INFO (CONFIG GET only when INFO is refused), for the
embedded and external stores alike. A narrow ACL (no INFO, CONFIG or SCAN: common on managed
Redis) leaves those parts unknown and says which command was not permitted; it never fails
the whole status.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from stock_agent.store.backend import StoreBackend
    from stock_agent.store.cluster import NodeState


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
    total_keys: int | None = 0
    maxmemory: int | None = None  # bytes; 0 = no limit; None = unknown
    used_memory_bytes: int | None = None
    not_permitted: tuple[str, ...] = ()  # commands the Redis user may not run (ACL)
    journal_pending: int = 0  # answered turns in the local journal, waiting for replay
    cache_entries: int | None = None  # from the cache's index (None: not permitted)
    nodes: tuple[NodeState, ...] = ()  # a cluster's nodes, masters first, and which answer

    @property
    def evicts_profiles(self) -> bool:
        """Whether the policy may evict keys without a TTL (profiles)."""
        return bool(self.maxmemory_policy and self.maxmemory_policy.startswith("allkeys-"))

    @property
    def memory_full(self) -> bool | None:
        """Used memory at or over 90% of maxmemory (None without a limit or when unknown)."""
        if not self.maxmemory or self.used_memory_bytes is None:
            return None
        return self.used_memory_bytes >= 0.9 * self.maxmemory

    @property
    def warnings(self) -> list[str]:
        """What puts stored data at risk, each with its fix."""
        found = [
            f"cluster node {n.address} ({n.role}) does not answer" for n in self.nodes
            if not n.answers
        ]  # fmt: skip
        if self.evicts_profiles:
            found.append("profiles can be evicted: set maxmemory-policy volatile-lru")
        if self.memory_full:
            usage = f"memory {self.used_memory} of maxmemory {human_bytes(self.maxmemory or 0)}"
            if self.maxmemory_policy == "noeviction":
                found.append(
                    f"{usage}: under noeviction writes are refused once it is full "
                    "(raise maxmemory, or run `stock-agent cache clear`)"
                )
            else:
                what = "keys" if self.evicts_profiles else "sessions and cached results"
                found.append(f"{usage}: {what} are being evicted (raise maxmemory)")
        return found

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["not_permitted"] = list(self.not_permitted)
        data["nodes"] = [n.to_dict() for n in self.nodes]
        data["evicts_profiles"] = self.evicts_profiles
        data["warnings"] = self.warnings
        return data


def human_bytes(n: int) -> str:
    """1048576 -> "1.00M" (as Redis writes its *_human fields)."""
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}B" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1024
    return f"{n}B"  # unreachable


def collect_status(
    backend: StoreBackend, *, count_keys: bool = False, count_cache: bool = True
) -> StoreStatus:
    """The status. Its cost does not grow with the keyspace: totals from INFO, cache entries
    from the cache's index. `count_keys=True` (`store status --scan`) also counts this agent's
    keys by kind with a SCAN, which reads the whole keyspace; `count_cache=False` skips the
    cache's count (`doctor`: one round trip less)."""
    import redis

    from stock_agent.store.errors import translated

    settings, keys, client = backend.settings, backend.keys, backend.client
    denied: list[str] = []
    info: dict[str, Any] = {}
    with translated(client):
        try:
            if backend.cluster:  # one master's fields, memory and keys summed over the masters
                from stock_agent.store.cluster import merged_info

                info = merged_info(client)
            else:
                info = client.info()
        except redis.exceptions.NoPermissionError:
            denied.append("INFO")
        policy: str | None = info.get("maxmemory_policy")
        maxmemory: int | None = _int(info.get("maxmemory"))
        if policy is None:  # INFO refused (or an old server): ask CONFIG, which may be refused too
            try:
                config = client.config_get("maxmemory*")
                policy, maxmemory = config.get("maxmemory-policy"), _int(config.get("maxmemory"))
            except redis.ResponseError:  # NOPERM, or CONFIG renamed away (managed Redis)
                denied.append("CONFIG")
        kinds: dict[str, int] = {}
        cache_entries: int | None = None
        if count_cache:  # the cache counts itself from its index: one round trip
            from stock_agent.store.cache import indexed_entries

            try:
                cache_entries = indexed_entries(client, keys)
            except redis.exceptions.NoPermissionError:
                denied.append("ZCARD")
        if count_keys:
            kinds = {"messages": 0, "sessions": 0, "profile": 0, "usage": 0, "cache": 0, "other": 0}
            # An admin command, not a request path: SCAN (never KEYS) over this agent's prefix.
            try:
                for key in client.scan_iter(match=keys.agent_pattern(), count=500):
                    kinds[keys.kind_of(key)] += 1
            except redis.exceptions.NoPermissionError:
                denied.append("SCAN")
                kinds = {}
        if kinds and cache_entries is not None:
            kinds["cache"] = cache_entries  # results, as `cache stats` counts them
    return StoreStatus(
        kind={"embedded": "embedded", "cluster": "cluster"}.get(backend.kind, "external"),
        url=backend.display_url,
        home=str(settings.home) if settings.embedded else None,
        server=(
            f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info.get('redis_version', '?')}"
            if info
            else "unknown server (INFO not permitted)"
        ),
        used_memory=info.get("used_memory_human"),
        append_only=bool(info.get("aof_enabled")),
        maxmemory_policy=policy,
        agent_id=settings.agent_id,
        keys=kinds,
        cache_entries=cache_entries,
        total_keys=sum(
            v.get("keys", 0) for k, v in info.items() if k.startswith("db") and isinstance(v, dict)
        )
        if info
        else None,
        maxmemory=maxmemory,
        used_memory_bytes=_int(info.get("used_memory")),
        not_permitted=tuple(denied),
        journal_pending=journal_pending(settings.home),
        nodes=_nodes(backend),
    )


def _nodes(backend: StoreBackend) -> tuple[NodeState, ...]:
    """A cluster's nodes (empty for one server, or when CLUSTER NODES is refused)."""
    if not backend.cluster:
        return ()
    import redis

    from stock_agent.store.cluster import node_states

    try:
        return tuple(node_states(backend.client))
    except (redis.RedisError, OSError):
        return ()


def journal_pending(home: Path) -> int:
    """Answered turns waiting in the journal under `home` (0 when it cannot be read)."""
    from stock_agent.store.journal import TurnJournal

    try:
        return TurnJournal.in_home(home).count()
    except OSError:
        return 0


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
