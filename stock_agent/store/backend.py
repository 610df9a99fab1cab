"""The store backend that an `App` owns: which Redis (the embedded Valkey, or a server from
REDIS_URL), its pooled client, and closing it. Nothing else in the package makes a client.

A new backend is a new `kind` here: the session store, profile store and cache take the client
and the `KeySpace` from the backend and work unchanged. On a cluster (`redis+cluster://`) the
client is redis-py's cluster client and the keys carry the user's hash tag, so one turn's keys
share a slot; the same stores work on it unchanged. `aclient` is the asyncio client of the same
store, for the async API.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from stock_agent.store.keys import KeySpace

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from stock_agent.config import Settings


class StoreBackend:
    """One connection pool to the configured store, created on first use (a command that
    never touches Redis never connects), closed by `close()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        from stock_agent.store.cluster import is_cluster_url

        self.cluster = is_cluster_url(settings.redis_url)
        # Hash tags only on a cluster: keys a standalone server wrote keep their names there.
        self.keys = KeySpace(settings.agent_id, cluster=self.cluster)
        self._client: redis.Redis | None = None
        self._aclient: redis.asyncio.Redis | None = None
        self._url: str | None = None
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        """ "embedded" (no REDIS_URL: the app's own Valkey), "standalone" (a Redis server) or
        "cluster" (a Redis Cluster: `redis+cluster://`)."""
        if self.cluster:
            return "cluster"
        return "embedded" if self.settings.embedded else "standalone"

    @property
    def url(self) -> str:
        """The URL connected to (for the embedded store, its socket; starts it if needed).
        May hold a password: print `display_url` instead."""
        if self._url is None:
            from stock_agent.store.connection import resolve_url

            self._url = resolve_url(self.settings)
        return self._url

    @property
    def display_url(self) -> str:
        from stock_agent.store.connection import mask_url

        if self._url is not None:
            return mask_url(self._url)
        if self.settings.redis_url:
            return mask_url(self.settings.redis_url)
        from stock_agent.store.embedded import socket_url

        return socket_url(self.settings.home)

    @property
    def client(self) -> redis.Redis:
        """The pooled client; the first use connects (and pings, so failures say what to fix)."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    from stock_agent.store.connection import connect

                    self._client = connect(self.url, self.settings.redis_max_connections)
                client = self._client
        return client

    @property
    def aclient(self) -> redis.asyncio.Redis:
        """The asyncio client of the same store (a cluster client on a cluster), made on first
        use without I/O: it connects on its first command. One per backend, for one event loop
        at a time (`aclose` it before the loop ends)."""
        client = self._aclient
        if client is None:
            with self._lock:
                if self._aclient is None:
                    from stock_agent.store.connection import make_async_client

                    self._aclient = make_async_client(self.url, self.settings.redis_max_connections)
                client = self._aclient
        return client

    async def aclose(self) -> None:
        """Close the asyncio client (idempotent); the next use of `aclient` makes a new one."""
        with self._lock:
            client, self._aclient = self._aclient, None
        if client is not None:
            await client.aclose()

    @property
    def connected(self) -> bool:
        return self._client is not None

    def close(self) -> None:
        """Close the pool (idempotent); the next use of `client` connects again."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
