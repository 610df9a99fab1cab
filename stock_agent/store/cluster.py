"""Redis Cluster: `REDIS_URL=redis+cluster://[user:password@]host:port[,host:port...]`
(`rediss+cluster://` for TLS) gives redis-py's cluster client, sync or async, configured like
the standalone one, and the node list `store status` and `doctor` show.

The seed nodes only bootstrap: the client asks them for the slot map and talks to every master
it names. Keys need nothing more here: `KeySpace(cluster=True)` puts a user's keys in one slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from stock_agent.errors import StoreUnavailable

if TYPE_CHECKING:
    import redis
    import redis.asyncio

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# More attempts than on one server: a master that died is replaced by its replica within the
# cluster's node timeout; the attempts (about 2.5 s with backoff) ride out a quick failover,
# and the turn saver keeps a turn whose save outlasts them.
CLUSTER_RETRIES = 6
# Connections per node of the asyncio cluster client (see `make_async_cluster_client`).
ASYNC_CLUSTER_CONNECTIONS = 512


def is_cluster_url(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0].lower() in CLUSTER_SCHEMES


@dataclass(frozen=True)
class ClusterURL:
    """A parsed cluster URL: the seed nodes and how to log in."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = None


def parse_cluster_url(url: str) -> ClusterURL:
    """`redis+cluster://user:pw@h1:6379,h2:6380?password=...` -> its parts; raises
    `StoreUnavailable` with the expected form when it does not parse."""
    from stock_agent.store.connection import mask_url

    scheme, sep, rest = url.partition("://")
    form = "redis+cluster://[user:password@]host:port[,host:port...]"
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise StoreUnavailable(f"not a cluster URL: {mask_url(url)}", fix=f"use {form}")
    rest, _, query = rest.partition("?")
    rest = rest.split("/", 1)[0]  # a database number means nothing on a cluster
    userinfo, at, hosts = rest.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    for name, value in parse_qsl(query):
        if name.lower() == "password":
            password = value
        elif name.lower() == "username":
            username = value
    nodes: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not part.strip():
            continue
        if not colon:
            host, port = part.strip(), "6379"
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise StoreUnavailable(f"bad node {part!r} in {mask_url(url)}", fix=f"use {form}")
        nodes.append((host, int(port)))
    if not nodes:
        raise StoreUnavailable(f"no nodes in {mask_url(url)}", fix=f"use {form}")
    return ClusterURL(tuple(nodes), scheme.lower() == "rediss+cluster", username, password)


def _options(parsed: ClusterURL, max_connections: int) -> dict[str, Any]:
    """Client options shared by the sync and the async cluster client (those of
    `connection.make_client`, per node)."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "max_connections": max_connections,
        "socket_connect_timeout": 5,
        "socket_timeout": 3,
        "socket_keepalive": True,
        "client_name": "stock-agent",
        "username": parsed.username,
        "password": parsed.password,
    }
    if parsed.tls:
        options["ssl"] = True
    try:  # redis-py >= 6.4 asks for maintenance notifications; Valkey refuses
        from redis.maint_notifications import MaintNotificationsConfig

        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    except ImportError:
        pass
    return options


def make_cluster_client(url: str, max_connections: int = 32) -> redis.RedisCluster:
    """A sync cluster client (connects to a seed node to learn the slot map)."""
    from redis.backoff import ExponentialBackoff
    from redis.cluster import ClusterNode, RedisCluster
    from redis.retry import Retry

    parsed = parse_cluster_url(url)
    seeds = [ClusterNode(host, port) for host, port in parsed.nodes]  # type: ignore[no-untyped-call]
    return RedisCluster(
        startup_nodes=seeds,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), CLUSTER_RETRIES),
        **_options(parsed, max_connections),
    )


def make_async_cluster_client(url: str, max_connections: int = 32) -> redis.asyncio.RedisCluster:
    """An asyncio cluster client; it learns the slot map on its first command."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    parsed = parse_cluster_url(url)
    options = _options(parsed, max_connections)
    # Its per-node pools fail at once when full (they cannot wait): sized for many
    # concurrent turns per event loop. Idle asyncio connections cost a socket each.
    options["max_connections"] = max(max_connections, ASYNC_CLUSTER_CONNECTIONS)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), CLUSTER_RETRIES),
        **options,
    )


