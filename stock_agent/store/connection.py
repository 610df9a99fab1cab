"""Connecting to Redis: the URL (REDIS_URL, or the embedded Valkey's socket), a pooled client
with retries, backoff, timeouts and keepalive, and errors that say what to fix.

There is no process-wide registry: `StoreBackend` (store/backend.py) owns the client of one App.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from stock_agent.errors import StoreUnavailable

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from stock_agent.config import Settings


def mask_url(url: str) -> str:
    """The URL with any password (in the user part or a `password=` query argument, which
    redis-py also accepts) replaced by `***` (safe to print)."""
    parts = urlsplit(url)
    # Work on the raw text: hostname/port would drop IPv6 brackets and raise on a bad port.
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    items = parts.query.split("&") if parts.query else []
    query = "&".join(
        f"{item.split('=', 1)[0]}=***" if item.split("=", 1)[0].lower() == "password" else item
        for item in items
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    masked = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        masked += f"?{query}"
    if parts.fragment:
        masked += f"#{parts.fragment}"
    return masked


def resolve_url(settings: Settings) -> str:
    """The URL to connect to: REDIS_URL, or the embedded server's socket (started if needed)."""
    if settings.redis_url:
        scheme = urlsplit(settings.redis_url).scheme
        if scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
            raise StoreUnavailable(
                f"REDIS_URL has an unsupported scheme {scheme!r}: {mask_url(settings.redis_url)}",
                fix="use redis://, rediss:// (TLS), unix:// or redis+cluster://host:port,...",
            )
        return settings.redis_url
    from stock_agent.store import embedded

    return embedded.ensure_running(settings.home)


def _embedded_home(url: str) -> Path | None:
    """The embedded store's data folder when `url` is its socket (`unix://<home>/valkey.sock`)."""
    from stock_agent.store.embedded import SOCKET_NAME

    parts = urlsplit(url)
    if parts.scheme != "unix" or parts.query or not parts.path.endswith("/" + SOCKET_NAME):
        return None
    return Path(parts.path).parent


def unreachable(
    url: str, exc: BaseException | None = None, *, embedded: bool | None = None
) -> StoreUnavailable:
    """The store does not answer. `embedded`: `url` is the embedded store's socket (None: tell
    from the URL); the fix is then to start it again, not to unset a REDIS_URL that is unset."""
    from stock_agent.store.embedded import LOG_NAME

    detail = f": {exc}" if exc else ""
    home = _embedded_home(url) if embedded is not False else None
    if embedded or home is not None:
        log = f"; its log: {home / LOG_NAME}" if home is not None else ""
        return StoreUnavailable(
            f"cannot reach the embedded store at {mask_url(url)}{detail}",
            fix="its server stopped: the next stock-agent command (e.g. `stock-agent store "
            f"status`) starts it again{log}",
        )
    return StoreUnavailable(
        f"cannot reach Redis at {mask_url(url)}{detail}",
        fix="start the server (`docker compose up -d redis`), or unset REDIS_URL to use the embedded store",
    )


def make_client(url: str, max_connections: int = 32) -> redis.Redis:
    """A new client with its own pool, configured for production use."""
    import redis
    from redis.retry import Retry

    return redis.Redis.from_url(url, **client_options(url, max_connections, Retry))


def make_async_client(url: str, max_connections: int = 32) -> redis.asyncio.Redis:
    """The asyncio client for `url`, with the options of `make_client` (a cluster client for
    `redis+cluster://`). No I/O: it connects on its first command."""
    from stock_agent.store.cluster import is_cluster_url, make_async_cluster_client

    if is_cluster_url(url):
        return make_async_cluster_client(url, max_connections)  # type: ignore[return-value]
    import redis.asyncio
    from redis.asyncio.retry import Retry

    # A blocking pool: with more concurrent turns than connections, a command waits for a
    # free connection (up to the socket timeout's order) instead of failing at once.
    options = client_options(url, max_connections, Retry)
    options.pop("maint_notifications_config", None)
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, timeout=20, **options)
    return redis.asyncio.Redis(connection_pool=pool)


def client_options(url: str, max_connections: int, retry_class: Any) -> dict[str, Any]:
    """The options of every standalone client, sync or async (`retry_class`: redis-py's
    `Retry` of the matching flavour)."""
    from redis.backoff import ExponentialBackoff

    options: dict[str, Any] = {
        "decode_responses": True,
        "max_connections": max_connections,
        "retry": retry_class(ExponentialBackoff(cap=1.0, base=0.05), 3),
        "retry_on_timeout": True,
        "socket_connect_timeout": 5,
        # Bounds how long a turn waits on a store that is in trouble: a server that is down
        # (connection refused) costs the backoff, about 0.7 s a command; one that is paused or
        # lost on the network at most 4 attempts x 3 s. Healthy replies take well under 1 ms;
        # a slower one is retried (retry_on_timeout), which the save script makes safe.
        "socket_timeout": 3,
        # No idle health check (it cost a PING, a third round trip, on the first turn after a
        # pause): a connection that died while idle fails its next command with a connection
        # error, and `retry` reconnects and sends it again. The turn's read is idempotent and
        # its save skips a turn already stored (answer ids), so the retry is safe.
        "health_check_interval": 0,
        "client_name": "stock-agent",
    }
    try:  # redis-py >= 6.4 asks every new connection for maintenance notifications; Valkey refuses
        from redis.maint_notifications import MaintNotificationsConfig

        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    except ImportError:
        pass
    if not url.startswith("unix:"):
        options["socket_keepalive"] = True  # a TCP option; unix sockets refuse it
    return options


def connect(url: str, max_connections: int = 32, *, check: bool = True) -> redis.Redis:
    """A new client for `url`. `check` pings once, so an unreachable server or refused
    credentials are reported at once, with the fix, and no half-working client is returned."""
    from stock_agent.store.cluster import connect_cluster, is_cluster_url

    if is_cluster_url(url):  # redis+cluster://: the cluster client, routed by key slot
        return connect_cluster(url, max_connections, check=check)
    client = make_client(url, max_connections)
    if not check:
        return client
    import redis

    from stock_agent.store.errors import classify, relay

    try:
        client.ping()
    except redis.AuthenticationError as exc:
        client.close()
        raise StoreUnavailable(
            f"Redis at {mask_url(url)} refused the credentials: {relay(exc, client)}",
            fix="check the user and password in REDIS_URL",
        ) from exc
    except redis.BusyLoadingError as exc:  # alive, still loading: not "cannot reach"
        client.close()
        raise classify(exc, client=client) or unreachable(url, exc) from exc
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        client.close()
        raise unreachable(url, exc) from exc
    except redis.ResponseError as exc:  # e.g. SELECT of a database the server lacks
        client.close()
        # An ACL without PING or CLIENT SETNAME (sent on connect) is named as such.
        typed = classify(exc, client=client)
        if typed is not None:
            raise typed from exc
        raise StoreUnavailable(
            f"Redis at {mask_url(url)} refused the connection: {relay(exc, client)}",
            fix="check the database number and options in REDIS_URL",
        ) from exc
    return client