def connect_cluster(url: str, max_connections: int = 32, *, check: bool = True) -> redis.Redis:
    """A cluster client (typed as `redis.Redis`: it speaks the same commands, routed by key)
    whose slot map is loaded; an unreachable cluster is `StoreUnavailable` with the fix."""
    import redis
    from redis.exceptions import RedisClusterException

    from stock_agent.store.connection import mask_url

    try:
        client = make_cluster_client(url, max_connections)
        if check:
            client.ping()
    except redis.AuthenticationError as exc:
        raise StoreUnavailable(
            f"Redis Cluster at {mask_url(url)} refused the credentials: {exc}",
            fix="check the user and password in REDIS_URL",
        ) from exc
    except (RedisClusterException, redis.RedisError, OSError) as exc:
        raise StoreUnavailable(
            f"cannot reach Redis Cluster at {mask_url(url)}: {exc}",
            fix="check that the nodes in REDIS_URL run in cluster mode and answer",
        ) from exc
    return client  # type: ignore[return-value]


@dataclass(frozen=True)
class NodeState:
    """One cluster node as `store status` shows it."""

    address: str  # host:port
    role: str  # "master" or "replica"
    answers: bool  # it answered PING just now
    slots: int  # hash slots it serves (0 for a replica)
    master: str | None = None  # a replica's master (host:port)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "role": self.role,
            "answers": self.answers,
            "slots": self.slots,
            "master": self.master,
        }


def _slot_count(ranges: list[Any]) -> int:
    total = 0
    for item in ranges:
        if isinstance(item, list | tuple) and len(item) == 2:
            low, high = int(item[0]), int(item[1])
        else:
            text = str(item)
            if text.startswith("["):  # a slot being migrated
                continue
            low_s, _, high_s = text.partition("-")
            low, high = int(low_s), int(high_s or low_s)
        total += high - low + 1
    return total


def node_states(client: Any) -> list[NodeState]:
    """Every node the cluster knows (CLUSTER NODES from one node), masters first, each with
    whether it answers a PING now. One round trip per node: an admin path only."""
    import redis

    raw: dict[str, dict[str, Any]] = client.cluster_nodes()
    by_id = {info.get("node_id"): address for address, info in raw.items()}
    states: list[NodeState] = []
    for address, info in raw.items():
        flags = str(info.get("flags", ""))
        host, _, port = address.rpartition(":")
        try:
            with redis.Redis(
                host=host, port=int(port), socket_timeout=1, socket_connect_timeout=1,
                username=_login(client, "username"), password=_login(client, "password"),
                ssl=bool(_login(client, "ssl")),
            ) as probe:  # fmt: skip
                answers = bool(probe.ping())
        except (redis.RedisError, OSError, ValueError):
            answers = False
        replica = "slave" in flags or "replica" in flags
        states.append(
            NodeState(
                address=address,
                role="replica" if replica else "master",
                answers=answers and "fail" not in flags.replace("fail?", "fail"),
                slots=0 if replica else _slot_count(list(info.get("slots", []))),
                master=by_id.get(info.get("master_id")) if replica else None,
            )
        )
    states.sort(key=lambda s: (s.role != "master", s.master or s.address, s.address))
    return states


def _login(client: Any, name: str) -> Any:
    kwargs: dict[str, Any] = getattr(client.nodes_manager, "connection_kwargs", {})
    return kwargs.get(name)


def merged_info(client: Any) -> dict[str, Any]:
    """INFO of the whole cluster as one server's: the fields of one master, with used memory
    and the keys of each database summed over the masters."""
    from redis.cluster import RedisCluster

    per_node: dict[str, dict[str, Any]] = client.info(target_nodes=RedisCluster.PRIMARIES)
    if not per_node:
        return {}
    nodes = list(per_node.values())
    merged = dict(nodes[0])
    merged["used_memory"] = sum(int(n.get("used_memory", 0)) for n in nodes)
    from stock_agent.store.status import human_bytes

    merged["used_memory_human"] = human_bytes(merged["used_memory"])
    for name in {k for n in nodes for k in n if k.startswith("db")}:
        merged[name] = {
            "keys": sum(int(n.get(name, {}).get("keys", 0)) for n in nodes if name in n)
        }
    return merged
